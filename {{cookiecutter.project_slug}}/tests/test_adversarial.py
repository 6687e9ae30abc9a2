"""FGM / PGD / AWP: exact restore, the step equals a plain step with the summed gradient, accumulation survives."""
import pytest
import torch

from helpers import mod

adversarial, config = mod("tricks.adversarial"), mod("config")


class Toy(torch.nn.Module):
    """A text-like model: word embeddings, a hidden layer, a head (float64 for exact comparisons)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.word_embeddings = torch.nn.Embedding(12, 4)
        self.hidden = torch.nn.Linear(4, 4)
        self.head = torch.nn.Linear(4, 3)
        self.double()

    def forward(self, batch):
        return self.head(torch.tanh(self.hidden(self.word_embeddings(batch["ids"]).mean(1))))


def _batch(seed):
    g = torch.Generator().manual_seed(seed)
    return {"ids": torch.randint(0, 12, (6, 5), generator=g), "target": torch.randint(0, 3, (6,), generator=g)}


def _loss(model, batch):
    return torch.nn.functional.cross_entropy(model(batch), batch["target"])


def _adversary(workdir, model, *overrides):
    return adversarial.build_adversary(config.load("demo", list(overrides)), model)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def _grad_at(model, weights: dict, batch) -> dict:
    """Gradient of the loss at the given weights, computed on a fresh copy."""
    import copy
    m = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in m.named_parameters():
            p.copy_(weights.get(n, p))
            p.grad = None
    _loss(m, batch).backward()
    return {n: p.grad.clone() for n, p in m.named_parameters()}


def _attack_recording(adv, model, batch):
    """Run the attack; return the perturbed weights seen by each adversarial forward."""
    seen = []

    def loss_fn():
        seen.append({n: p.detach().clone() for n, p in model.named_parameters()})
        return _loss(model, batch)
    adv.attack(loss_fn, lambda loss: loss.backward())
    return seen


@pytest.mark.parametrize("method", ["fgm", "pgd", "awp"])
def test_weights_are_bit_identical_after_the_attack(workdir, method):
    model = Toy()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    adv = _adversary(workdir, model, f"adv.method={method}", "adv.eps=0.5" if method != "awp" else "adv.lr=0.5")
    _loss(model, _batch(1)).backward()
    seen = _attack_recording(adv, model, _batch(1))
    assert any(not torch.equal(seen[-1][n], before[n]) for n in before), "the attack perturbed nothing"
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n


@pytest.mark.parametrize("method", ["fgm", "awp", "pgd"])
def test_step_equals_a_plain_step_with_clean_plus_adversarial_gradient(workdir, method):
    model, batch = Toy(), _batch(2)
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    adv = _adversary(workdir, model, f"adv.method={method}", "adv.eps=0.3", "adv.lr=0.01")
    _loss(model, batch).backward()
    clean = _grads(model)
    seen = _attack_recording(adv, model, batch)
    expected_adv = _grad_at(model, seen[-1], batch)  # the last adversarial pass is the one that counts
    total = {n: clean[n] + expected_adv[n] for n in clean}
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, total[n], atol=1e-12), n
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    for n, p in model.named_parameters():
        assert torch.allclose(p, w0[n] - 0.1 * total[n], atol=1e-12), n


@pytest.mark.parametrize("method", ["awp", "pgd", "fgm"])
def test_gradients_of_earlier_micro_batches_survive_the_attack(workdir, method):
    model = Toy()
    adv = _adversary(workdir, model, f"adv.method={method}", "adv.eps=0.3", "adv.lr=0.01")
    _loss(model, _batch(3)).backward()          # micro-batch 1 (no attack yet)
    _loss(model, _batch(4)).backward()          # micro-batch 2, clean
    accumulated = _grads(model)
    seen = _attack_recording(adv, model, _batch(4))
    expected = _grad_at(model, seen[-1], _batch(4))
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, accumulated[n] + expected[n], atol=1e-12), n


def test_awp_moves_by_adv_lr_times_weight_norm_and_respects_the_clamp(workdir):
    model, batch = Toy(), _batch(5)
    _loss(model, batch).backward()
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    small = _adversary(workdir, model, "adv.method=awp", "adv.lr=1e-4", "adv.eps=1.0")
    seen = _attack_recording(small, model, batch)[0]
    for n in small.names:
        step = (seen[n] - w0[n]).norm()
        assert torch.isclose(step, 1e-4 * w0[n].norm(), rtol=1e-9), n
    model.zero_grad()
    _loss(model, batch).backward()
    big = _adversary(workdir, model, "adv.method=awp", "adv.lr=10.0", "adv.eps=1e-3")
    seen = _attack_recording(big, model, batch)[0]
    for n in big.names:
        assert ((seen[n] - w0[n]).abs() <= 1e-3 * w0[n].abs() + 1e-15).all(), n
        assert torch.isclose((seen[n] - w0[n]).abs().max(), (1e-3 * w0[n].abs()).max()), n
    assert "word_embeddings.weight" not in big.names and "hidden.weight" in big.names


def test_default_parameters_are_word_embeddings_or_the_stem(workdir, demo_dir):
    cfg = config.load("demo", [f"model.name={demo_dir / 'tiny_bert'}"] if config.load().task == "text" else [])
    model = mod("modality").get_modality(cfg).build_model(3, pretrained=cfg.task == "text")
    names = adversarial.default_params(model, "fgm")
    if cfg.task == "text":
        assert names == ["backbone.embeddings.word_embeddings.weight"]
    else:
        first_conv = next(n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d))
        assert names == [f"{first_conv}.weight"]
    with pytest.raises(config.ConfigError, match="adv.param_pattern"):
        _adversary(workdir, model, "adv.method=fgm", "adv.param_pattern=no_such_layer")


def test_the_attack_is_inactive_before_start_epoch(workdir):
    adv = _adversary(workdir, Toy(), "adv.method=awp", "adv.start_epoch=3")
    assert [adv.active(e) for e in (1, 2, 3, 4)] == [False, False, True, True]
    assert _adversary(workdir, Toy(), "adv.method=none") is None

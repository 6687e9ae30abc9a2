"""FGM / PGD / AWP: exact restore, the step equals a hand-computed plain step, accumulation survives, defaults."""
import copy
import math

import pytest
import torch

from helpers import mod

adv = mod("training.tricks.adversarial")
config = mod("core.config")


class TextToy(torch.nn.Module):
    """Text-like: HF-style word embeddings + LayerNorm, a hidden layer, a head (float64 for exact checks)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embeddings = torch.nn.Module()
        self.embeddings.word_embeddings = torch.nn.Embedding(12, 4)
        self.embeddings.LayerNorm = torch.nn.LayerNorm(4)
        self.hidden = torch.nn.Linear(4, 4)
        self.head = torch.nn.Linear(4, 3)
        self.double()

    def forward(self, batch):
        e = self.embeddings.LayerNorm(self.embeddings.word_embeddings(batch["ids"]))
        return self.head(torch.tanh(self.hidden(e.mean(1))))


class ConvToy(torch.nn.Module):
    """Image-like: conv stem + BatchNorm, a second conv, pooled head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.conv = torch.nn.Conv2d(4, 4, 3)
        self.head = torch.nn.Linear(4, 3)
        self.double()

    def forward(self, batch):
        x = self.conv(torch.relu(self.bn(self.stem(batch["x"]))))
        return self.head(x.mean((2, 3)))


def _batch(seed, n=6):
    g = torch.Generator().manual_seed(seed)
    return {"ids": torch.randint(0, 12, (n, 5), generator=g), "x": torch.randn(n, 3, 8, 8, generator=g,
            dtype=torch.float64), "target": torch.randint(0, 3, (n,), generator=g)}


def _loss(model, batch):
    return torch.nn.functional.cross_entropy(model(batch), batch["target"])


def _build(model, *overrides):
    return adv.build_adversary(config.load("demo", list(overrides)), model)


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def _grad_at(model, weights, batch, scale=1.0):
    """The loss gradient at the given weights (others unchanged), computed on a fresh copy."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in m.named_parameters():
            p.copy_(weights.get(n, p))
            p.grad = None
    (_loss(m, batch) * scale).backward()
    return _grads(m)


def _unit(g):
    return g / g.norm()


def _perturbed_by_hand(method, model, names, grads, batch, eps, alpha=0.3, steps=3, lr=0.01, scale=1.0):
    """The weights of the final adversarial pass, computed from the formulas (PGD: the whole trajectory)."""
    w0 = _weights(model)
    if method == "fgm":
        return {**w0, **{n: w0[n] + eps * _unit(grads[n]) for n in names}}
    if method == "awp":
        return {**w0, **{n: torch.clamp(w0[n] + lr * w0[n].norm() * _unit(grads[n]),
                                        w0[n] - eps * w0[n].abs(), w0[n] + eps * w0[n].abs()) for n in names}}
    w, g = dict(w0), grads
    for t in range(steps):
        for n in names:
            r = w[n] + alpha * _unit(g[n]) - w0[n]
            w[n] = w0[n] + r * min(1.0, eps / r.norm().item())
        if t < steps - 1:
            g = _grad_at(model, w, batch, scale)
    return w


def _recording(model, batch, seen):
    def loss_fn():
        seen.append(_weights(model))
        return _loss(model, batch)
    return loss_fn


METHOD_ARGS = {"fgm": ["adv.method=fgm", "adv.eps=0.5"], "pgd": ["adv.method=pgd", "adv.eps=0.5", "adv.alpha=0.3"],
               "awp": ["adv.method=awp", "adv.eps=0.01", "adv.lr=0.01"]}
EPS = {"fgm": 0.5, "pgd": 0.5, "awp": 0.01}


@pytest.mark.parametrize("net", [TextToy, ConvToy])
@pytest.mark.parametrize("method", ["fgm", "pgd", "awp"])
def test_weights_and_batchnorm_statistics_are_bit_identical_after_the_attack(workdir, method, net):
    model, batch = net(), _batch(1)
    attacker = _build(model, *METHOD_ARGS[method])
    _loss(model, batch).backward()
    before = _weights(model)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    seen = []
    loss = attacker.attack(_recording(model, batch, seen), lambda l: l.backward())
    assert len(seen) == (3 if method == "pgd" else 1) and math.isfinite(loss)
    assert any(not torch.equal(seen[-1][n], before[n]) for n in attacker.names), "nothing was perturbed"
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n]), n


@pytest.mark.parametrize("method", ["fgm", "awp", "pgd"])
def test_step_equals_a_plain_sgd_step_with_clean_plus_hand_computed_adversarial_gradient(workdir, method):
    model, batch = TextToy(), _batch(2)
    attacker = _build(model, *METHOD_ARGS[method])
    w0 = _weights(model)
    _loss(model, batch).backward()
    clean = _grads(model)
    at = _perturbed_by_hand(method, model, attacker.names, clean, batch, EPS[method])
    expected = _grad_at(model, at, batch)
    seen = []
    attacker.attack(_recording(model, batch, seen), lambda l: l.backward())
    for n in w0:
        assert torch.allclose(seen[-1][n], at[n], rtol=0, atol=1e-12), n
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    for n, p in model.named_parameters():
        assert torch.allclose(p, w0[n] - 0.1 * (clean[n] + expected[n]), rtol=0, atol=1e-12), n


@pytest.mark.parametrize("method", ["awp", "pgd", "fgm"])
def test_gradients_of_earlier_micro_batches_survive_the_attack(workdir, method):
    model = TextToy()
    attacker = _build(model, *METHOD_ARGS[method])
    _loss(model, _batch(3)).backward()          # micro-batch 1
    attacker.attack(lambda: _loss(model, _batch(3)), lambda l: l.backward())
    _loss(model, _batch(4)).backward()          # micro-batch 2, clean
    accumulated = _grads(model)
    at = _perturbed_by_hand(method, model, attacker.names, accumulated, _batch(4), EPS[method])
    attacker.attack(lambda: _loss(model, _batch(4)), lambda l: l.backward())
    expected = _grad_at(model, at, _batch(4))
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, accumulated[n] + expected[n], rtol=0, atol=1e-12), n


@pytest.mark.parametrize("method", ["fgm", "pgd", "awp"])
def test_accelerate_accumulation_loop_matches_the_hand_computed_step(workdir, method):
    """The loop the trainer runs: accumulate(2) + accelerator.backward (which divides by 2) + attack."""
    from accelerate import Accelerator
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    model = TextToy()
    ref = copy.deepcopy(model)
    attacker = _build(model, *METHOD_ARGS[method])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    batches = [_batch(5), _batch(6)]
    for batch in batches:
        with accelerator.accumulate(model):
            accelerator.backward(_loss(model, batch))
            attacker.attack(lambda: _loss(model, batch), accelerator.backward)
            optimizer.step()
            optimizer.zero_grad()
    total = {n: torch.zeros_like(p) for n, p in ref.named_parameters()}
    for batch in batches:  # by hand: each micro-batch adds its clean and adversarial gradient, halved
        total = {n: total[n] + g for n, g in _grad_at(ref, {}, batch, 0.5).items()}
        at = _perturbed_by_hand(method, ref, attacker.names, total, batch, EPS[method], scale=0.5)
        total = {n: total[n] + g for n, g in _grad_at(ref, at, batch, 0.5).items()}
    for n, p in accelerator.unwrap_model(model).named_parameters():
        assert torch.allclose(p, dict(ref.named_parameters())[n] - 0.1 * total[n], rtol=0, atol=1e-12), n


def test_pgd_under_ddp_matches_the_plain_model(workdir, tmp_path):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        plain, batch = TextToy(), _batch(7)
        ddp = torch.nn.parallel.DistributedDataParallel(TextToy())
        results = []
        for model in (plain, ddp):
            attacker = _build(model, *METHOD_ARGS["pgd"])
            _loss(model, batch).backward()
            attacker.attack(lambda: _loss(model, batch), lambda l: l.backward())
            results.append((attacker.names, {n.removeprefix("module."): g for n, g in _grads(model).items()}))
        assert results[1][0] == ["module." + n for n in results[0][0]]
        for n, g in results[0][1].items():
            assert torch.allclose(results[1][1][n], g, rtol=0, atol=1e-12), n
    finally:
        dist.destroy_process_group()


def test_awp_moves_by_adv_lr_times_weight_norm_and_respects_the_clamp(workdir):
    model, batch = TextToy(), _batch(8)
    _loss(model, batch).backward()
    w0 = _weights(model)
    seen = []
    small = _build(model, "adv.method=awp", "adv.lr=1e-4", "adv.eps=1.0")  # the clamp never binds
    small.attack(_recording(model, batch, seen), lambda l: None)
    for n in small.names:
        assert torch.isclose((seen[0][n] - w0[n]).norm(), 1e-4 * w0[n].norm(), rtol=1e-9), n
    seen.clear()
    big = _build(model, "adv.method=awp", "adv.lr=10.0", "adv.eps=1e-3")  # the clamp binds everywhere
    big.attack(_recording(model, batch, seen), lambda l: None)
    for n in big.names:
        step = (seen[0][n] - w0[n]).abs()
        assert (step <= 1e-3 * w0[n].abs() * (1 + 1e-12)).all(), n
        assert torch.allclose(step, 1e-3 * w0[n].abs(), rtol=1e-9), n
    assert big.names == ["hidden.weight", "head.weight"]


def test_default_parameters_are_word_embeddings_or_the_stem_and_a_bad_pattern_is_a_config_error(workdir):
    import timm
    from transformers import BertConfig, BertModel, GPT2Config, GPT2Model
    assert _build(TextToy(), "adv.method=fgm").names == ["embeddings.word_embeddings.weight"]
    bert = torch.nn.Module()
    bert.backbone = BertModel(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=8))
    assert _build(bert, "adv.method=pgd").names == ["backbone.embeddings.word_embeddings.weight"]
    gpt = torch.nn.Module()
    gpt.backbone = GPT2Model(GPT2Config(vocab_size=30, n_embd=8, n_layer=1, n_head=2))
    assert _build(gpt, "adv.method=fgm").names == ["backbone.wte.weight"]  # via get_input_embeddings()
    resnet = timm.create_model("test_resnet", pretrained=False)
    first_conv = next(n for n, m in resnet.named_modules() if isinstance(m, torch.nn.Conv2d))
    assert _build(resnet, "adv.method=fgm").names == [f"{first_conv}.weight"]
    vit = timm.create_model("test_vit", pretrained=False)
    assert _build(vit, "adv.method=fgm").names == ["patch_embed.proj.weight"]
    awp_names = _build(resnet, "adv.method=awp").names
    assert f"{first_conv}.weight" in awp_names and not any("bn" in n or "bias" in n for n in awp_names)
    assert _build(ConvToy(), "adv.method=awp").names == ["stem.weight", "conv.weight", "head.weight"]
    assert _build(TextToy(), "adv.method=fgm", "adv.param_pattern=^hidden").names == ["hidden.weight", "hidden.bias"]
    for bad in ("adv.param_pattern=no_such_layer", "adv.param_pattern=[unclosed"):
        with pytest.raises(config.ConfigError, match="adv.param_pattern"):
            _build(TextToy(), "adv.method=fgm", bad)
    frozen = TextToy()
    frozen.embeddings.word_embeddings.weight.requires_grad_(False)
    with pytest.raises(config.ConfigError, match="adv.param_pattern.*frozen"):
        _build(frozen, "adv.method=fgm")
    with pytest.raises(config.ConfigError, match="adv.lr"):
        _build(TextToy(), "adv.method=awp", "adv.lr=0")
    with pytest.raises(config.ConfigError, match="adv.eps"):
        _build(TextToy(), "adv.method=fgm", "adv.eps=-1")


def test_method_defaults_for_eps(workdir):
    assert _build(TextToy(), "adv.method=fgm").eps == 1.0
    assert _build(TextToy(), "adv.method=pgd").eps == 1.0
    assert _build(TextToy(), "adv.method=awp").eps == 1e-3
    assert _build(TextToy(), "adv.method=none") is None


def test_active_from_start_epoch(workdir):
    attacker = _build(TextToy(), "adv.method=awp", "adv.start_epoch=3")
    assert [attacker.active(e) for e in (1, 2, 3, 4)] == [False, False, True, True]
    assert _build(TextToy(), "adv.method=fgm").start_epoch == 2


def test_attack_is_skipped_when_no_chosen_weight_has_a_gradient(workdir):
    model, batch = TextToy(), _batch(9)
    attacker = _build(model, "adv.method=fgm")
    model.embeddings.word_embeddings.weight.requires_grad_(False)  # e.g. a frozen backbone epoch
    _loss(model, batch).backward()
    clean = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    calls = []
    assert math.isnan(attacker.attack(lambda: calls.append(1), lambda l: None)) and not calls
    assert all(torch.equal(p.grad, clean[n]) for n, p in model.named_parameters() if p.grad is not None)

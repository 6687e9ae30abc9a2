"""EMA equals the analytic average; SWA equals the mean of epoch-end weights with BatchNorm recomputed."""
import pytest
import torch

from helpers import mod

avg, config = mod("training.tricks.averaging"), mod("core.config")


def _walk(model, n, seed=0):
    """Move the weights n times; yield the weights after each move (as an optimiser step would)."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype))
        yield [p.detach().clone() for p in model.parameters()]


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_ema_without_warmup_equals_the_analytic_average():
    model = torch.nn.Linear(3, 2).double()
    w0 = _params(model)
    d, n = 0.9, 7
    ema = avg.EMA(model, decay=d, warmup=False)
    history = []
    for w in _walk(model, n):
        history.append(w)
        ema.update(model)
    # ema_N = d^N w0 + sum_i (1 - d) d^(N - i) w_i
    for j, p in enumerate(ema.module.parameters()):
        expected = d ** n * w0[j] + sum((1 - d) * d ** (n - i) * history[i - 1][j] for i in range(1, n + 1))
        assert torch.allclose(p, expected, atol=1e-12)
    assert not ema.module.training and ema.updates == n


def test_ema_warmup_uses_timms_decay_ramp():
    model = torch.nn.Linear(3, 2).double()
    ema = avg.EMA(model, decay=0.99, warmup=True)
    expected = _params(model)
    for t, w in enumerate(_walk(model, 6), start=1):
        s = t - 1  # timm: decay_t = 0 for t = 1, else min(decay, 1 - (1 + (t - 1)) ** (-2/3))
        d = 0.0 if s <= 0 else min(1 - (1 + s) ** (-2 / 3), 0.99)
        expected = [d * e + (1 - d) * wi for e, wi in zip(expected, w)]
        ema.update(model)
    for p, e in zip(ema.module.parameters(), expected):
        assert torch.allclose(p, e, atol=1e-12)


def test_ema_every_k_averages_on_every_kth_optimiser_step_only():
    model = torch.nn.Linear(2, 1).double()
    w0 = _params(model)
    ema = avg.EMA(model, decay=0.5, warmup=False, every=3)
    snapshots, history = [], []
    for w in _walk(model, 7):
        history.append(w)
        ema.update(model)
        snapshots.append(ema.module.weight.detach().clone())
    assert torch.equal(snapshots[0], w0[0]) and torch.equal(snapshots[1], w0[0])
    assert torch.allclose(snapshots[2], 0.5 * w0[0] + 0.5 * history[2][0], atol=1e-12)
    assert torch.equal(snapshots[2], snapshots[4])
    assert torch.allclose(snapshots[5], 0.5 * snapshots[2] + 0.5 * history[5][0], atol=1e-12)
    assert torch.equal(snapshots[5], snapshots[6]) and (ema.calls, ema.updates) == (7, 2)


def test_ema_state_dict_keeps_the_counter_so_a_resume_continues_the_warmup():
    model = torch.nn.Linear(2, 2).double()
    a = avg.EMA(model, decay=0.999, warmup=True)
    for _ in _walk(model, 4):
        a.update(model)
    b = avg.EMA(torch.nn.Linear(2, 2).double(), decay=0.999, warmup=True)
    b.load_state_dict(a.state_dict())
    assert (b.calls, b.updates) == (4, 4)
    assert all(torch.equal(p, q) for p, q in zip(a.module.parameters(), b.module.parameters()))
    before = b.module.weight.detach().clone()
    for w in _walk(model, 1, seed=9):
        a.update(model)
        b.update(model)
    d = 1 - (1 + 4) ** (-2 / 3)  # the 5th update's decay, not the 1st one's (0: a copy of the model)
    assert torch.allclose(b.module.weight, d * before + (1 - d) * w[0], atol=1e-12)
    assert torch.equal(a.module.weight, b.module.weight)


class Compiled(torch.nn.Module):
    """Stands in for torch.compile's OptimizedModule (the real one takes seconds to import)."""

    def __init__(self, model):
        super().__init__()
        self._orig_mod = model


def test_ema_unwraps_dataparallel_and_compiled_models():
    model = torch.nn.Linear(2, 2).double()
    ema = avg.EMA(torch.nn.DataParallel(Compiled(model)), decay=0.5, warmup=False)
    assert isinstance(ema.module, torch.nn.Linear)
    w = next(_walk(model, 1))
    w0 = ema.module.weight.detach().clone()
    ema.update(Compiled(model))
    assert torch.allclose(ema.module.weight, 0.5 * w0 + 0.5 * w[0], atol=1e-12)


def test_swa_is_the_mean_of_the_epoch_end_weights_from_start_epoch():
    model = torch.nn.Linear(3, 2).double()
    swa = avg.SWA(model, None, start_epoch=3, epochs=5)
    averaged = []
    for epoch, w in enumerate(_walk(model, 5), start=1):
        swa.on_epoch_end(model, epoch)
        if epoch >= 3:
            averaged.append(w)
    for j, p in enumerate(swa.module.parameters()):
        assert torch.allclose(p, sum(w[j] for w in averaged) / 3, atol=1e-12)
    assert [swa.in_swa(e) for e in range(1, 6)] == [False, False, True, True, True]


@pytest.mark.parametrize("epochs,start", [(8, 7), (4, 4), (3, 3), (1, 1), (12, 10)])
def test_swa_default_start_is_the_last_quarter_and_at_least_one_epoch(epochs, start):
    assert avg.SWA(torch.nn.Linear(1, 1), None, start_epoch=0, epochs=epochs).start == start


def test_swa_lr_is_constant_from_the_first_averaged_epoch():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD([{"params": [model.weight], "lr": 0.1}, {"params": [model.bias], "lr": 0.5}])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 / (1 + step))
    swa = avg.SWA(model, opt, start_epoch=3, epochs=4, lr=0.01)
    lrs = []
    for epoch in range(1, 5):
        lrs.append([g["lr"] for g in opt.param_groups])
        for _ in range(2):
            opt.step()
            if not (swa.in_swa(epoch) and swa.lr > 0):
                sched.step()
        swa.on_epoch_end(model, epoch)
    assert lrs[0] == [0.1, 0.5] and lrs[1] == pytest.approx([0.1 / 3, 0.5 / 3])
    assert lrs[2] == lrs[3] == [0.01, 0.01]
    first = avg.SWA(model, opt, start_epoch=1, epochs=2, lr=0.02)  # epoch 1 already averaged
    assert first.start == 1 and [g["lr"] for g in opt.param_groups] == [0.02, 0.02]


def test_swa_rejects_a_start_after_the_last_epoch_and_lr_without_optimizer():
    with pytest.raises(ValueError, match="start_epoch"):
        avg.SWA(torch.nn.Linear(1, 1), None, start_epoch=6, epochs=5)
    with pytest.raises(ValueError, match="optimizer"):
        avg.SWA(torch.nn.Linear(1, 1), None, start_epoch=1, epochs=5, lr=0.1)


class BNModel(torch.nn.Module):
    """Takes the template's dict batches."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)
        self.bn = torch.nn.BatchNorm1d(2)

    def forward(self, batch):
        return self.bn(self.lin(batch["image"]))


def test_swa_finalize_recomputes_batchnorm_statistics_on_the_data():
    torch.manual_seed(0)
    model = BNModel()
    swa = avg.SWA(model, None, start_epoch=1, epochs=2)
    for epoch, _ in enumerate(_walk(model, 2), start=1):
        swa.on_epoch_end(model, epoch)
    swa.module.bn.running_mean.fill_(123.0)  # stale statistics
    x = torch.randn(16, 2) * 3 + 5
    swa.finalize([{"image": x, "target": torch.zeros(16)}])
    with torch.no_grad():
        h = swa.module.lin(x)  # the averaged weights' features
    assert torch.allclose(swa.module.bn.running_mean, h.mean(0), atol=1e-5)
    assert torch.allclose(swa.module.bn.running_var, h.var(0, unbiased=True), atol=1e-4)
    assert swa.module.bn.momentum == 0.1 and not swa.module.training


def test_swa_finalize_moves_batches_and_uses_the_given_forward():
    model = BNModel()
    swa = avg.SWA(model, None, start_epoch=1, epochs=1)
    swa.on_epoch_end(model, 1)
    calls = []
    x = torch.tensor([[1.0, 10.0], [3.0, 30.0], [5.0, 20.0], [7.0, 40.0]])
    swa.finalize([{"image": x[:2], "id": ["a", "b"]}, {"image": x[2:], "id": ["c", "d"]}], device="cpu",
                 forward=lambda m, b: calls.append(b["id"]) or m(b))
    assert calls == [["a", "b"], ["c", "d"]] and int(swa.module.bn.num_batches_tracked) == 2
    with torch.no_grad():
        h = swa.module.lin(x)
    # momentum=None: the cumulative average over batches = the data mean for equal batches
    assert torch.allclose(swa.module.bn.running_mean, h.mean(0), atol=1e-5)


def test_build_averagers_follows_the_config(workdir):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert avg.build_averagers(config.load("demo"), model, opt) == (None, None)
    cfg = config.load("demo", ["ema.enabled=true", "ema.decay=0.9", "ema.every=2", "ema.warmup=false",
                               "swa.enabled=true", "swa.lr=0.05", "train.epochs=8"])
    ema, swa = avg.build_averagers(cfg, model, opt)
    assert (ema.ema.decay, ema.every, ema.warmup) == (0.9, 2, False)
    assert (swa.start, swa.lr, swa.scheduler) == (7, 0.05, None)

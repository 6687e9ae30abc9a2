"""R-Drop: one forward over the doubled batch; the loss equals the hand computation."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import mod

rdrop = mod("training.tricks.rdrop")


def test_double_keeps_the_keys_and_doubles_every_tensor():
    batch = {"input_ids": torch.arange(6).view(3, 2), "attention_mask": torch.ones(3, 2, dtype=torch.long),
             "image": torch.randn(3, 1, 2, 2), "target": torch.tensor([0, 1, 2]), "meta": "x"}
    d = rdrop.double(batch)
    assert list(d) == list(batch) and d["meta"] == "x"
    for k in ("input_ids", "attention_mask", "image", "target"):
        assert d[k].shape == (6, *batch[k].shape[1:]) and d[k].dtype == batch[k].dtype
        assert torch.equal(d[k][:3], batch[k]) and torch.equal(d[k][3:], batch[k])


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_multiclass_loss_is_the_mean_ce_plus_alpha_times_the_symmetric_kl():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    y = np.array([0, 2, 1, 2])
    p, q = _softmax(a), _softmax(b)
    ce = lambda pr: -np.log(pr[np.arange(4), y]).mean()  # noqa: E731
    kl_pq, kl_qp = (p * np.log(p / q)).sum(-1), (q * np.log(q / p)).sum(-1)  # summed over classes
    expected = (ce(p) + ce(q)) / 2 + 0.7 * (0.5 * (kl_pq + kl_qp)).mean()  # averaged over the batch
    logits = torch.tensor(np.concatenate([a, b]), dtype=torch.float32)
    got = rdrop.rdrop_loss(logits, torch.tensor(np.concatenate([y, y])), F.cross_entropy, 0.7, "multiclass")
    assert math.isclose(got.item(), expected, rel_tol=1e-5)
    binary = rdrop.rdrop_loss(logits[:, :2], torch.tensor([0, 1, 1, 0] * 2), F.cross_entropy, 1.0, "binary")
    p2, q2 = _softmax(a[:, :2]), _softmax(b[:, :2])
    kl2 = 0.5 * ((p2 * np.log(p2 / q2)).sum(-1) + (q2 * np.log(q2 / p2)).sum(-1)).mean()
    assert math.isclose(binary.item() - F.cross_entropy(logits[:, :2], torch.tensor([0, 1, 1, 0] * 2)).item(),
                        kl2, rel_tol=1e-4)


def test_multilabel_consistency_is_the_bernoulli_kl_summed_over_labels():
    a, b = [[0.3, -1.0, 2.0], [0.0, 0.5, -0.2]], [[1.2, 0.4, 1.0], [-0.7, 0.5, 0.3]]
    y = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    kl = lambda u, v: u * math.log(u / v) + (1 - u) * math.log((1 - u) / (1 - v))  # noqa: E731
    rows = [sum(0.5 * (kl(sig(u), sig(v)) + kl(sig(v), sig(u))) for u, v in zip(ra, rb)) for ra, rb in zip(a, b)]
    bce = [-(t * math.log(sig(x)) + (1 - t) * math.log(1 - sig(x)))
           for r in (a, b) for row, yr in zip(r, y) for x, t in zip(row, yr)]
    expected = sum(bce) / len(bce) + 2.0 * sum(rows) / len(rows)
    got = rdrop.rdrop_loss(torch.tensor(a + b), torch.tensor(y + y), F.binary_cross_entropy_with_logits, 2.0,
                           "multilabel")
    assert math.isclose(got.item(), expected, rel_tol=1e-5)


def test_regression_consistency_is_the_mse_between_the_passes():
    a, b = [[1.0, 0.0], [2.0, 1.0]], [[1.5, 0.5], [1.0, 1.0]]
    y = [[0.0, 1.0], [0.5, 0.0]]
    mse_task = np.mean((np.array(a + b) - np.array(y + y)) ** 2)
    mse_between = np.mean((np.array(a) - np.array(b)) ** 2)
    got = rdrop.rdrop_loss(torch.tensor(a + b), torch.tensor(y + y), F.mse_loss, 0.5, "regression")
    assert math.isclose(got.item(), mse_task + 0.5 * mse_between, rel_tol=1e-6)


@pytest.mark.parametrize("problem,shape,loss", [
    ("multiclass", (5, 4), F.cross_entropy), ("binary", (5, 2), F.cross_entropy),
    ("multilabel", (5, 3), F.binary_cross_entropy_with_logits), ("regression", (5, 2), F.mse_loss)])
def test_identical_passes_add_no_consistency(problem, shape, loss):
    torch.manual_seed(0)
    a = torch.randn(*shape) * 3
    y = torch.randint(0, shape[1], (shape[0],)) if problem in ("multiclass", "binary") else torch.rand(*shape).round()
    assert rdrop.consistency(a, a.clone(), problem).abs().item() < 1e-6
    got = rdrop.rdrop_loss(torch.cat([a, a]), torch.cat([y, y]), loss, 10.0, problem)
    assert torch.isclose(got, loss(a, y), atol=1e-5)


def test_consistency_is_positive_and_symmetric_when_the_passes_differ():
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    for problem in ("multiclass", "multilabel", "regression"):
        c = rdrop.consistency(a, b, problem)
        assert c.item() > 0 and torch.isclose(c, rdrop.consistency(b, a, problem))


def test_an_odd_number_of_rows_is_not_a_doubled_batch():
    with pytest.raises(ValueError, match="doubled"):
        rdrop.rdrop_loss(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), F.cross_entropy, 1.0, "multiclass")

"""Every loss option against a hand computation: smoothing, class weights, focal, soft targets, errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from helpers import mod

config, losses, targets = mod("core.config"), mod("training.tricks.losses"), mod("core.labels")
ConfigError = config.ConfigError

PROBLEMS = {
    "binary": ["problem=binary", "metric=roc_auc", "data.target_cols=[y]"],
    "multiclass": ["problem=multiclass", "metric=accuracy", "data.target_cols=[y]", "loss.label_smoothing=0"],
    "multilabel": ["problem=multilabel", "metric=roc_auc", "data.target_cols=[a,b,c]"],
    "regression": ["problem=regression", "metric=rmse", "data.target_cols=[y]"],
}
SPECS = {
    "binary": targets.LabelMap("binary", ["y"], classes=["neg", "pos"]),
    "multiclass": targets.LabelMap("multiclass", ["y"], classes=["a", "b", "c", "d"]),
    "multilabel": targets.LabelMap("multilabel", ["a", "b", "c"]),
    "regression": targets.LabelMap("regression", ["y"], mean=[0.0], std=[1.0]),
}


def build(problem, *overrides, y=None):
    cfg = config.load("demo", [*PROBLEMS[problem], *overrides])
    return losses.build_loss(cfg, SPECS[problem], np.zeros(1, dtype=np.int64) if y is None else y)


def batch(n=8, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * 2, torch.randint(0, c, (n,), generator=g)


def test_auto_is_the_plain_loss_of_each_problem(workdir):
    logits, y = batch()
    assert torch.allclose(build("multiclass")(logits, y), F.cross_entropy(logits, y))
    # accuracy is scored on hard labels: auto smooths the targets by 0.1 (core/auto.py)
    smoothed = build("multiclass", "loss.label_smoothing=auto")(logits, y)
    assert torch.allclose(smoothed, F.cross_entropy(logits, y, label_smoothing=0.1))
    assert torch.allclose(build("binary")(logits[:, :2], y % 2), F.cross_entropy(logits[:, :2], y % 2))
    t = (torch.rand(8, 3) > 0.5).float()
    assert torch.allclose(build("multilabel")(logits[:, :3], t), F.binary_cross_entropy_with_logits(logits[:, :3], t))
    r = torch.randn(8, 1)
    assert torch.allclose(build("regression")(logits[:, :1], r), ((logits[:, :1] - r) ** 2).mean())


def test_label_smoothing_equals_the_formula(workdir):
    logits, y = batch()
    s, c = 0.2, 4
    target = F.one_hot(y, c).float() * (1 - s) + s / c
    by_hand = -(target * logits.log_softmax(-1)).sum(-1).mean()
    got = build("multiclass", f"loss.label_smoothing={s}")(logits, y)
    assert torch.allclose(got, by_hand)
    assert torch.allclose(got, F.cross_entropy(logits, y, label_smoothing=s))  # PyTorch's own definition
    assert not torch.allclose(got, build("multiclass")(logits, y))
    t = (torch.rand(8, 3) > 0.5).float()
    smoothed = t * (1 - s) + 0.5 * s  # multilabel: towards 0.5
    p = logits[:, :3].sigmoid()
    bce = -(smoothed * p.log() + (1 - smoothed) * (1 - p).log()).mean()
    assert torch.allclose(build("multilabel", f"loss.label_smoothing={s}")(logits[:, :3], t), bce, atol=1e-6)


def test_balanced_weights_are_n_over_k_count_and_weight_the_loss(workdir):
    y_train = np.array([0] * 12 + [1] * 6 + [2] * 4 + [3] * 2)  # n=24, k=4
    cfg = config.load("demo", [*PROBLEMS["multiclass"], "loss.class_weights=balanced"])
    w = losses.class_weights(cfg, SPECS["multiclass"], y_train)
    assert w.tolist() == pytest.approx([24 / (4 * 12), 24 / (4 * 6), 24 / (4 * 4), 24 / (4 * 2)])
    assert w.tolist() == pytest.approx(compute_class_weight("balanced", classes=np.arange(4), y=y_train).tolist())
    logits, y = batch()
    nll = -logits.log_softmax(-1)[torch.arange(8), y]
    by_hand = (w[y] * nll).mean()  # averaged over the batch, not over the sum of the weights
    got = build("multiclass", "loss.class_weights=balanced", y=y_train)(logits, y)
    assert torch.allclose(got, by_hand)
    assert not torch.allclose(got, nll.mean())


def test_a_class_missing_from_the_fold_gets_weight_one(workdir):
    cfg = config.load("demo", [*PROBLEMS["multiclass"], "loss.class_weights=balanced"])
    w = losses.class_weights(cfg, SPECS["multiclass"], np.array([0, 0, 1, 2]))
    assert w.tolist() == pytest.approx([4 / 8, 4 / 4, 4 / 4, 1.0])


def test_multilabel_balanced_pos_weight_is_neg_over_pos(workdir):
    y_train = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1], [0, 0, 1]], dtype=np.float32)  # col 2: all positive
    cfg = config.load("demo", [*PROBLEMS["multilabel"], "loss.class_weights=balanced"])
    pw = losses.class_weights(cfg, SPECS["multilabel"], y_train)
    assert pw.tolist() == pytest.approx([3.0, 3.0, 1.0])
    logits, t = torch.randn(6, 3), (torch.rand(6, 3) > 0.5).float()
    by_hand = -(pw * t * F.logsigmoid(logits) + (1 - t) * F.logsigmoid(-logits)).mean()
    got = build("multilabel", "loss.class_weights=balanced", y=y_train)(logits, t)
    assert torch.allclose(got, by_hand, atol=1e-6)


def test_listed_weights_are_used_as_given_and_a_wrong_length_names_the_key(workdir):
    logits, y = batch()
    got = build("multiclass", "loss.class_weights=[1.0,2.0,3.0,4.0]")(logits, y)
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert torch.allclose(got, (w[y] * -logits.log_softmax(-1)[torch.arange(8), y]).mean())
    with pytest.raises(ConfigError, match=r"loss\.class_weights.*3 weights.*classes"):
        build("multiclass", "loss.class_weights=[1.0,2.0,3.0]")
    with pytest.raises(ConfigError, match=r"loss\.class_weights.*2 weights.*target columns"):
        build("multilabel", "loss.class_weights=[1.0,2.0]")
    with pytest.raises(ConfigError, match=r"loss\.class_weights.*>= 0"):
        build("multiclass", "loss.class_weights=[1.0,-2.0,3.0,4.0]")
    with pytest.raises(ConfigError, match=r"loss\.class_weights.*regression"):
        build("regression", "loss.class_weights=balanced")


@pytest.mark.parametrize("extra", [[], ["loss.label_smoothing=0.1"], ["loss.class_weights=[0.5,1.0,2.0,4.0]"]])
def test_focal_with_gamma_zero_is_cross_entropy(workdir, extra):
    logits, y = batch()
    ce = build("multiclass", "loss.name=ce", *extra)(logits, y)
    focal = build("multiclass", "loss.name=focal", "loss.focal_gamma=0", *extra)(logits, y)
    assert torch.allclose(focal, ce)


def test_focal_down_weights_each_example_by_one_minus_p_to_the_gamma(workdir):
    logits = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0]])
    y = torch.tensor([0, 0, 1])  # easy, hard, very wrong
    fn = build("multiclass", "loss.name=focal", "loss.focal_gamma=2.0")
    p = logits.softmax(-1)[torch.arange(3), y]
    ce = -p.log()
    for i in range(3):  # per example: exactly (1 - p_y)^gamma * CE
        assert torch.allclose(fn(logits[i:i + 1], y[i:i + 1]), (1 - p[i]) ** 2 * ce[i])
    assert torch.allclose(fn(logits, y), ((1 - p) ** 2 * ce).mean())
    factor = fn(logits[:1], y[:1]) / ce[0], fn(logits[1:2], y[1:2]) / ce[1]
    assert factor[0] < 0.01 < 0.6 < factor[1]  # the easy example is nearly ignored, the hard one kept


def test_soft_targets_work_and_are_not_smoothed_twice(workdir):
    logits, y = batch()
    soft = torch.softmax(torch.randn(8, 4), -1)
    by_hand = -(soft * logits.log_softmax(-1)).sum(-1).mean()
    for name in ("ce", "focal"):  # the mixer already applied label smoothing: the loss uses soft as given
        fn = build("multiclass", f"loss.name={name}", "loss.focal_gamma=0", "loss.label_smoothing=0.3")
        assert torch.allclose(fn(logits, soft), by_hand)
        plain = build("multiclass", f"loss.name={name}")
        assert torch.allclose(plain(logits, F.one_hot(y, 4).float()), plain(logits, y))  # one-hot == indices
    w = torch.tensor([0.5, 1.0, 2.0, 4.0])
    weighted = build("multiclass", "loss.class_weights=[0.5,1.0,2.0,4.0]")
    assert torch.allclose(weighted(logits, soft), -(w * soft * logits.log_softmax(-1)).sum(-1).mean())
    assert torch.allclose(weighted(logits, F.one_hot(y, 4).float()), weighted(logits, y))


def test_half_precision_logits_give_a_float32_loss(workdir):
    logits, y = batch()
    half = logits.to(torch.bfloat16)
    for problem, name in (("multiclass", "ce"), ("multiclass", "focal")):
        got = build(problem, f"loss.name={name}")(half, y)
        assert got.dtype == torch.float32
        assert torch.allclose(got, build(problem, f"loss.name={name}")(half.float(), y))


def test_focal_gradients_stay_finite_on_confident_logits(workdir):
    logits = torch.tensor([[60.0, -60.0, 0.0, 0.0]], requires_grad=True)
    for gamma in (0.0, 0.5, 2.0):
        logits.grad = None
        build("multiclass", "loss.name=focal", f"loss.focal_gamma={gamma}")(logits, torch.tensor([0])).backward()
        assert torch.isfinite(logits.grad).all()


def test_smooth_l1_is_huber_on_the_standardised_targets(workdir):
    pred, target = torch.tensor([[0.0], [0.5], [3.0]]), torch.tensor([[0.2], [0.5], [0.0]])
    d = (pred - target).abs()
    by_hand = torch.where(d < 1, 0.5 * d ** 2, d - 0.5).mean()  # beta = 1 standard deviation
    assert torch.allclose(build("regression", "loss.name=smooth_l1")(pred, target), by_hand)
    assert torch.allclose(build("regression", "loss.name=mse")(pred, target), (d ** 2).mean())


@pytest.mark.parametrize("problem,name", [("regression", "focal"), ("multiclass", "mse"), ("binary", "bce"),
                                          ("multilabel", "ce"), ("regression", "ce"), ("multilabel", "smooth_l1")])
def test_a_loss_that_does_not_fit_the_problem_names_loss_name(workdir, problem, name):
    with pytest.raises(ConfigError, match=rf"loss\.name.*{name}.*{problem}"):
        build(problem, f"loss.name={name}")


def test_smoothing_a_regression_and_a_negative_gamma_name_their_keys(workdir):
    with pytest.raises(ConfigError, match=r"loss\.label_smoothing.*regression"):
        build("regression", "loss.label_smoothing=0.1")
    with pytest.raises(ConfigError, match=r"loss\.focal_gamma"):
        build("multiclass", "loss.name=focal", "loss.focal_gamma=-1")

"""Optimiser groups and schedule: head lr, layer-wise lr decay, freezing, warmup + cosine/linear floor."""
import pytest
import torch

from helpers import mod

config, optim = mod("core.config"), mod("training.optim")


def _model(demo_dir, task):
    cfg = config.load("demo", [f"model.name={demo_dir / 'tiny_bert'}"] if task == "text" else [])
    return cfg, mod("modality").get_modality(cfg).build_model(3, pretrained=task == "text")


def _task():
    return config.load("demo").task


def _lr_of(opt, param):
    return next(g["lr"] for g in opt.param_groups if any(p is param for p in g["params"]))


def test_llrd_gives_each_layer_decay_times_the_layer_above(demo_dir, workdir):
    task = _task()
    cfg, model = _model(demo_dir, task)
    cfg = config.load("demo", ["optim.llrd=0.5", "train.lr=1.0", "optim.head_lr=3.0"]
                      + ([f"model.name={demo_dir / 'tiny_bert'}"] if task == "text" else []))
    ids = optim.layer_ids(model)
    opt = optim.build_optimizer(model, cfg)
    top = max(ids.values())
    head = optim.head_prefix(model)
    depths_seen = set()
    for name, p in model.named_parameters():
        if name.startswith(head):
            assert _lr_of(opt, p) == 3.0, name
        else:
            assert _lr_of(opt, p) == pytest.approx(0.5 ** (top - ids[name])), name
            depths_seen.add(ids[name])
    assert len(depths_seen) >= 3  # embeddings/stem, middle layers, top


def test_no_weight_decay_on_biases_and_norms(demo_dir, workdir):
    cfg, model = _model(demo_dir, _task())
    opt = optim.build_optimizer(model, config.load("demo", ["train.weight_decay=0.1"]))
    for g in opt.param_groups:
        assert all((p.ndim <= 1) == (g["weight_decay"] == 0.0) for p in g["params"])


def test_freeze_layers_freezes_the_lowest_layers_only(demo_dir, workdir):
    cfg, model = _model(demo_dir, _task())
    ids = optim.layer_ids(model)
    optim.freeze_layers(model, 2)
    head = optim.head_prefix(model)
    for name, p in model.named_parameters():
        assert p.requires_grad == (name.startswith(head) or ids[name] >= 2), name


def test_freeze_epochs_toggles_the_backbone_but_never_the_head(demo_dir, workdir):
    cfg, model = _model(demo_dir, _task())
    head = optim.head_prefix(model)
    optim.set_backbone_trainable(model, False)
    assert all(p.requires_grad == n.startswith(head) for n, p in model.named_parameters())
    optim.set_backbone_trainable(model, True)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_warmup_then_decay_to_the_floor(workdir, schedule):
    cfg = config.load("demo", ["train.lr=1.0", "train.min_lr=0.1", "train.warmup=0.2", f"optim.schedule={schedule}"])
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = optim.build_scheduler(opt, 10, warmup=cfg.train.warmup, schedule=cfg.optim.schedule,
                                  min_lr=cfg.train.min_lr)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(1.0)  # two warmup steps
    assert all(a >= b - 1e-12 for a, b in zip(lrs[2:], lrs[3:]))  # then never increases
    assert lrs[-1] == pytest.approx(0.1)


def test_sgd_is_nesterov_with_the_configured_momentum(demo_dir, workdir):
    cfg, model = _model(demo_dir, _task())
    opt = optim.build_optimizer(model, config.load("demo", ["optim.name=sgd", "optim.momentum=0.8"]))
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.8 and opt.defaults["nesterov"]


def test_hf_linear_schedule_is_transformers_linear_schedule_step_by_step():
    from transformers import get_linear_schedule_with_warmup
    p = torch.nn.Parameter(torch.zeros(1))
    ours_opt, theirs_opt = torch.optim.SGD([p], lr=0.5), torch.optim.SGD([p], lr=0.5)
    ours = optim.build_scheduler(ours_opt, 17, warmup=0.2, schedule="hf_linear")
    theirs = get_linear_schedule_with_warmup(theirs_opt, int(0.2 * 17), 17)
    for _ in range(17):
        assert ours_opt.param_groups[0]["lr"] == theirs_opt.param_groups[0]["lr"]  # bit for bit
        ours.step()
        theirs.step()


def test_constant_schedule_keeps_the_lr_exactly():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=3e-4)
    sched = optim.build_scheduler(opt, 10, warmup=0.5, schedule="constant")
    for _ in range(10):
        opt.step()
        sched.step()
        assert opt.param_groups[0]["lr"] == 3e-4


def test_the_global_batch_must_divide_across_the_processes(workdir):
    setup = mod("training.setup")
    setup.check_batch_split(config.load("demo", ["train.batch_size=32"]), 4)
    with pytest.raises(config.ConfigError, match="train.batch_size.*32, the global batch, which 3 processes"):
        setup.check_batch_split(config.load("demo", ["train.batch_size=32"]), 3)
    with pytest.raises(config.ConfigError, match="train.eval_batch_size"):
        setup.check_batch_split(config.load("demo", ["train.batch_size=32", "train.eval_batch_size=63"]), 2)


def test_sync_bn_converts_batchnorm_only_for_several_gpu_processes(workdir):
    setup = mod("training.setup")
    net = lambda: torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))  # noqa: E731
    kinds = lambda m: {type(x).__name__ for x in m.modules()}  # noqa: E731
    cfg = config.load("demo")
    assert "SyncBatchNorm" in kinds(setup.sync_batchnorm(cfg, net(), 2, torch.device("cuda")))
    assert "SyncBatchNorm" not in kinds(setup.sync_batchnorm(cfg, net(), 1, torch.device("cuda")))
    assert "SyncBatchNorm" not in kinds(setup.sync_batchnorm(cfg, net(), 2, torch.device("cpu")))  # torch: GPUs only
    off = config.load("demo", ["train.sync_bn=false"])
    assert "SyncBatchNorm" not in kinds(setup.sync_batchnorm(off, net(), 2, torch.device("cuda")))

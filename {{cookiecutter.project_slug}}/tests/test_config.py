"""The config schema: one typed source, YAML layers, dotted overrides, errors that name the key."""
import dataclasses
import json
import types
import typing

import pytest
import yaml

from helpers import mod

config = mod("core.config")


def test_overrides_are_typed_and_lists_parse(workdir):
    cfg = config.load("demo", ["train.lr=1e-3", "train.epochs=7", "data.target_cols=[a,b]", "train.folds=[0,2]",
                               "problem=multilabel", "metric=roc_auc"])
    assert cfg.train.lr == pytest.approx(1e-3) and isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 7
    assert cfg.data.target_cols == ["a", "b"]
    assert cfg.train.folds == [0, 2]


@pytest.mark.parametrize("override, key", [("train.epoch=3", "train.epoch"), ("modle.name=x", "modle"),
                                           ("data.nope=1", "data.nope")])
def test_unknown_key_is_an_error_naming_it(workdir, override, key):
    with pytest.raises(config.ConfigError, match=f"unknown config key '{key}'"):
        config.load("demo", [override])


@pytest.mark.parametrize("override, key", [("train.epochs=abc", "train.epochs"), ("train.lr=fast", "train.lr"),
                                           ("model.pretrained=maybe", "model.pretrained"),
                                           ("train.epochs=2.5", "train.epochs")])
def test_wrong_type_is_an_error_naming_the_key(workdir, override, key):
    with pytest.raises(config.ConfigError, match=f"'{key}'"):
        config.load("demo", [override])


def test_unknown_key_in_an_experiment_file_names_file_and_key(workdir):
    (workdir / "configs" / "bad.yaml").write_text("train:\n  epochs: 2\n  lr_typo: 0.1\n")
    with pytest.raises(config.ConfigError, match=r"train\.lr_typo.*configs/bad\.yaml"):
        config.load("bad")


def test_layers_resolve_default_then_experiment_then_command_line(workdir):
    (workdir / "configs" / "exp9.yaml").write_text("train:\n  epochs: 9\n  batch_size: 3\n")
    cfg = config.load("exp9", ["train.batch_size=4"])
    assert (cfg.exp, cfg.train.epochs, cfg.train.batch_size) == ("exp9", 9, 4)
    default = config.load("nofile")
    assert default.train.epochs == config.read_yaml(workdir / "configs" / "default.yaml")["train"]["epochs"]


def test_default_yaml_documents_every_schema_key(workdir):
    documented = set(config.flatten(config.read_yaml(workdir / "configs" / "default.yaml")))
    schema = set(config.flatten(config.to_dict(config.Config())))
    task = config.load().task
    expected = {k for k in schema if config.TASK_ONLY.get(k, task) == task}
    assert expected - documented == set(), "keys missing from configs/default.yaml"
    assert documented - schema == set()


def test_schema_defaults_equal_default_yaml_key_by_key(workdir):
    """One home per default: a key whose schema default and default.yaml value differ is a bug either way
    (a saved config.yaml, which lists every key, would disagree with a fresh one)."""
    documented = config.flatten(config.read_yaml(workdir / "configs" / "default.yaml"))
    schema = config.flatten(yaml.safe_load(config.dump(config.Config())))  # through YAML, as a run saves it
    differ = {k: (schema.get(k), v) for k, v in documented.items() if schema.get(k) != v}
    assert differ == {}, "schema default vs configs/default.yaml"


def test_the_default_metric_comes_from_the_metric_table(workdir):
    table = mod("core.metric_table")
    cfg = config.Config()
    baked = mod("core.schema").BAKED
    want = table.DEFAULT_METRIC[cfg.problem] if baked["metric"] == "auto" else baked["metric"]
    assert cfg.metric == want == config.read_yaml(workdir / "configs" / "default.yaml")["metric"]
    assert cfg.problem in table.METRIC_TABLE[cfg.metric][0]


def test_a_key_of_the_other_modality_is_rejected(workdir):
    task = config.load().task
    other_key = "data.max_len=64" if task == "image" else "data.image_size=64"
    with pytest.raises(config.ConfigError, match="applies to"):
        config.load("demo", [other_key])


def test_metric_must_fit_the_problem(workdir):
    problem = config.load().problem
    wrong = "rmse" if problem != "regression" else "accuracy"
    with pytest.raises(config.ConfigError, match="metric"):
        config.load("demo", [f"metric={wrong}"])


def test_resolved_config_round_trips_through_yaml(workdir, tmp_path):
    cfg = config.load("demo", ["train.epochs=2"])
    path = tmp_path / "resolved.yaml"
    path.write_text(config.dump(cfg))
    again = config.load("demo", base=path)
    assert dataclasses.asdict(again) == dataclasses.asdict(cfg)
    assert yaml.safe_load(path.read_text())["train"]["epochs"] == 2


def test_every_schema_field_has_a_supported_type():
    sections = [config.Config] + [t for t in typing.get_type_hints(config.Config).values()
                                  if dataclasses.is_dataclass(t)]
    for section in sections:
        for name, tp in typing.get_type_hints(section).items():
            if dataclasses.is_dataclass(tp):
                continue
            options = typing.get_args(tp) if isinstance(tp, types.UnionType) else (tp,)
            for option in options:
                assert option in (str, int, float, bool, dict) or typing.get_origin(option) is list, (section, name, tp)


def test_mapping_keys_take_a_mapping_and_refuse_anything_else(workdir):
    cfg = config.load("demo", ["ensemble.meta_params={C: 0.5, max_iter: 200}"])
    assert cfg.ensemble.meta_params == {"C": 0.5, "max_iter": 200}
    with pytest.raises(config.ConfigError, match="ensemble.meta_params"):
        config.load("demo", ["ensemble.meta_params=3"])


def test_auto_defaults_follow_the_backbone_and_the_metric(workdir, tmp_path):
    """train.lr and loss.label_smoothing are `auto` in default.yaml and numbers once loaded."""
    auto = mod("core.auto")
    base = ["train.lr=auto", "loss.label_smoothing=auto"]
    task = config.load("demo").task
    pre = config.load("demo", [*base, "model.pretrained=true"])
    scratch = config.load("demo", [*base, "model.pretrained=false"])
    assert scratch.train.lr == (auto.IMAGE_LR["scratch"] if task == "image" else auto.TEXT_LR_SCRATCH)
    if task == "image":  # the demo's test_resnet is a BatchNorm CNN; LayerNorm families get transformer rates
        assert pre.train.lr == auto.IMAGE_LR["batchnorm"]
        vit = config.load("demo", [*base, "model.pretrained=true", "model.name=timm/vit_small_patch16_224"])
        assert vit.train.lr == auto.IMAGE_LR["layernorm"] < pre.train.lr
    else:  # by the width in the model folder's config.json, or guessed from a hub id
        rates = {}
        for width in (32, 768, 1024):
            folder = tmp_path / f"m{width}"
            folder.mkdir()
            (folder / "config.json").write_text(json.dumps({"hidden_size": width}))
            rates[width] = config.load("demo", [*base, "model.pretrained=true", f"model.name={folder}"]).train.lr
        assert rates == {32: 1e-4, 768: 3e-5, 1024: 1e-5}
        assert config.load("demo", [*base, "model.name=microsoft/deberta-v3-large"]).train.lr == 1e-5
    assert config.load("demo", [*base, "train.lr=0.01"]).train.lr == 0.01
    if pre.problem in ("binary", "multiclass"):
        assert config.load("demo", [*base, "metric=accuracy"]).loss.label_smoothing == 0.1
        assert config.load("demo", [*base, "metric=log_loss"]).loss.label_smoothing == 0.0
    else:
        assert pre.loss.label_smoothing == 0.0
    saved = workdir / "saved.yaml"
    saved.write_text(config.dump(pre))
    flat = config.flatten(yaml.safe_load(saved.read_text()))
    assert isinstance(flat["train.lr"], float) and isinstance(flat["loss.label_smoothing"], float)
    assert config.load(base=saved).train.lr == pre.train.lr
    with pytest.raises(config.ConfigError, match="train.lr.*number or auto"):
        config.load("demo", ["train.lr=fast"])

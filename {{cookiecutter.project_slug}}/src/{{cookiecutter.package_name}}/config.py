"""The typed config schema: load YAML, merge, apply dotted overrides, validate.

Resolution order (later wins):
    dataclass defaults < configs/default.yaml < configs/<exp>.yaml < key=value overrides

    python -m <package>.config [--exp NAME] [key=value ...]   # print the resolved config

An unknown key or a value of the wrong type is a ConfigError that names the key.
"""
from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path("configs")


class ConfigError(ValueError):
    """A config key is unknown, mistyped or out of range."""


@dataclass
class DataConfig:
    dir: str = "data"                       # competition folder (Kaggle layout)
    train_file: str = "train.csv"
    test_file: str = "test.csv"
    sample_submission_file: str = "sample_submission.csv"
    id_col: str = "id"
    target_cols: list[str] = field(default_factory=lambda: ["target"])
    group_col: str = ""                     # '' = no grouping
    image_col: str = "image"                # image: path relative to data.dir
    image_size: int = 224                   # image: side after resize
    text_cols: list[str] = field(default_factory=lambda: ["text"])  # text: joined with [SEP]
    max_len: int = 256                      # text: tokens per example
    fold_seed: int = 42                     # folds depend on this, not on `seed`
    check_inputs: bool = True               # decode every image / inspect every text up front


@dataclass
class ModelConfig:
    name: str = "resnet18"                  # timm name, or HF hub id / local directory
    pretrained: bool = True
    weights: str = ""                       # image: local checkpoint file (offline notebooks)
    pooling: str = "mean"                   # text: mean | cls
    drop_rate: float = 0.1                  # dropout before the head


@dataclass
class TrainConfig:
    epochs: int = 5
    n_folds: int = 5
    folds: list[int] = field(default_factory=list)   # folds to run; [] = all
    batch_size: int = 32
    eval_batch_size: int = 0                # 0 = 2 x batch_size
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.1                     # fraction of optimiser steps
    min_lr: float = 0.0                     # floor of the cosine decay
    accum_steps: int = 1
    max_grad_norm: float = 0.0              # 0 = no clipping
    precision: str = "fp32"                 # fp32 | bf16 | fp16
    num_workers: int = 2
    device: str = "auto"                    # auto | cpu | cuda
    progress: bool = True                   # tqdm bars


@dataclass
class AugConfig:
    # image: albumentations transforms applied after the resize, e.g. {name: HorizontalFlip, p: 0.5}
    train: list[dict] = field(default_factory=lambda: [{"name": "HorizontalFlip", "p": 0.5}])


@dataclass
class SubmitConfig:
    format: str = "auto"                    # auto | label | proba
    threshold: float = 0.5                  # multilabel: probability -> 0/1 for label format


@dataclass
class PathsConfig:
    outputs: str = "outputs"
    submissions: str = "submissions"
    folds: str = "folds"


@dataclass
class Config:
    task: str = "image"                     # image | text (fixed when the project was baked)
    problem: str = "multiclass"             # binary | multiclass | multilabel | regression
    exp: str = "default"                    # experiment name = outputs/<exp>/
    seed: int = 42
    metric: str = "accuracy"
    overwrite: bool = False                 # replace a finished outputs/<exp>/
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    submit: SubmitConfig = field(default_factory=SubmitConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)


CHOICES = {
    "task": ("image", "text"),
    "problem": ("binary", "multiclass", "multilabel", "regression"),
    "model.pooling": ("mean", "cls"),
    "train.precision": ("fp32", "bf16", "fp16"),
    "train.device": ("auto", "cpu", "cuda"),
    "submit.format": ("auto", "label", "proba"),
}
# Keys that only mean something for one modality; setting them in the other is a mistake.
TASK_ONLY = {
    "data.image_col": "image", "data.image_size": "image", "aug.train": "image", "model.weights": "image",
    "data.text_cols": "text", "data.max_len": "text", "model.pooling": "text",
}


def _coerce(key: str, value: Any, tp: Any, from_cli: bool) -> Any:
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if from_cli and not isinstance(value, list):
            value = [] if value in (None, "") else [value]
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, item_tp, from_cli) for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads '1e-3' as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if from_cli and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
    raise ConfigError(f"config key '{key}': unsupported schema type {tp}")  # pragma: no cover


def _merge(obj: Any, updates: dict, prefix: str, from_cli: bool, source: str) -> None:
    hints = typing.get_type_hints(type(obj))
    for k, v in updates.items():
        key = f"{prefix}{k}"
        if k not in hints:
            known = ", ".join(f"{prefix}{n}" for n in hints)
            raise ConfigError(f"unknown config key '{key}' in {source}; known keys here: {known}")
        tp = hints[k]
        if dataclasses.is_dataclass(tp):
            if not isinstance(v, dict):
                raise ConfigError(f"config key '{key}' is a section; give keys like '{key}.<name>'")
            _merge(getattr(obj, k), v, f"{key}.", from_cli, source)
        else:
            setattr(obj, k, _coerce(key, v, tp, from_cli))


def parse_overrides(items: list[str]) -> dict:
    """['train.lr=1e-3', 'data.target_cols=[a,b]'] -> nested dict."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys")
    return data


def validate(cfg: Config, explicit: set[str]) -> None:
    flat = flatten(to_dict(cfg))
    for key, allowed in CHOICES.items():
        if flat[key] not in allowed:
            raise ConfigError(f"config key '{key}' is {flat[key]!r}; choose one of {', '.join(allowed)}")
    for key in sorted(explicit):
        if key in TASK_ONLY and TASK_ONLY[key] != cfg.task:
            raise ConfigError(f"config key '{key}' applies to {TASK_ONLY[key]} projects; this one is {cfg.task}")
    positive = ["train.epochs", "train.batch_size", "train.accum_steps", "data.image_size", "data.max_len"]
    for key in positive:
        if flat[key] < 1:
            raise ConfigError(f"config key '{key}' must be >= 1, got {flat[key]}")
    if cfg.train.n_folds < 2:
        raise ConfigError(f"config key 'train.n_folds' must be >= 2, got {cfg.train.n_folds}")
    bad = [f for f in cfg.train.folds if not 0 <= f < cfg.train.n_folds]
    if bad:
        raise ConfigError(f"config key 'train.folds' has {bad}, outside 0..{cfg.train.n_folds - 1}")
    if not cfg.data.target_cols:
        raise ConfigError("config key 'data.target_cols' must name at least one column")
    if cfg.problem in ("binary", "multiclass") and len(cfg.data.target_cols) != 1:
        raise ConfigError(f"config key 'data.target_cols' must name one column for {cfg.problem}, "
                          f"got {cfg.data.target_cols}")
    if not cfg.exp or "/" in cfg.exp or cfg.exp.startswith("."):
        raise ConfigError(f"config key 'exp' {cfg.exp!r} is not a valid folder name")
    from .metrics import check_metric  # late import: metrics imports sklearn
    check_metric(cfg.metric, cfg.problem)


def load(exp: str | None = None, overrides: list[str] | None = None, base: Path | None = None,
         config_dir: Path = CONFIG_DIR) -> Config:
    """Resolve a config. `base` is a saved config.yaml (predict/submit read the run's own)."""
    cfg = Config()
    explicit: set[str] = set()
    layers: list[tuple[dict, str]] = []
    if base is not None:
        layers.append((read_yaml(base), str(base)))
    else:
        default = config_dir / "default.yaml"
        if default.exists():
            layers.append((read_yaml(default), str(default)))
        if exp:
            exp_file = config_dir / f"{exp}.yaml"
            if exp_file.exists():
                data = read_yaml(exp_file)
                layers.append((data, str(exp_file)))
                explicit |= set(flatten(data))
    cli = parse_overrides(overrides or [])
    explicit |= set(flatten(cli))
    layers.append((cli, "the command line"))
    for data, source in layers:
        _merge(cfg, data, "", from_cli=source == "the command line", source=source)
    if exp:
        cfg.exp = exp
    validate(cfg, explicit)
    return cfg


def dump(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def main(argv: list[str] | None = None) -> None:
    from .cli import parse_cli
    exp, overrides = parse_cli(argv if argv is not None else sys.argv[1:])
    sys.stdout.write(dump(load(exp, overrides)))


if __name__ == "__main__":
    main()

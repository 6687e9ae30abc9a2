"""Resolve a config: read YAML, merge, apply dotted overrides, check types and values.

Resolution order (later wins):
    schema defaults (schema.py) < configs/default.yaml < configs/<exp>.yaml < key=value overrides

    make config EXP=exp001 ARGS="train.lr=3e-4"      # print the resolved config (python -m <package> config)

An unknown key or a value of the wrong type is a ConfigError that names the key and the file it came
from. The merge is written here rather than with OmegaConf: the schema has a union of a string and a
list (loss.class_weights: none | balanced | [w0, w1, ...]), which OmegaConf 2.3's structured configs refuse
(unions of primitive types only; container unions are in its 2.4 release candidate); YAML 1.1 reads 1e-3
as a string, which must still pass as a float; and each modality refuses the other's keys only where a
file or the command line set them explicitly, which needs to know where each value came from.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from .auto import resolve
from .errors import ConfigError
from .metrics import check_metric
from .schema import CHOICES, TASK_ONLY, TRACKERS, Config, image_hw

CONFIG_DIR = Path("configs")


def _coerce(key: str, value: Any, tp: Any, from_cli: bool) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # e.g. str | list[float]: the first that fits
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(key, value, option, from_cli and typing.get_origin(option) is not list)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError("; or ".join(errors))
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


def check_choices(cfg: Config, flat: dict, explicit: set[str]) -> None:
    for key, allowed in CHOICES.items():
        if flat[key] not in allowed:
            raise ConfigError(f"config key '{key}' is {flat[key]!r}; choose one of {', '.join(allowed)}")
    for key in sorted(explicit):
        if key in TASK_ONLY and TASK_ONLY[key] != cfg.task:
            raise ConfigError(f"config key '{key}' applies to {TASK_ONLY[key]} projects; this one is {cfg.task}")
    unknown = [b for b in cfg.track.backends if b not in TRACKERS]
    if unknown:
        raise ConfigError(f"config key 'track.backends' has {unknown}; choose from {', '.join(TRACKERS)}")
    check_metric(cfg.metric, cfg.problem)


def check_ranges(cfg: Config, flat: dict) -> None:
    positive = ["train.epochs", "train.save_every", "train.batch_size", "train.accum_steps", "data.max_len",
                "adv.steps", "ema.every", "ensemble.hill_iters", "train.max_skipped_steps", "sanity.rows",
                "sanity.steps", "package.sample_rows", "report.thumb",
                "report.text_chars"]
    for key in positive:
        if flat[key] < 1:
            raise ConfigError(f"config key '{key}' must be >= 1, got {flat[key]}")
    for key in ("sanity.lr", "sanity.samples", "eda.max_rows", "report.worst", "package.test_rows",
                "package.time_limit", "train.eval_every", "train.patience"):
        if flat[key] < 0:
            raise ConfigError(f"config key '{key}' must be >= 0, got {flat[key]}")
    size = cfg.data.image_size
    if (isinstance(size, list) and len(size) != 2) or min(image_hw(size)) < 1:
        raise ConfigError(f"config key 'data.image_size' must be a side >= 1 or [height, width] of sides >= 1, "
                          f"got {size}")
    if cfg.train.n_folds < 2:
        raise ConfigError(f"config key 'train.n_folds' must be >= 2, got {cfg.train.n_folds}")
    bad = [f for f in cfg.train.folds if not 0 <= f < cfg.train.n_folds]
    if bad:
        raise ConfigError(f"config key 'train.folds' has {bad}, outside 0..{cfg.train.n_folds - 1}")
    for key in ("train.eval_every", "train.patience"):
        if flat[key] and cfg.swa.enabled:
            raise ConfigError(f"config key '{key}' picks the best evaluation, which swa.enabled replaces by the "
                              f"average of the last epochs; set {key}=0 or swa.enabled=false")
    if not 0 <= cfg.swa.start_epoch <= cfg.train.epochs:
        raise ConfigError(f"config key 'swa.start_epoch' must be in 0..train.epochs={cfg.train.epochs}, "
                          f"got {cfg.swa.start_epoch}")
    for key, value, low, high, shown in (("ema.decay", cfg.ema.decay, 0.0, 1.0, "(0, 1)"),
                                         ("sanity.max_final_loss_ratio", cfg.sanity.max_final_loss_ratio, 0.0,
                                          1.0, "(0, 1)")):
        if not low < value < high:
            raise ConfigError(f"config key '{key}' must be in {shown}, got {value}")
    if not 0.0 <= cfg.model.drop_path < 1.0:
        raise ConfigError(f"config key 'model.drop_path' must be in [0, 1), got {cfg.model.drop_path}")
    if not 0.0 <= cfg.loss.label_smoothing < 1.0:
        raise ConfigError(f"config key 'loss.label_smoothing' must be in [0, 1), got {cfg.loss.label_smoothing}")
    if not 0.0 <= cfg.pseudo.threshold <= 1.0:
        raise ConfigError(f"config key 'pseudo.threshold' must be in [0, 1], got {cfg.pseudo.threshold}")
    if cfg.pseudo.weight <= 0:
        raise ConfigError(f"config key 'pseudo.weight' must be > 0, got {cfg.pseudo.weight}")


def check_values(cfg: Config) -> None:
    if isinstance(cfg.loss.class_weights, str) and cfg.loss.class_weights not in ("none", "balanced"):
        raise ConfigError(f"config key 'loss.class_weights' is {cfg.loss.class_weights!r}; "
                          f"use none, balanced or a list of numbers")
    if isinstance(cfg.aug.train, str) and cfg.aug.train != "preset":
        raise ConfigError(f"config key 'aug.train' is {cfg.aug.train!r}; use preset (the transforms of aug.preset) "
                          "or a list of albumentations transforms, e.g. [{name: HorizontalFlip, p: 0.5}]")
    if not cfg.tta.views:
        raise ConfigError("config key 'tta.views' must list at least one view, e.g. [identity]")
    if not cfg.data.target_cols:
        raise ConfigError("config key 'data.target_cols' must name at least one column")
    if cfg.problem in ("binary", "multiclass") and len(cfg.data.target_cols) != 1:
        raise ConfigError(f"config key 'data.target_cols' must name one column for {cfg.problem}, "
                          f"got {cfg.data.target_cols}")
    if len(set(cfg.train.seeds)) != len(cfg.train.seeds):
        raise ConfigError(f"config key 'train.seeds' repeats a seed: {cfg.train.seeds}; list each seed once")
    if not cfg.exp or "/" in cfg.exp or cfg.exp.startswith("."):
        raise ConfigError(f"config key 'exp' {cfg.exp!r} is not a valid folder name")
    check_text_model(cfg)


def check_text_model(cfg: Config) -> None:
    """The text model's tricks (modality/text_model.py, modality/lora.py): ranges and combinations."""
    m, lora = cfg.model, cfg.lora
    for key, value, low in (("model.pool_layers", m.pool_layers, 1), ("model.msd", m.msd, 0),
                            ("model.reinit_layers", m.reinit_layers, 0), ("lora.r", lora.r, 1),
                            ("lora.alpha", lora.alpha, 1)):
        if value < low:
            raise ConfigError(f"config key '{key}' must be >= {low}, got {value}")
    if not 0.0 <= lora.dropout < 1.0:
        raise ConfigError(f"config key 'lora.dropout' must be in [0, 1), got {lora.dropout}")
    if lora.enabled and not m.pretrained:
        raise ConfigError("config key 'lora.enabled': adapters on random weights learn nothing useful; set "
                          "model.pretrained=true or lora.enabled=false")
    if lora.enabled and m.reinit_layers:
        raise ConfigError("config key 'model.reinit_layers': with lora.enabled the re-initialised layers would stay "
                          "frozen at random values; set model.reinit_layers=0 or lora.enabled=false")


def validate(cfg: Config, explicit: set[str]) -> None:
    """explicit: the keys a file or the command line set (the other modality's keys are refused there only)."""
    flat = flatten(to_dict(cfg))
    check_choices(cfg, flat, explicit)
    check_ranges(cfg, flat)
    check_values(cfg)


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
    resolve(cfg)  # `auto` values become numbers: the saved config.yaml holds what the run used
    validate(cfg, explicit)
    return cfg


def dump(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)

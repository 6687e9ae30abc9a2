"""The typed config schema: load YAML, merge, apply dotted overrides, validate.

Resolution order (later wins):
    dataclass defaults < configs/default.yaml < configs/<exp>.yaml < key=value overrides

    python -m <package>.config [--exp NAME] [key=value ...]   # print the resolved config

An unknown key or a value of the wrong type is a ConfigError that names the key.
"""
from __future__ import annotations

import dataclasses
import sys
import types
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
    compile: bool = False                   # torch.compile the model
    channels_last: bool = True              # image: channels_last memory format on GPU
    freeze_layers: int = 0                  # freeze the first N backbone layers for the whole run
    freeze_epochs: int = 0                  # freeze the whole backbone for the first N epochs
    num_workers: int = 2
    device: str = "auto"                    # auto | cpu | cuda
    progress: bool = True                   # tqdm bars
    full_fit: bool = False                  # train on all rows for the CV run's epochs -> outputs/<exp>_full/
    seeds: list[int] = field(default_factory=list)   # full_fit: one model per seed; [] = [seed]
    deterministic: bool = False             # GPU: deterministic algorithms (slower); CPU runs are already exact
    max_skipped_steps: int = 20             # fp16: consecutive steps skipped by the loss scaler before stopping


@dataclass
class OptimConfig:
    name: str = "adamw"                     # adamw | sgd
    momentum: float = 0.9                   # sgd
    head_lr: float = 0.0                    # lr of the new head; 0 = train.lr
    llrd: float = 1.0                       # layer-wise lr decay per layer from the top; 1.0 = off
    schedule: str = "cosine"                # cosine | linear (after warmup, down to train.min_lr)


@dataclass
class LossConfig:
    name: str = "auto"                      # auto | ce | focal | bce | mse | smooth_l1
    label_smoothing: float = 0.0            # ce / focal / bce
    class_weights: str | list[float] = "none"   # none | balanced | [w0, w1, ...]
    focal_gamma: float = 2.0


@dataclass
class AdvConfig:
    method: str = "none"                    # none | fgm | pgd | awp
    eps: float = 0.0                        # 0 = the method's default (fgm/pgd 1.0, awp 1e-3)
    alpha: float = 0.3                      # pgd step size
    steps: int = 3                          # pgd steps
    lr: float = 1e-4                        # awp adv_lr
    start_epoch: int = 2                    # first epoch (1-based) with the attack
    param_pattern: str = ""                 # regex of perturbed parameter names; "" = the method's default


@dataclass
class EmaConfig:
    enabled: bool = False
    decay: float = 0.999
    warmup: bool = True                     # ramp the decay up over the first steps
    every: int = 1                          # update every N optimiser steps


@dataclass
class SwaConfig:
    enabled: bool = False
    start_epoch: int = 0                    # first averaged epoch (1-based); 0 = the last quarter
    lr: float = 0.0                         # constant lr during SWA epochs; 0 = keep the schedule


@dataclass
class RDropConfig:
    alpha: float = 0.0                      # weight of the consistency term; 0 = off


@dataclass
class AugConfig:
    # image: albumentations transforms applied after the resize, e.g. {name: HorizontalFlip, p: 0.5}
    train: list[dict] = field(default_factory=lambda: [{"name": "HorizontalFlip", "p": 0.5}])
    mixup_alpha: float = 0.0                # image: timm Mixup; 0 = off
    cutmix_alpha: float = 0.0               # image: CutMix; 0 = off
    mix_prob: float = 1.0                   # probability a batch is mixed
    mix_switch_prob: float = 0.5            # probability of CutMix instead of Mixup when both are on


@dataclass
class TtaConfig:
    # image: identity hflip vflip transpose rot90 rot180 rot270 scale<f> (e.g. scale1.15);
    # text: head tail head_tail (differ only for texts longer than data.max_len)
    views: list[str] = field(default_factory=lambda: ["identity"])
    reduce: str = "mean"                    # mean | gmean (of probabilities / values, never logits)
    oof: bool = False                       # predict: also redo the OOF predictions (and CV) with the views
    batched: bool = True                    # image: same-size views in one forward


@dataclass
class InferConfig:
    sort_by_length: bool = True             # text: inference batches of similar length (order restored)
    pad_to_max_len: bool = False            # text: pad every batch to data.max_len (for comparison only)


@dataclass
class PseudoConfig:
    base: str = ""                          # set by make pseudo: the experiment that labels
    source: str = ""                        # "" = test.csv; or a CSV of unlabelled rows (relative to data.dir)
    threshold: float = 0.9                  # hard labels: keep rows whose top probability >= this
    soft: bool = False                      # true: probabilities as soft targets, no threshold
    weight: float = 1.0                     # loss weight of a pseudo row (real rows: 1)
    per_fold: bool = True                   # fold k learns from base fold k's predictions (no leak)


@dataclass
class EnsembleConfig:
    members: list[str] = field(default_factory=list)   # set by make ensemble EXPS="a b c"
    method: str = "weighted"                # mean | weighted | hill | rank | gmean | stack
    hill_iters: int = 100                   # hill: Caruana steps (members added with replacement)
    meta_model: str = ""                    # stack: import path of a sklearn estimator; "" = logistic / ridge
    meta_params: dict = field(default_factory=dict)     # stack: keyword arguments of the meta-model


@dataclass
class PretrainConfig:
    # text: masked-language-model post-pretraining of model.name on the competition's texts (make pretrain)
    extra_files: list[str] = field(default_factory=list)  # more corpus files (.txt lines or .csv with data.text_cols)
    mlm_probability: float = 0.15
    whole_word: bool = False                # mask whole words (all their sub-tokens) instead of tokens
    group_texts: bool = True                # concatenate texts and cut into max_len blocks; false = one text each
    max_len: int = 256
    epochs: int = 1
    max_steps: int = 0                      # > 0 overrides epochs
    batch_size: int = 16
    lr: float = 5.0e-5
    warmup: float = 0.06
    weight_decay: float = 0.01
    valid_fraction: float = 0.05            # held-out texts for the before / after perplexity


@dataclass
class SubmitConfig:
    format: str = "auto"                    # auto | label | proba
    threshold: float = 0.5                  # multilabel: probability -> 0/1 for label format


@dataclass
class EdaConfig:
    max_rows: int = 20000                   # make eda: rows read per file (a random sample beyond); 0 = all


@dataclass
class SanityConfig:
    # make sanity: overfit a few rows with every regulariser off; the loss must collapse
    rows: int = 32                          # training rows (stratified for classification)
    steps: int = 100                        # optimiser steps on them
    lr: float = 0.0                         # constant lr; 0 = train.lr
    max_final_loss_ratio: float = 0.1       # pass: final loss <= ratio x initial loss
    samples: int = 16                       # augmented images / decoded texts saved for a look


@dataclass
class TrackConfig:
    # optional experiment trackers, none required: mlflow | tensorboard | wandb
    backends: list[str] = field(default_factory=list)
    dir: str = ""                           # mlflow file store / tensorboard logs; "" = outputs/tracking
    project: str = ""                       # mlflow experiment / wandb project; "" = the project folder's name


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
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    adv: AdvConfig = field(default_factory=AdvConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    swa: SwaConfig = field(default_factory=SwaConfig)
    rdrop: RDropConfig = field(default_factory=RDropConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    tta: TtaConfig = field(default_factory=TtaConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    submit: SubmitConfig = field(default_factory=SubmitConfig)
    eda: EdaConfig = field(default_factory=EdaConfig)
    sanity: SanityConfig = field(default_factory=SanityConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)


CHOICES = {
    "task": ("image", "text"),
    "problem": ("binary", "multiclass", "multilabel", "regression"),
    "model.pooling": ("mean", "cls"),
    "train.precision": ("fp32", "bf16", "fp16"),
    "train.device": ("auto", "cpu", "cuda"),
    "submit.format": ("auto", "label", "proba"),
    "optim.name": ("adamw", "sgd"),
    "optim.schedule": ("cosine", "linear"),
    "loss.name": ("auto", "ce", "focal", "bce", "mse", "smooth_l1"),
    "adv.method": ("none", "fgm", "pgd", "awp"),
    "tta.reduce": ("mean", "gmean"),
    "ensemble.method": ("mean", "weighted", "hill", "rank", "gmean", "stack"),
}
TRACKERS = ("mlflow", "tensorboard", "wandb")
# Keys that only mean something for one modality; setting them in the other is a mistake.
TASK_ONLY = {
    "data.image_col": "image", "data.image_size": "image", "aug.train": "image", "model.weights": "image",
    "aug.mixup_alpha": "image", "aug.cutmix_alpha": "image", "aug.mix_prob": "image", "aug.mix_switch_prob": "image",
    "train.channels_last": "image",
    "tta.batched": "image",
    "data.text_cols": "text", "data.max_len": "text", "model.pooling": "text",
    "infer.sort_by_length": "text", "infer.pad_to_max_len": "text",
    **{f"pretrain.{k}": "text" for k in ("extra_files", "mlm_probability", "whole_word", "group_texts", "max_len",
                                        "epochs", "max_steps", "batch_size", "lr", "warmup", "weight_decay",
                                        "valid_fraction")},
}


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


def validate(cfg: Config, explicit: set[str]) -> None:
    flat = flatten(to_dict(cfg))
    for key, allowed in CHOICES.items():
        if flat[key] not in allowed:
            raise ConfigError(f"config key '{key}' is {flat[key]!r}; choose one of {', '.join(allowed)}")
    for key in sorted(explicit):
        if key in TASK_ONLY and TASK_ONLY[key] != cfg.task:
            raise ConfigError(f"config key '{key}' applies to {TASK_ONLY[key]} projects; this one is {cfg.task}")
    positive = ["train.epochs", "train.batch_size", "train.accum_steps", "data.image_size", "data.max_len",
                "adv.steps", "ema.every", "ensemble.hill_iters"]
    for key in positive:
        if flat[key] < 1:
            raise ConfigError(f"config key '{key}' must be >= 1, got {flat[key]}")
    if cfg.train.n_folds < 2:
        raise ConfigError(f"config key 'train.n_folds' must be >= 2, got {cfg.train.n_folds}")
    bad = [f for f in cfg.train.folds if not 0 <= f < cfg.train.n_folds]
    if bad:
        raise ConfigError(f"config key 'train.folds' has {bad}, outside 0..{cfg.train.n_folds - 1}")
    if not 0 <= cfg.swa.start_epoch <= cfg.train.epochs:
        raise ConfigError(f"config key 'swa.start_epoch' must be in 0..train.epochs={cfg.train.epochs}, "
                          f"got {cfg.swa.start_epoch}")
    if not 0.0 < cfg.ema.decay < 1.0:
        raise ConfigError(f"config key 'ema.decay' must be in (0, 1), got {cfg.ema.decay}")
    if not 0.0 <= cfg.loss.label_smoothing < 1.0:
        raise ConfigError(f"config key 'loss.label_smoothing' must be in [0, 1), got {cfg.loss.label_smoothing}")
    if isinstance(cfg.loss.class_weights, str) and cfg.loss.class_weights not in ("none", "balanced"):
        raise ConfigError(f"config key 'loss.class_weights' is {cfg.loss.class_weights!r}; "
                          f"use none, balanced or a list of numbers")
    if not 0.0 <= cfg.pseudo.threshold <= 1.0:
        raise ConfigError(f"config key 'pseudo.threshold' must be in [0, 1], got {cfg.pseudo.threshold}")
    if cfg.pseudo.weight <= 0:
        raise ConfigError(f"config key 'pseudo.weight' must be > 0, got {cfg.pseudo.weight}")
    unknown = [b for b in cfg.track.backends if b not in TRACKERS]
    if unknown:
        raise ConfigError(f"config key 'track.backends' has {unknown}; choose from {', '.join(TRACKERS)}")
    if cfg.train.max_skipped_steps < 1:
        raise ConfigError(f"config key 'train.max_skipped_steps' must be >= 1, got {cfg.train.max_skipped_steps}")
    if not cfg.tta.views:
        raise ConfigError("config key 'tta.views' must list at least one view, e.g. [identity]")
    if not cfg.data.target_cols:
        raise ConfigError("config key 'data.target_cols' must name at least one column")
    if cfg.problem in ("binary", "multiclass") and len(cfg.data.target_cols) != 1:
        raise ConfigError(f"config key 'data.target_cols' must name one column for {cfg.problem}, "
                          f"got {cfg.data.target_cols}")
    if not cfg.exp or "/" in cfg.exp or cfg.exp.startswith("."):
        raise ConfigError(f"config key 'exp' {cfg.exp!r} is not a valid folder name")
    for key in ("sanity.rows", "sanity.steps"):
        if flat[key] < 1:
            raise ConfigError(f"config key '{key}' must be >= 1, got {flat[key]}")
    for key in ("sanity.lr", "sanity.samples", "eda.max_rows"):
        if flat[key] < 0:
            raise ConfigError(f"config key '{key}' must be >= 0, got {flat[key]}")
    if not 0.0 < cfg.sanity.max_final_loss_ratio < 1.0:
        raise ConfigError(f"config key 'sanity.max_final_loss_ratio' must be in (0, 1), "
                          f"got {cfg.sanity.max_final_loss_ratio}")
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
    from .cli import run_stage
    run_stage(lambda exp, overrides: sys.stdout.write(dump(load(exp, overrides))), argv)


if __name__ == "__main__":
    main()

"""The typed config schema: every key, its type and its default, and the keys with a fixed set of values.

configs/default.yaml lists the same keys with the same defaults and a comment each (a test compares them
key by key). The defaults that depend on how the project was baked (task, problem, metric, columns, sizes,
backbone) come from baked.json beside this file, written by cookiecutter; the default metric of a problem
from metric_table.py. Loading, overrides and validation: config.py beside this file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .metric_table import DEFAULT_METRIC

BAKED = json.loads((Path(__file__).with_name("baked.json")).read_text())
TASK = BAKED["task"]
AUTO_BACKBONE = {"image": "convnext_tiny.fb_in22k_ft_in1k", "text": "microsoft/deberta-v3-base"}


def _baked_list(key: str):
    return field(default_factory=lambda: list(BAKED[key]))


def image_hw(size: int | list[int]) -> tuple[int, int]:
    """data.image_size as (height, width): a side is a square, [h, w] a non-square resize."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


@dataclass
class DataConfig:
    dir: str = "data"                       # competition folder (Kaggle layout)
    train_file: str = "train.csv"
    test_file: str = "test.csv"
    sample_submission_file: str = "sample_submission.csv"
    id_col: str = BAKED["id_col"]
    target_cols: list[str] = _baked_list("target_cols")
    group_col: str = ""                     # '' = no grouping
    image_col: str = BAKED["image_col"]     # image: path relative to data.dir
    image_size: int | list[int] = BAKED["image_size"]   # image: square side after resize, or [height, width]
    cache: str = "none"                     # image: none | ram | disk (decode + resize once; modality/image_cache.py)
    text_cols: list[str] = _baked_list("text_cols")   # text: joined with [SEP]
    max_len: int = BAKED["max_len"]         # text: tokens per example
    fold_seed: int = 42                     # folds depend on this, not on `seed`
    check_inputs: bool = True               # decode every image / inspect every text up front


@dataclass
class ModelConfig:
    # timm name, or HF hub id / local directory
    name: str = AUTO_BACKBONE[TASK] if BAKED["backbone"] == "auto" else BAKED["backbone"]
    pretrained: bool = True
    weights: str = ""                       # image: local checkpoint file (offline notebooks)
    # text: auto (decoders last_token, encoders mean) | mean | cls | max | attention | last_token | weighted_layers
    pooling: str = "auto"
    pool_layers: int = 4                    # text: weighted_layers mixes the last N hidden layers
    drop_rate: float = 0.1                  # dropout before the head
    msd: int = 0                            # text: multi-sample dropout, K masks on the pooled features (0 = off)
    reinit_layers: int = 0                  # text: re-initialise the top N pretrained layers (0 = off)

    drop_path: float = 0.0                  # image: stochastic depth rate (timm drop_path_rate); 0 = off

@dataclass
class LoraConfig:
    enabled: bool = False                   # text: LoRA adapters (peft) on a frozen backbone; head, pooling in full
    r: int = 8                              # adapter rank
    alpha: int = 16                         # scaling numerator (the update is scaled by alpha / r)
    dropout: float = 0.05                   # dropout on the adapters' input
    target_modules: list[str] = field(default_factory=list)   # module names; [] = the family's attention projections
    merge: bool = False                     # inference: merge the adapters into the base weights


@dataclass
class TrainConfig:
    epochs: int = 5
    eval_every: int = 0                     # evaluate every N optimiser steps (inside epochs too); 0 = once per epoch
    patience: int = 0                       # stop a fold after N evaluations without a better score; 0 = off
    save_every: int = 1                     # a resume point (last.pt) every N evaluations; a crash redoes up to N
    n_folds: int = BAKED["n_folds"]
    folds: list[int] = field(default_factory=list)   # folds to run; [] = all
    batch_size: int = 32 if TASK == "image" else 16
    eval_batch_size: int = 0                # 0 = 2 x batch_size
    lr: float | str = "auto"                # auto: by modality, model.pretrained and the model (core/auto.py)
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
    seeds: list[int] = field(default_factory=list)   # k-fold: each fold once per seed; full_fit: one model per seed; [] = [seed]
    deterministic: bool = False             # GPU: deterministic algorithms (slower); CPU runs are already exact
    max_skipped_steps: int = 20             # fp16: consecutive steps skipped by the loss scaler before stopping
    sync_bn: bool = True                    # NPROC>1 on GPUs: BatchNorm statistics over the global batch
    grad_checkpointing: bool = False        # recompute activations in backward: less memory, ~30% slower
    group_by_length: bool = False           # text: training batches of similar token length (less padding)


@dataclass
class OptimConfig:
    name: str = "adamw"                     # adamw | sgd
    momentum: float = 0.9                   # sgd
    head_lr: float = 0.0                    # lr of the new head; 0 = train.lr
    llrd: float = 1.0                       # layer-wise lr decay per layer from the top; 1.0 = off
    schedule: str = "cosine"                # cosine | linear (after warmup, to train.min_lr) | constant | hf_linear


@dataclass
class LossConfig:
    name: str = "auto"                      # auto | ce | focal | bce | mse | smooth_l1
    label_smoothing: float | str = "auto"   # ce / focal / bce; auto: 0.1 for hard-label metrics, else 0
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
    # image: "preset" = the transforms of aug.preset; or a list of albumentations transforms applied after
    # the resize, e.g. [{name: HorizontalFlip, p: 0.5}] ([] = none). modality/augment.py lists the presets.
    train: str | list[dict] = "preset"
    preset: str = "light"                   # image: none | light (no flips: safe for any data) | medium | heavy
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
class PostConfig:
    method: str = "none"                   # none | threshold | class_thresholds | rounder | prior (fitted out of fold)


@dataclass
class SubmitConfig:
    format: str = "auto"                    # auto | label | proba
    threshold: float = 0.5                  # multilabel: probability -> 0/1 for label format


@dataclass
class PackageConfig:
    # make package EXP=<exp> [NAME=<bundle>]: an offline Kaggle bundle -> packages/<bundle>/
    owner: str = ""                         # Kaggle user of the dataset / kernel ids; "" = $KAGGLE_USERNAME
    competition: str = ""                   # competition slug (kernel sources, /kaggle/input/<it>); "" = data.dir's name
    extra_wheels: list[str] = field(default_factory=list)  # pip names fetched now, or local .whl files
    half: bool = False                      # fold checkpoints cast to fp16 (half the size; predicts in fp32)
    test_rows: int = 0                      # rows of the hidden test set for the time projection; 0 = test.csv's
    time_limit: float = 9.0                 # hours the notebook may run; over the projection = refused; 0 = off
    sample_rows: int = 64                   # test rows timed per model and view for the projection
    gpu: bool = True                        # kernel-metadata.json enable_gpu
    licence: str = "CC0-1.0"                # dataset-metadata.json licence name


@dataclass
class ReportConfig:
    # make report EXP=<exp>: outputs/<exp>/report.html (reporting/); train and ensemble refresh it at their end
    auto: bool = True                       # make train / make ensemble write the report when they finish
    solution: str = ""                      # answer key (id + target columns) to score test_preds.csv; "" = none
    worst: int = 12                         # worst OOF examples shown (highest loss)
    text_chars: int = 300                   # text: characters of each shown example
    thumb: int = 96                         # image: side of the shown examples' thumbnails (pixels)


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
class TuneConfig:
    # make tune EXP=<base> NAME=<study>: Optuna search -> outputs/<study>/ (configs/<study>.tune.yaml: a tune: section)
    space: dict = field(default_factory=dict)   # dotted key -> {low, high, log} | {low, high, step} | {choices: [...]}
    trials: int = 20                        # the study's finished trials (complete + pruned); make tune again runs the rest
    folds: list[int] = field(default_factory=list)   # folds each trial trains; [] = the base's train.folds (all)
    n_jobs: int = 1                         # processes on the same study.db (one per GPU)
    sampler: str = "tpe"                    # tpe | random
    seed: int = 0                           # sampler seed (process i of n_jobs: seed + i)
    prune: bool = True                      # median pruner on per-fold scores
    startup_trials: int = 5                 # trials finished before the pruner stops any (and TPE samples at random)
    include_base: bool = True               # a new study's first trial runs the base's own values of the searched keys


@dataclass
class PathsConfig:
    outputs: str = "outputs"
    submissions: str = "submissions"
    folds: str = "folds"
    packages: str = "packages"              # make package: packages/<bundle>/
    cache: str = "cache"                    # image data.cache=disk: decoded-image files


@dataclass
class Config:
    task: str = TASK                        # image | text (fixed when the project was baked)
    problem: str = BAKED["problem"]         # binary | multiclass | multilabel | regression
    exp: str = "default"                    # experiment name = outputs/<exp>/
    seed: int = 42
    metric: str = DEFAULT_METRIC[BAKED["problem"]] if BAKED["metric"] == "auto" else BAKED["metric"]
    overwrite: bool = False                 # replace a finished outputs/<exp>/
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
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
    post: PostConfig = field(default_factory=PostConfig)
    package: PackageConfig = field(default_factory=PackageConfig)
    eda: EdaConfig = field(default_factory=EdaConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    sanity: SanityConfig = field(default_factory=SanityConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)


CHOICES = {
    "task": ("image", "text"),
    "problem": ("binary", "multiclass", "multilabel", "regression"),
    "model.pooling": ("auto", "mean", "cls", "max", "attention", "last_token", "weighted_layers"),
    "data.cache": ("none", "ram", "disk"),
    "train.precision": ("fp32", "bf16", "fp16"),
    "train.device": ("auto", "cpu", "cuda"),
    "submit.format": ("auto", "label", "proba"),
    "optim.name": ("adamw", "sgd"),
    "optim.schedule": ("cosine", "linear", "constant", "hf_linear"),
    "loss.name": ("auto", "ce", "focal", "bce", "mse", "smooth_l1"),
    "adv.method": ("none", "fgm", "pgd", "awp"),
    "tta.reduce": ("mean", "gmean"),
    "aug.preset": ("none", "light", "medium", "heavy"),
    "ensemble.method": ("mean", "weighted", "hill", "rank", "gmean", "stack"),
    "post.method": ("none", "threshold", "class_thresholds", "rounder", "prior"),
    "tune.sampler": ("tpe", "random"),
}
TRACKERS = ("mlflow", "tensorboard", "wandb")
# Keys that only mean something for one modality; setting them in the other is a mistake.
TASK_ONLY = {
    "data.image_col": "image", "data.image_size": "image", "data.cache": "image", "aug.train": "image", "aug.preset": "image",
    "model.weights": "image", "model.drop_path": "image",
    "aug.mixup_alpha": "image", "aug.cutmix_alpha": "image", "aug.mix_prob": "image", "aug.mix_switch_prob": "image",
    "train.channels_last": "image",
    "tta.batched": "image",
    "data.text_cols": "text", "data.max_len": "text", "model.pooling": "text",
    **{f"model.{k}": "text" for k in ("pool_layers", "msd", "reinit_layers")},
    **{f"lora.{k}": "text" for k in ("enabled", "r", "alpha", "dropout", "target_modules", "merge")},
    "infer.sort_by_length": "text", "infer.pad_to_max_len": "text", "train.group_by_length": "text",
    **{f"pretrain.{k}": "text" for k in ("extra_files", "mlm_probability", "whole_word", "group_texts", "max_len",
                                        "epochs", "max_steps", "batch_size", "lr", "warmup", "weight_decay",
                                        "valid_fraction")},
}

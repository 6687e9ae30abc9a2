"""The accelerator and determinism: the one place that turns train.device / precision / accum_steps /
deterministic into an Accelerate `Accelerator`, for every stage that trains or predicts.

Multi-GPU (and CPU DDP with gloo) comes from torchrun (make train NPROC=n), which Accelerate reads from
the environment; nothing here starts processes.
"""
from __future__ import annotations

import os

import torch
from accelerate import Accelerator

from ..core.errors import ConfigError
from ..core.schema import Config


def configure_determinism(on: bool) -> None:
    """train.deterministic: deterministic GPU kernels (cuBLAS workspace, cuDNN without autotuning), slower.
    CPU runs with a fixed seed are already bit-exact; an op with no deterministic GPU kernel then raises."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False


def make_accelerator(cfg: Config) -> Accelerator:
    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'train.device' is cuda but no GPU is visible; use auto or cpu")
    on_cpu = cfg.train.device == "cpu" or not torch.cuda.is_available()
    if cfg.train.precision == "fp16" and on_cpu:
        raise ConfigError("config key 'train.precision' fp16 needs a GPU; use bf16 or fp32 on CPU")
    precision = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[cfg.train.precision]
    configure_determinism(cfg.train.deterministic)
    # cpu=True also when no GPU is visible: only then does Accelerate run torchrun's ranks as gloo DDP
    return Accelerator(cpu=on_cpu, mixed_precision=precision,
                       gradient_accumulation_steps=cfg.train.accum_steps)

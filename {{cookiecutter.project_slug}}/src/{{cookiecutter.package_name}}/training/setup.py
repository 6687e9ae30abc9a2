"""The accelerator and determinism: the one place that turns train.device / precision / accum_steps /
deterministic into an Accelerate `Accelerator`, for every stage that trains or predicts.

Multi-GPU (and CPU DDP with gloo) comes from torchrun (make train NPROC=n), which Accelerate reads from
the environment; nothing here starts processes. train.batch_size is the global batch: Accelerate splits
each batch across the processes (split_batches), so n processes see the same batches, in the same order,
and make the same number of optimiser steps as one process; the schedule steps once per optimiser step.
"""
from __future__ import annotations

import os

import logging

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration

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


def make_accelerator(cfg: Config, fresh: bool = False) -> Accelerator:
    """fresh: forget an earlier Accelerator of this process (Accelerate keeps one state per process), for a
    process that predicts several runs with their own settings (a code-competition bundle's ensemble)."""
    if fresh:
        from accelerate.state import AcceleratorState, GradientState
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'train.device' is cuda but no GPU is visible; use auto or cpu")
    on_cpu = cfg.train.device == "cpu" or not torch.cuda.is_available()
    if cfg.train.precision == "fp16" and on_cpu:
        raise ConfigError("config key 'train.precision' fp16 needs a GPU; use bf16 or fp32 on CPU")
    precision = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[cfg.train.precision]
    configure_determinism(cfg.train.deterministic)
    # cpu=True also when no GPU is visible: only then does Accelerate run torchrun's ranks as gloo DDP
    return Accelerator(cpu=on_cpu, mixed_precision=precision, gradient_accumulation_steps=cfg.train.accum_steps,
                       dataloader_config=DataLoaderConfiguration(split_batches=True))


def check_batch_split(cfg: Config, processes: int) -> None:
    """Before any work: the global batches (training and evaluation) divide evenly across the processes."""
    eval_bs = cfg.train.eval_batch_size or 2 * cfg.train.batch_size
    for key, bs in (("train.batch_size", cfg.train.batch_size), ("train.eval_batch_size", eval_bs)):
        if bs % processes:
            raise ConfigError(f"config key '{key}' is {bs}, the global batch, which {processes} processes (NPROC) "
                              f"cannot share evenly; use a multiple of {processes}, e.g. "
                              f"{max(processes, bs - bs % processes)}")


def processes(cfg: Config, accelerator: Accelerator) -> dict:
    """What cv.json and run.json record of the run's processes: their count and each one's share of the batch."""
    return {"processes": accelerator.num_processes,
            "batch_size_per_process": cfg.train.batch_size // accelerator.num_processes}


def sync_batchnorm(cfg: Config, model: torch.nn.Module, processes: int, device: torch.device) -> torch.nn.Module:
    """train.sync_bn: with several processes, BatchNorm statistics over the global batch (torch's
    SyncBatchNorm) instead of each process's slice. Helps small per-process batches; costs one all-reduce
    per BatchNorm layer per step. torch supports it on GPUs only: on CPU processes the statistics stay per
    process (said once in the log)."""
    if not cfg.train.sync_bn or processes < 2:
        return model
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    if device.type != "cuda":
        logging.getLogger("run").warning("train.sync_bn: SyncBatchNorm needs GPUs; on CPU processes each keeps its "
                                         "own BatchNorm statistics")
        return model
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)

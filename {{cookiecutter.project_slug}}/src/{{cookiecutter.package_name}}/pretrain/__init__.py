"""Masked-language-model post-pretraining of model.name on the competition's own texts (text projects).

    make pretrain EXP=mlm ARGS="pretrain.epochs=2"            # NPROC=n: DDP through torchrun
    make pretrain EXP=mlm RESUME=1                             # continue from outputs/mlm/pretrain_state.pt
    make train EXP=exp001 ARGS="model.name=outputs/mlm/model"  # fine-tune from the result
    python -m <package> pretrain --exp mlm [--resume] [key=value ...]

Corpus: data.text_cols of train.csv and test.csv (joined with the tokenizer's separator, as training does)
plus pretrain.extra_files (in data.dir: .txt = one text per line, .csv = data.text_cols), stripped, with
empty texts and exact duplicates dropped. A seeded pretrain.valid_fraction of the texts is held out; its
masks are drawn once, so the masked-LM loss / perplexity before and after training compare like with like.
Training texts are concatenated and cut into pretrain.max_len blocks (pretrain.group_texts) or used one per
example; transformers' DataCollatorForLanguageModeling masks them (pretrain.whole_word: whole words).
train.precision, train.accum_steps, train.max_grad_norm, train.compile and seed apply as in training; the
lr warms up over pretrain.warmup of the steps, then decays linearly to 0 (as in BERT / run_mlm.py).
It trains through make train's own code: accelerator (training.setup), optimiser groups and schedule
(training.optim, schedule hf_linear), loop (training.fit / training.loop) and checkpoint format
(training.checkpoints). What is MLM-specific lives here: the corpus and masks (corpus.py), the model,
its held-out perplexity and the saved model/ (model.py).

Writes outputs/<exp>/: config.yaml, train.log, pretrain.json {loss_before, loss_after, perplexity_before,
perplexity_after, n_texts, n_valid_texts, steps, ...}, model/ (the full masked-LM model + tokenizer in
Hugging Face format: AutoModel loads its encoder and drops the MLM head) and pretrain_state.pt (model,
optimiser, scheduler, scaler, RNG, step), rewritten at every epoch end, every SAVE_MINUTES and at the end;
it is ~3x the model's size: delete it once you will not extend the run. --resume continues from it: batch
order and masks are functions of (seed, epoch, batch), so on one process a resumed run ends with the same
weights as an uninterrupted one; a larger pretrain.max_steps / epochs extends a finished run.

An MLM head missing from the checkpoint (a sentence-embedding model, a bare AutoModel save) starts
random: perplexity_before is then near the vocabulary size and only perplexity_after means much.
DeBERTa-v3 was pretrained with replaced-token detection, not MLM: its MLM head is random too.
"""
from __future__ import annotations

import copy
import math
import sys
import time

import torch
from accelerate.utils import set_seed

from ..core.atomic import atomic_path, write_json, write_text
from ..core.lock import hold
from ..core.cli import run_stage
from ..core.config import dump, load
from ..core.errors import ConfigError, DataError
from ..core.records import finish_record, note_resume, start_record
from ..core.rundir import RunPaths, create_run_dir, get_logger, refuse_existing
from ..core.schema import Config, PretrainConfig
from ..data.files import data_path
from ..training.checkpoints import (capture_rng, config_changes, load_training_state, read_state, restore_rng,
                                    training_state)
from ..training.fit import Fit, fit_epoch
from ..training.loop import Tricks
from ..training.optim import build_optimizer, build_scheduler
from ..modality.text import separator
from ..training.setup import make_accelerator
from .corpus import EpochBatches, Masker, make_examples, read_corpus, split_texts
from .model import MaskedLMLoss, evaluate, load_model, load_tokenizer, passthrough, perplexity, save_model

SAVE_MINUTES = 30  # a checkpoint at least this often, so a killed notebook loses at most this much
# A resumed run must see the same texts, split, blocks and masks; only its length may change.
SAME_ON_RESUME = ["seed", "model.name", "data.dir", "data.train_file", "data.test_file", "data.text_cols",
                  "train.accum_steps",
                  *[f"pretrain.{k}" for k in vars(PretrainConfig()) if k not in ("epochs", "max_steps")]]


def check_config(cfg: Config) -> None:
    p = cfg.pretrain
    if cfg.task != "text":
        raise ConfigError("make pretrain is for text projects only (masked-LM post-pretraining)")
    for key, ok, need in [("mlm_probability", 0 < p.mlm_probability < 1, "in (0, 1)"),
                          ("valid_fraction", 0 < p.valid_fraction < 1, "in (0, 1)"),
                          ("max_len", p.max_len >= 8, ">= 8"), ("epochs", p.epochs >= 1, ">= 1"),
                          ("max_steps", p.max_steps >= 0, ">= 0 (0 = use pretrain.epochs)"),
                          ("batch_size", p.batch_size >= 1, ">= 1"), ("lr", p.lr > 0, "> 0"),
                          ("warmup", 0 <= p.warmup < 1, "in [0, 1)"), ("weight_decay", p.weight_decay >= 0, ">= 0")]:
        if not ok:
            raise ConfigError(f"config key 'pretrain.{key}' must be {need}, got {getattr(p, key)}")


def check_resumable(cfg: Config, paths: RunPaths) -> None:
    """--resume: the state file exists and nothing that shapes the texts, blocks or masks changed."""
    if not paths.pretrain_state.is_file():
        raise ConfigError(f"--resume: no checkpoint at {paths.pretrain_state}; start it without RESUME=1")
    for key, old, new in config_changes(paths.config, cfg, lambda k: k in SAME_ON_RESUME)[:1]:
        raise ConfigError(f"config key '{key}' is {new!r} but the run being resumed used {old!r}; "
                          f"resume with the same value, or start a new EXP")


def mlm_config(cfg: Config) -> Config:
    """The training keys as make pretrain uses them: pretrain.lr / weight_decay / warmup, transformers'
    linear schedule, no head lr, no layer decay, no freezing (the rest of train.* applies as it is)."""
    m = copy.deepcopy(cfg)
    m.train.lr, m.train.weight_decay, m.train.warmup = cfg.pretrain.lr, cfg.pretrain.weight_decay, cfg.pretrain.warmup
    m.optim.name, m.optim.schedule, m.optim.head_lr, m.optim.llrd = "adamw", "hf_linear", 0.0, 1.0
    m.train.freeze_layers, m.train.freeze_epochs = 0, 0
    return m


def prepare_corpus(cfg: Config, tokenizer, world: int) -> dict:
    """Texts, held-out split, examples and masked held-out batches; every check that can fail, up front."""
    p = cfg.pretrain
    texts = read_corpus(cfg, separator(tokenizer))
    train_texts, valid_texts = split_texts(texts, p.valid_fraction, cfg.seed)
    train_examples, valid_examples = make_examples(tokenizer, train_texts, p), make_examples(tokenizer, valid_texts, p)
    masker = Masker(tokenizer, p, cfg.seed)
    bs = p.batch_size
    valid_batches = [masker(valid_examples[i:i + bs], 1, i) for i in range(0, len(valid_examples), bs)]
    n_masked = sum(int((b["labels"] != -100).sum()) for b in valid_batches)
    if n_masked == 0:
        raise DataError(f"the {len(valid_texts)} held-out text(s) got no masked token; raise pretrain.valid_fraction")
    per_rank = len(train_examples) // world  # equal shares: no rank waits in DDP for a batch that never comes
    steps_per_epoch = math.ceil(per_rank / bs) // cfg.train.accum_steps
    if steps_per_epoch < 1:
        raise ConfigError(f"{len(train_examples)} training examples are fewer than one optimiser step needs "
                          f"(config keys 'pretrain.batch_size' {bs} x 'train.accum_steps' {cfg.train.accum_steps} "
                          f"x {world} processes); lower them or pretrain.max_len")
    return dict(texts=texts, valid_texts=valid_texts, train_examples=train_examples, masker=masker,
                valid_batches=valid_batches, n_masked=n_masked, per_rank=per_rank, steps_per_epoch=steps_per_epoch,
                total_steps=p.max_steps or p.epochs * steps_per_epoch)


def open_pretrain_run(cfg: Config, paths: RunPaths, accelerator, resume: bool, step: int) -> None:
    if accelerator.is_main_process:
        if not resume:
            create_run_dir(paths, cfg.overwrite)
        write_text(paths.config, dump(cfg))
        if resume and paths.run_record.is_file():
            note_resume(paths, argv=sys.argv, step=step)
        else:
            start_record(paths, data_files=[data_path(cfg, cfg.data.train_file), data_path(cfg, cfg.data.test_file)])
    accelerator.wait_for_everyone()


class Pretraining:
    """The run's counters and its resume point: the optimiser step, wall time, the loss before training."""

    def __init__(self, cfg: Config, fit: Fit, accelerator, paths: RunPaths, c: dict, log):
        self.cfg, self.fit, self.accelerator, self.paths, self.c, self.log = cfg, fit, accelerator, paths, c, log
        self.step, self.wall_before, self.loss_before, self.resumed_from = 0, 0.0, float("nan"), None
        self.t0 = self.last_save = time.time()
        self.running: list[float] = []
        self.log_every = max(1, c["total_steps"] // 10)

    def resume(self, state: dict) -> None:
        """From pretrain_state.pt: weights, optimiser, schedule (reshaped to a new total_steps), RNG."""
        load_training_state(state, self.fit, self.accelerator)
        sched = self.fit.scheduler
        for group, base, fn in zip(self.fit.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
            group["lr"] = base * fn(sched.last_epoch)  # the lr of the next step on the (maybe longer) schedule
        self.step, self.wall_before, self.loss_before = state["step"], state["wall_seconds"], state["loss_before"]
        self.resumed_from = self.step
        if self.accelerator.is_main_process:  # the dropout stream of the uninterrupted run
            restore_rng(state["rng"][0])
        else:
            set_seed(self.cfg.seed + self.step + self.accelerator.process_index)

    def checkpoint(self) -> None:
        """The resume point; the main process's RNG states only (a time-based save is no collective)."""
        if self.accelerator.is_main_process:
            state = {**training_state(self.fit, self.accelerator), "step": self.step, "rng": [capture_rng()],
                     "loss_before": self.loss_before, "wall_seconds": self.wall_before + time.time() - self.t0}
            with atomic_path(self.paths.pretrain_state) as tmp:
                torch.save(state, tmp)
        self.last_save = time.time()

    def on_batch(self, loss: torch.Tensor, stepped: bool, epoch: int) -> None:
        self.running.append(loss.item())
        if not stepped:
            return
        self.step += 1
        total = self.c["total_steps"]
        if self.step % self.log_every == 0 or self.step == total:
            mean = sum(self.running) / len(self.running)
            self.log.info(f"step {self.step}/{total}  epoch {epoch + 1}  loss {mean:.4f}"
                          f"  lr {self.fit.scheduler.get_last_lr()[0]:.2e}")
            self.running = []
        if self.step < total and time.time() - self.last_save > SAVE_MINUTES * 60:
            self.checkpoint()

    def train(self, mlm_cfg: Config) -> None:
        c, acc = self.c, self.accelerator
        spe, world, rank = c["steps_per_epoch"], acc.num_processes, acc.process_index
        micro_per_epoch = spe * self.cfg.train.accum_steps  # whole optimiser steps; the rest reshuffles
        for epoch in range(self.step // spe, math.ceil(c["total_steps"] / spe)):
            gen = torch.Generator().manual_seed(self.cfg.seed + epoch)
            order = torch.randperm(len(c["train_examples"]), generator=gen)
            mine = order[:c["per_rank"] * world][rank::world].tolist()
            start = (self.step - epoch * spe) * self.cfg.train.accum_steps
            self.fit.loader = EpochBatches(c["train_examples"], mine, c["masker"], self.cfg.pretrain.batch_size, epoch,
                                           start, micro_per_epoch, rank, acc.device)
            fit_epoch(mlm_cfg, self.fit, acc, epoch + 1, f"pretrain epoch {epoch + 1}",
                      max_steps=c["total_steps"] - self.step, on_batch=lambda loss, s: self.on_batch(loss, s, epoch))
            self.checkpoint()  # every epoch end, and the end of training (a later --resume may extend the run)
            if self.step >= c["total_steps"]:
                break


def run(exp: str | None, overrides: list[str], resume: bool = False) -> dict:
    cfg = load(exp, overrides)
    with hold(RunPaths(cfg).dir, "pretrain"):  # one writer per experiment
        return pretrain(cfg, resume)


def pretrain(cfg, resume: bool) -> dict:
    check_config(cfg)
    paths = RunPaths(cfg)
    accelerator = make_accelerator(cfg)
    if resume:
        check_resumable(cfg, paths)
    else:
        if paths.pretrain_state.is_file() and not paths.pretrain_json.is_file() and not cfg.overwrite:
            raise ConfigError(f"{paths.dir} holds an unfinished pretraining run: `make pretrain EXP={cfg.exp} "
                              f"RESUME=1` continues it, ARGS=\"overwrite=true\" replaces it")
        refuse_existing(paths, cfg.overwrite)  # before any work
    tokenizer = load_tokenizer(cfg)
    c = prepare_corpus(cfg, tokenizer, accelerator.num_processes)
    set_seed(cfg.seed)  # a random MLM head starts the same on every run
    raw, notes = load_model(cfg)
    state = read_state(paths.pretrain_state, accelerator) if resume else None
    open_pretrain_run(cfg, paths, accelerator, resume, state["step"] if state else 0)
    log = get_logger(paths.log if accelerator.is_main_process else None, accelerator.is_main_process)
    for note in notes:
        log.warning(f"warning: {note}")
    p, world = cfg.pretrain, accelerator.num_processes
    log.info(f"pretrain {cfg.exp}: {cfg.model.name}, {len(c['texts'])} texts ({len(c['valid_texts'])} held out), "
             f"{len(c['train_examples'])} training {'blocks' if p.group_texts else 'texts'} of <= {p.max_len} tokens, "
             f"{c['total_steps']} steps of {p.batch_size} x {cfg.train.accum_steps} x {world}, "
             f"device {accelerator.device}")
    mlm_cfg = mlm_config(cfg)
    optimizer = build_optimizer(raw, mlm_cfg)
    scheduler = build_scheduler(optimizer, c["total_steps"], warmup=p.warmup, schedule="hf_linear")
    model, optimizer = accelerator.prepare(MaskedLMLoss(raw), optimizer)  # the scheduler steps once per step
    if cfg.train.compile:
        model = torch.compile(model)
    run_ = Pretraining(cfg, Fit(model, raw, optimizer, scheduler, None, Tricks(passthrough, "mlm"), None),
                       accelerator, paths, c, log)
    if state is not None:
        run_.resume(state)
        log.info(f"resumed from {paths.pretrain_state} at step {run_.step}/{c['total_steps']}")
    else:
        set_seed(cfg.seed + accelerator.process_index)
        run_.loss_before = evaluate(raw, c["valid_batches"], accelerator)
    log.info(f"held-out masked-LM loss before {run_.loss_before:.4f}  perplexity {perplexity(run_.loss_before):.2f}  "
             f"({len(c['valid_texts'])} texts, {c['n_masked']} masked tokens)")
    run_.train(mlm_cfg)
    return finish(cfg, paths, accelerator, run_, raw, tokenizer, notes, log)


def finish(cfg: Config, paths: RunPaths, accelerator, run_: Pretraining, raw, tokenizer, notes, log) -> dict:
    c = run_.c
    loss_after = evaluate(raw, c["valid_batches"], accelerator)
    log.info(f"held-out masked-LM loss after {loss_after:.4f}  perplexity {perplexity(loss_after):.2f}  "
             f"(before {perplexity(run_.loss_before):.2f})")
    result = {"loss_before": run_.loss_before, "loss_after": loss_after,
              "perplexity_before": perplexity(run_.loss_before), "perplexity_after": perplexity(loss_after),
              "n_texts": len(c["texts"]), "n_valid_texts": len(c["valid_texts"]), "valid_seed": cfg.seed,
              "valid_masked_tokens": c["n_masked"], "n_train_examples": len(c["train_examples"]),
              "steps": run_.step, "epochs": round(run_.step / c["steps_per_epoch"], 3),
              "resumed_from_step": run_.resumed_from,
              "wall_seconds": round(run_.wall_before + time.time() - run_.t0, 1),
              "model_name": cfg.model.name, "notes": notes}
    if accelerator.is_main_process:
        save_model(raw, tokenizer, paths.pretrained_model)
        finish_record(paths, status="finished", perplexity_after=result["perplexity_after"])
        write_json(paths.pretrain_json, result)
    accelerator.wait_for_everyone()
    log.info(f"saved {paths.pretrained_model}: make train ARGS=\"model.name={paths.pretrained_model}\"")
    return result


def main(argv: list[str] | None = None) -> None:
    run_stage(run, argv, switches=("--resume",))

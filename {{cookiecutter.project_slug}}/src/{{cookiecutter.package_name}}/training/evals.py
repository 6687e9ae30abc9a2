"""When a k-fold model is evaluated, and when its training stops: once per epoch, or every N optimiser steps
(train.eval_every), with early stopping after N evaluations without improvement (train.patience).

    make train EXP=exp001 ARGS="train.eval_every=200 train.patience=5"

train.eval_every = 0 (the default): one evaluation and one resume point at the end of every epoch.
train.eval_every = N > 0: an evaluation every N optimiser steps, counted over the fold's epochs, inside the
    epochs too, and one at the last step; each is a history row (its `step`, and `epoch` as a fraction:
    step / steps per epoch), the best one gives best.pt and the fold's OOF, and each is the resume point.
    Helps with few, long epochs (large data, large models): the best weights are rarely at an epoch's end,
    and a crash loses at most N steps. Costs one validation pass per evaluation: with a small N and a large
    validation set, evaluating takes longer than training.
train.save_every = N: a resume point (fold<k>/last.pt, checkpoints.py) at every N-th evaluation only
    (default 1: each). For large models, whose model + optimiser state takes a while to write; a crash then
    redoes up to N evaluations' worth of training.
train.patience = N > 0: the fold stops after N evaluations in a row without a better score (its best
    evaluation stays its result). Saves time on runs that peaked early; with a noisy metric (a small fold)
    a short patience stops before a late improvement. 0 = off: every epoch is trained.
Both are refused with swa.enabled: SWA's average of epoch-end weights replaces the best-evaluation choice.

A resume point inside an epoch replays the exact run: the epoch's batches are drawn again from the loader
generator's state when the epoch began and the done ones are skipped (loaded, not trained on, so workers'
augmentations stay aligned); the RNG states are put back twice, to those the loader fetched the first new
batch with (the loader fetches one batch ahead) and then to those at the evaluation.
"""
from __future__ import annotations

import math
import time

import torch

from ..core.schema import Config
from .checkpoints import FoldState, capture_rng, restore_rng, save_fold_state
from .fit import Fit, fit_epoch


def run_epochs(cfg: Config, run, fit: Fit, accelerator, st: FoldState, gen: torch.Generator, state_file) -> None:
    """Train fold run.k from where `st` stands to its last epoch or its early stop (kfold.FoldRun: run)."""
    if cfg.train.eval_every > 0:
        StepEvals(cfg, run, fit, accelerator, st, gen, state_file).run()
        return
    for epoch in range(st.epoch + 1, cfg.train.epochs + 1):
        if st.stopped:
            break
        t0 = time.time()
        st.train_loss = fit_epoch(cfg, fit, accelerator, epoch, f"{run.name} epoch {epoch}")
        if fit.swa is None or epoch < cfg.train.epochs:
            note(cfg, run, st, run.evaluate(evaluated(fit), epoch, st.train_loss, t0))
        st.epoch, st.best = epoch, None if run.best is None else vars(run.best)
        resume_point(cfg, run, fit, accelerator, st, gen, state_file, epoch == cfg.train.epochs or st.stopped)


def resume_point(cfg: Config, run, fit: Fit, accelerator, st: FoldState, gen: torch.Generator, state_file,
                 last: bool) -> None:
    """Queue the resume point (with best.pt when the fold improved since the previous one) at every
    train.save_every-th evaluation of the fold, but not at its last: done.json follows it, and the fold's
    end writes best.pt. Fewer points save the writes of a large model and its optimiser; a crash redoes at
    most save_every evaluations."""
    if last or len(run.rows) % cfg.train.save_every:
        return
    save_fold_state(state_file, fit, accelerator, gen, st, run.take_best())  # every process: RNG states


def evaluated(fit: Fit) -> torch.nn.Module:
    """What is validated and saved: the EMA when on, else the trained model."""
    return fit.tricks.ema.module if fit.tricks.ema is not None else fit.model


def note(cfg: Config, run, st: FoldState, improved: bool) -> None:
    """Count evaluations since the best; train.patience of them in a row stops the fold."""
    st.stale = 0 if improved else st.stale + 1
    if cfg.train.patience and st.stale >= cfg.train.patience:
        st.stopped = True
        run.log.info(f"{run.name}: no better {cfg.metric} in {st.stale} evaluations (train.patience): stopped")


class Replay:
    """The training loader for one epoch, its first `skip` batches loaded but not yielded (a resume point
    inside the epoch); before(done) runs before each batch is requested, `done` batches in."""

    def __init__(self, loader, skip: int, before):
        self.loader, self.skip, self.before = loader, skip, before

    def __len__(self) -> int:
        return len(self.loader) - self.skip

    def __iter__(self):
        it, done = iter(self.loader), 0
        while True:
            self.before(done)
            try:
                batch = next(it)
            except StopIteration:
                return
            done += 1
            if done > self.skip:
                yield batch


class StepEvals:
    """train.eval_every > 0: the epochs' on_batch hook that evaluates every N optimiser steps and at the last."""

    def __init__(self, cfg: Config, run, fit: Fit, accelerator, st: FoldState, gen: torch.Generator, state_file):
        self.cfg, self.run_, self.fit, self.accelerator = cfg, run, fit, accelerator
        self.st, self.gen, self.state_file = st, gen, state_file
        self.per_epoch = math.ceil(len(fit.loader) / cfg.train.accum_steps)
        self.total = self.per_epoch * cfg.train.epochs
        self.loss_sum = torch.zeros((), device=accelerator.device)
        self.losses, self.batches, self.pre, self.t0 = 0, 0, None, time.time()

    def run(self) -> None:
        st = self.st
        for epoch in range(st.epoch + 1, self.cfg.train.epochs + 1):
            if st.stopped:
                break
            skip = st.batches  # > 0 in the epoch a resume point is inside of
            if skip:
                self.gen.set_state(st.epoch_start)
            else:
                st.epoch_start = self.gen.get_state()
            self.batches = skip
            fit_epoch(self.cfg, self.fit, self.accelerator, epoch, f"{self.run_.name} epoch {epoch}",
                      on_batch=self.on_batch, batches=Replay(self.fit.loader, skip, self.before(skip)))
            st.epoch, st.batches = epoch, 0

    def before(self, skip: int):
        def hook(done: int) -> None:
            if skip and done == skip - 1:
                restore_rng(self.st.pre)   # as when the original run requested batch `skip`
            elif skip and done == skip:
                restore_rng(self.st.rng)   # as at the evaluation
            self.pre = capture_rng()
        return hook

    def on_batch(self, loss: torch.Tensor, stepped: bool) -> bool:
        st = self.st
        self.batches += 1
        self.loss_sum += torch.nan_to_num(loss.float(), nan=0.0, posinf=0.0, neginf=0.0)
        self.losses += 1
        if not stepped:
            return False
        st.step += 1
        if st.step % self.cfg.train.eval_every and st.step != self.total:
            return False
        mean = self.accelerator.reduce(self.loss_sum / max(self.losses, 1), reduction="mean")
        train_loss = float(mean.item())
        self.loss_sum.zero_()
        self.losses = 0
        epoch = round(st.step / self.per_epoch, 4)
        note(self.cfg, self.run_, st, self.run_.evaluate(evaluated(self.fit), epoch, train_loss, self.t0, st.step))
        self.fit.model.train()  # infer() left it in eval mode
        st.train_loss, st.batches, st.pre = train_loss, self.batches, self.pre
        st.best = None if self.run_.best is None else vars(self.run_.best)
        resume_point(self.cfg, self.run_, self.fit, self.accelerator, st, self.gen, self.state_file,
                     st.step == self.total or st.stopped)
        self.t0 = time.time()
        return st.stopped

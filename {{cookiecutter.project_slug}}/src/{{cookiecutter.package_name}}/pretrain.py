"""Masked-language-model post-pretraining of model.name on the competition's own texts (text projects).

    make pretrain EXP=mlm ARGS="pretrain.epochs=2"            # NPROC=n: DDP through torchrun
    make pretrain EXP=mlm RESUME=1                             # continue from outputs/mlm/pretrain_state.pt
    make train EXP=exp001 ARGS="model.name=outputs/mlm/model"  # fine-tune from the result
    python -m <package>.pretrain --exp mlm [--resume] [key=value ...]

Corpus: data.text_cols of train.csv and test.csv (joined with the tokenizer's separator, as training does)
plus pretrain.extra_files (in data.dir: .txt = one text per line, .csv = data.text_cols), stripped, with
empty texts and exact duplicates dropped. A seeded pretrain.valid_fraction of the texts is held out; its
masks are drawn once, so the masked-LM loss / perplexity before and after training compare like with like.
Training texts are concatenated and cut into pretrain.max_len blocks (pretrain.group_texts) or used one per
example; transformers' DataCollatorForLanguageModeling masks them (pretrain.whole_word: whole words).
train.precision, train.accum_steps, train.max_grad_norm, train.compile and seed apply as in training; the
lr warms up over pretrain.warmup of the steps, then decays linearly to 0 (as in BERT / run_mlm.py).

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

import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import AutoModelForMaskedLM, AutoTokenizer
from transformers import get_linear_schedule_with_warmup

from .cli import DataError, run_stage
from .config import Config, ConfigError, PretrainConfig, dump, flatten, load, read_yaml, to_dict
from .data import data_path
from .records import finish_record, note_resume, start_record
from .runs import RunPaths, atomic_path, get_logger, prepare_run_dir, write_json, write_text
from .mlm_data import Masker, make_examples, read_corpus, split_texts  # noqa: F401 - tests use them from here
from .fitting import make_accelerator

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


def load_tokenizer(cfg: Config):
    name = cfg.model.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except Exception as e:  # noqa: BLE001 - unknown id, no network, broken folder: all mean "fix model.name"
        raise ConfigError(f"config key 'model.name': cannot load a tokenizer from {name!r} ({type(e).__name__}: "
                          f"{e}); offline, point it at a local model directory") from None
    if tokenizer.mask_token is None:
        raise ConfigError(f"config key 'model.name': the tokenizer of {name!r} has no mask token, so it cannot do "
                          f"masked-LM pretraining; use an MLM-capable checkpoint (BERT, RoBERTa, DeBERTa, ...)")
    if cfg.pretrain.whole_word and not tokenizer.is_fast:
        raise ConfigError(f"config key 'pretrain.whole_word' needs a fast tokenizer (character offsets); "
                          f"{name!r} has a slow one")
    return tokenizer


def load_model(cfg: Config) -> tuple[torch.nn.Module, list[str]]:
    """The masked-LM model and warnings to log (a head that starts random)."""
    name = cfg.model.name
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(name, output_loading_info=True)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"config key 'model.name': cannot load {name!r} as a masked-LM model "
                          f"(AutoModelForMaskedLM: {type(e).__name__}: {e}); pretraining needs an encoder of a "
                          f"masked-LM family (BERT, RoBERTa, DeBERTa, ...)") from None
    notes = []
    head = sorted(k for k in info["missing_keys"] if not k.startswith(model.base_model_prefix + "."))
    if "deberta-v3" in name.lower():
        notes.append("DeBERTa-v3 was pretrained with replaced-token detection, not masked-LM: its MLM head starts "
                     "random, so perplexity_before is huge and the first steps mostly train the head")
    elif head:
        notes.append(f"the checkpoint has no masked-LM head ({len(head)} tensors, e.g. {head[0]}): it starts "
                     f"random, so perplexity_before is near the vocabulary size")
    # one forward of a full-length block: a pretrain.max_len beyond the model's positions fails here, not later
    try:
        with torch.no_grad():
            model.eval()(input_ids=torch.zeros((1, cfg.pretrain.max_len), dtype=torch.long))
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"config key 'pretrain.max_len' {cfg.pretrain.max_len} does not fit {name!r} "
                          f"({type(e).__name__}: {e}); lower it") from None
    return model, notes


@torch.no_grad()
def evaluate(model, batches: list[dict], accelerator) -> float:
    """Mean masked-LM loss per masked token over the held-out batches (each process takes its share).
    `model` is the unwrapped module: a DDP forward syncs buffers, which would hang a rank with fewer batches."""
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    for batch in batches[accelerator.process_index::accelerator.num_processes]:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        n = (batch["labels"] != -100).sum()
        with accelerator.autocast():
            loss = model(**batch).loss
        total += torch.stack([loss.double() * n, n.double()])
    total = accelerator.reduce(total, reduction="sum")
    model.train()
    return float(total[0] / total[1])


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else float("inf")


def save_state(path: Path, raw, optimizer, scheduler, accelerator, step: int, extra: dict) -> None:
    state = {"model": raw.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None, "step": step,
             "rng": torch.get_rng_state(), "world": accelerator.num_processes, **extra,
             "cuda_rng": torch.cuda.get_rng_state() if torch.cuda.is_available() else None}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def check_resumable(cfg: Config, paths: RunPaths) -> None:
    if not paths.pretrain_state.is_file():
        raise ConfigError(f"--resume: no checkpoint at {paths.pretrain_state}; start it without RESUME=1")
    old = flatten(read_yaml(paths.config))
    new = flatten(to_dict(cfg))
    for key in SAME_ON_RESUME:
        if old.get(key) != new[key]:
            raise ConfigError(f"config key '{key}' is {new[key]!r} but the run being resumed used {old.get(key)!r}; "
                              f"resume with the same value, or start a new EXP")


def save_model(raw, tokenizer, out: Path) -> None:
    """The full masked-LM model and tokenizer, written beside the target and then swapped in, so a killed
    save never leaves a half-written model/."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    raw.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def run(exp: str | None, overrides: list[str], resume: bool = False) -> dict:
    cfg = load(exp, overrides)
    check_config(cfg)
    p, paths = cfg.pretrain, RunPaths(cfg)
    accelerator = make_accelerator(cfg)
    if resume:
        check_resumable(cfg, paths)
    elif paths.dir.exists() and any(paths.dir.iterdir()) and not cfg.overwrite:
        if paths.pretrain_state.is_file() and not paths.pretrain_json.is_file():
            raise ConfigError(f"{paths.dir} holds an unfinished pretraining run: `make pretrain EXP={cfg.exp} "
                              f"RESUME=1` continues it, ARGS=\"overwrite=true\" replaces it")
        prepare_run_dir(paths, overwrite=False)  # raises with the message, before any work
    # every check that can fail, before anything is written
    tokenizer = load_tokenizer(cfg)
    texts = read_corpus(cfg, tokenizer.sep_token or tokenizer.eos_token or "\n")
    train_texts, valid_texts = split_texts(texts, p.valid_fraction, cfg.seed)
    train_examples, valid_examples = make_examples(tokenizer, train_texts, p), make_examples(tokenizer, valid_texts, p)
    masker = Masker(tokenizer, p, cfg.seed)
    bs = p.batch_size
    valid_batches = [masker(valid_examples[i:i + bs], 1, i) for i in range(0, len(valid_examples), bs)]
    n_masked = sum(int((b["labels"] != -100).sum()) for b in valid_batches)
    if n_masked == 0:
        raise DataError(f"the {len(valid_texts)} held-out text(s) got no masked token; raise pretrain.valid_fraction")
    world = accelerator.num_processes
    per_rank = len(train_examples) // world  # equal shares: no rank waits in DDP for a batch that never comes
    steps_per_epoch = math.ceil(per_rank / bs) // cfg.train.accum_steps
    if steps_per_epoch < 1:
        raise ConfigError(f"{len(train_examples)} training examples are fewer than one optimiser step needs "
                          f"(config keys 'pretrain.batch_size' {bs} x 'train.accum_steps' {cfg.train.accum_steps} "
                          f"x {world} processes); lower them or pretrain.max_len")
    total_steps = p.max_steps or p.epochs * steps_per_epoch
    set_seed(cfg.seed)  # a random MLM head starts the same on every run
    raw, notes = load_model(cfg)

    state = None
    if resume:
        state = torch.load(paths.pretrain_state, map_location="cpu")
        if state["world"] != world:
            raise ConfigError(f"{paths.pretrain_state} was written by {state['world']} process(es); resume with "
                              f"NPROC={state['world']}")
        raw.load_state_dict(state["model"])
    if accelerator.is_main_process:
        if not resume:
            prepare_run_dir(paths, cfg.overwrite)
        write_text(paths.config, dump(cfg))
        if resume and paths.run_record.is_file():
            note_resume(paths, argv=sys.argv, step=state["step"])
        else:
            start_record(paths, data_files=[data_path(cfg, cfg.data.train_file), data_path(cfg, cfg.data.test_file)])
    accelerator.wait_for_everyone()
    log = get_logger(paths.log if accelerator.is_main_process else None, accelerator.is_main_process)
    for note in notes:
        log.warning(f"warning: {note}")
    log.info(f"pretrain {cfg.exp}: {cfg.model.name}, {len(texts)} texts ({len(valid_texts)} held out), "
             f"{len(train_examples)} training {'blocks' if p.group_texts else 'texts'} of <= {p.max_len} tokens, "
             f"{total_steps} steps of {bs} x {cfg.train.accum_steps} x {world}, device {accelerator.device}")

    decay = [q for n, q in raw.named_parameters() if q.ndim > 1 and not n.endswith(".bias")]
    rest = [q for n, q in raw.named_parameters() if not (q.ndim > 1 and not n.endswith(".bias"))]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": p.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=p.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(p.warmup * total_steps), total_steps)
    model, optimizer = accelerator.prepare(raw, optimizer)  # the scheduler is stepped here, once per step
    if cfg.train.compile:
        model = torch.compile(model)
    step, wall_before, t0 = 0, 0.0, time.time()
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])  # after prepare: moved to the device
        scheduler.load_state_dict(state["scheduler"])  # keeps last_epoch; a new total_steps reshapes the decay
        for group, base, fn in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
            group["lr"] = base * fn(scheduler.last_epoch)  # the lr of the next step on the (maybe longer) schedule
        if accelerator.scaler is not None and state["scaler"] is not None:
            accelerator.scaler.load_state_dict(state["scaler"])
        step, wall_before, loss_before = state["step"], state["wall_seconds"], state["loss_before"]
        if accelerator.is_main_process:  # the dropout stream of the uninterrupted run
            torch.set_rng_state(state["rng"])
            if state["cuda_rng"] is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state(state["cuda_rng"])
        else:
            set_seed(cfg.seed + step + accelerator.process_index)
        log.info(f"resumed from {paths.pretrain_state} at step {step}/{total_steps}")
    else:
        set_seed(cfg.seed + accelerator.process_index)
        loss_before = evaluate(raw, valid_batches, accelerator)
    log.info(f"held-out masked-LM loss before {loss_before:.4f}  perplexity {perplexity(loss_before):.2f}  "
             f"({len(valid_texts)} texts, {n_masked} masked tokens)")

    def checkpoint():
        if accelerator.is_main_process:
            save_state(paths.pretrain_state, raw, optimizer, scheduler, accelerator, step,
                       {"loss_before": loss_before, "wall_seconds": wall_before + time.time() - t0})

    resumed_from = step if state is not None else None
    micro_per_epoch = steps_per_epoch * cfg.train.accum_steps  # whole optimiser steps; the rest reshuffles
    log_every = max(1, total_steps // 10)
    last_save, running = time.time(), []
    model.train()
    bar = tqdm(total=total_steps, initial=step, desc="pretrain", leave=False,
               disable=not (cfg.train.progress and accelerator.is_main_process))
    for epoch in range(step // steps_per_epoch, math.ceil(total_steps / steps_per_epoch)):
        order = torch.randperm(len(train_examples), generator=torch.Generator().manual_seed(cfg.seed + epoch))
        mine = order[:per_rank * world][accelerator.process_index::world].tolist()
        for b in range((step - epoch * steps_per_epoch) * cfg.train.accum_steps, micro_per_epoch):
            items = [train_examples[j] for j in mine[b * bs:(b + 1) * bs]]
            batch = masker(items, 0, epoch, b, accelerator.process_index)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if cfg.train.max_grad_norm > 0 and accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            running.append(loss.item())
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            step += 1
            bar.update(1)
            if step % log_every == 0 or step == total_steps:
                log.info(f"step {step}/{total_steps}  epoch {epoch + 1}  loss {np.mean(running):.4f}  "
                         f"lr {scheduler.get_last_lr()[0]:.2e}")
                running = []
            if step >= total_steps:
                break
            if time.time() - last_save > SAVE_MINUTES * 60:
                checkpoint()
                last_save = time.time()
        checkpoint()  # every epoch end, and the end of training (a later --resume may extend the run)
        last_save = time.time()
        if step >= total_steps:
            break
    bar.close()

    loss_after = evaluate(raw, valid_batches, accelerator)
    log.info(f"held-out masked-LM loss after {loss_after:.4f}  perplexity {perplexity(loss_after):.2f}  "
             f"(before {perplexity(loss_before):.2f})")
    result = {"loss_before": loss_before, "loss_after": loss_after, "perplexity_before": perplexity(loss_before),
              "perplexity_after": perplexity(loss_after), "n_texts": len(texts), "n_valid_texts": len(valid_texts),
              "valid_seed": cfg.seed, "valid_masked_tokens": n_masked, "n_train_examples": len(train_examples),
              "steps": step, "epochs": round(step / steps_per_epoch, 3), "resumed_from_step": resumed_from,
              "wall_seconds": round(wall_before + time.time() - t0, 1), "model_name": cfg.model.name,
              "notes": notes}
    if accelerator.is_main_process:
        save_model(raw, tokenizer, paths.pretrained_model)
        finish_record(paths, status="finished", perplexity_after=result["perplexity_after"])
        write_json(paths.pretrain_json, result)
    accelerator.wait_for_everyone()
    log.info(f"saved {paths.pretrained_model}: make train ARGS=\"model.name={paths.pretrained_model}\"")
    return result


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    resume = "--resume" in argv  # a flag, not a config key: the config of a run never says "resumed"
    run_stage(lambda exp, overrides: run(exp, overrides, resume), [a for a in argv if a != "--resume"])


if __name__ == "__main__":
    main()

"""Before a long run: can the model memorise a few rows, what does it see, is validation deterministic?

    python -m <package>.sanity --exp exp001 [key=value ...]
    python -m <package> sanity --exp exp001 sanity.steps=200
    make sanity EXP=exp001 [ARGS="sanity.lr=1e-3"]

Resolves EXP's config like make train (configs/default.yaml < configs/<exp>.yaml < ARGS) and runs three
checks, in seconds on the demo data:

1. Overfit: sanity.rows training rows (stratified for classification), sanity.steps optimiser steps at a
   constant sanity.lr (0 = train.lr), through make train's own loop (training.fit / training.loop: the
   same model, loss (loss.*), optimiser groups, accelerator and clipping), with every
   regulariser off: no augmentation, Mixup / CutMix, dropout, weight decay, label smoothing, EMA, SWA,
   adversarial training or R-Drop. A working pipeline drives the training loss to near zero; if the final
   loss (mean of the last 5 steps) is above sanity.max_final_loss_ratio x the first step's, the labels, the
   lr or the model's wiring are wrong.
2. What the model sees: image projects save augmented.png, a grid of training images after the real
   aug.train / aug.preset transforms (and Mixup / CutMix), de-normalised, titled with their labels, and
   augmentations.txt, the same transforms listed with the symmetry each assumes (a horizontal flip: mirrored
   images keep their label), also printed; text projects save
   samples.txt, the tokenised training inputs decoded back (special tokens kept, truncated at data.max_len).
3. Eval mode: the project's validation pass (training.loop.infer) on the same rows twice, starting each from
   train mode, must give identical predictions (dropout off at validation); and if the model has dropout,
   two forward passes in train mode must differ (dropout does act in training).

Writes outputs/sanity_<exp>/: sanity.json (initial_loss, final_loss, steps, passed, eval_deterministic,
...), loss.png, augmented.png + augmentations.txt or samples.txt. Exit code 1, with a line starting
SANITY FAILED per failed check, when a check fails; 2 for a config or data error.
"""
from __future__ import annotations

import copy
import sys
import time

import numpy as np
import pandas as pd
import torch
from accelerate.utils import set_seed

from .core.atomic import write_json, write_text, write_with
from .core.cli import run_stage
from .core.config import load
from .core.errors import TrainingError
from .core.labels import CLASSIFICATION, LabelMap
from .core.rundir import RunPaths
from .core.schema import Config
from .data.files import load_train
from .modality import get_modality
from .training.fit import fit_epoch, prepare_fit
from .training.loop import infer
from .training.plots import save_step_plot
from .training.setup import make_accelerator

LAST = 5             # final loss = mean of the last LAST steps (one batch can be lucky)
ABS_FLOOR = 0.01     # a final loss this small passes even when the first one was already small


def sanity_config(cfg: Config) -> Config:
    """cfg with every regulariser off and one constant lr: nothing may stop the model from memorising."""
    s = copy.deepcopy(cfg)
    s.train.lr = cfg.sanity.lr or cfg.train.lr
    s.optim.schedule, s.train.warmup, s.swa.lr = "constant", 0.0, 0.0
    s.train.weight_decay, s.model.drop_rate, s.loss.label_smoothing = 0.0, 0.0, 0.0
    s.optim.head_lr, s.optim.llrd = 0.0, 1.0
    s.train.accum_steps, s.train.freeze_epochs, s.train.num_workers = 1, 0, 0
    s.ema.enabled, s.swa.enabled, s.adv.method, s.rdrop.alpha = False, False, "none", 0.0
    s.aug.train, s.aug.mixup_alpha, s.aug.cutmix_alpha = [], 0.0, 0.0
    return s


def subset(cfg: Config, train: pd.DataFrame, y_class: np.ndarray | None) -> np.ndarray:
    """sanity.rows row indices; classes interleaved (a shuffled round-robin) so every class is present."""
    order = np.random.default_rng(cfg.seed).permutation(len(train))
    if y_class is not None:
        rank = pd.Series(y_class[order]).groupby(y_class[order]).cumcount().to_numpy()
        order = order[np.argsort(rank, kind="stable")]
    return np.sort(order[:cfg.sanity.rows])


def has_dropout(cfg: Config, model: torch.nn.Module) -> bool:
    return cfg.model.drop_rate > 0 or any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())


def overfit(cfg: Config, mod, label_map: LabelMap, df: pd.DataFrame, y: np.ndarray, accelerator) -> list[float]:
    """Every training loss of sanity.steps optimiser steps on df (cfg: sanity_config's, nothing regularises)."""
    set_seed(cfg.seed)
    model = mod.build_model(label_map.n_outputs, cfg.model.pretrained)
    for m in model.modules():  # backbone dropout (e.g. a transformer's hidden_dropout_prob) off as well
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = mod.loader(df, y, True, min(cfg.train.batch_size, len(df)), generator=gen)
    fit = prepare_fit(cfg, mod, label_map, accelerator, loader, y, model=model)
    losses: list[float] = []
    epoch = 0
    while len(losses) < cfg.sanity.steps:
        epoch += 1
        try:
            fit_epoch(cfg, fit, accelerator, epoch, f"sanity epoch {epoch}", max_steps=cfg.sanity.steps - len(losses),
                      on_batch=lambda loss, stepped: losses.append(float(loss)))
        except TrainingError:  # a NaN / inf loss: recorded as such, and the overfit check fails on it
            losses.append(float("nan"))
            break
    return losses


def mode_checks(cfg: Config, mod, label_map: LabelMap, df: pd.DataFrame, y: np.ndarray, accelerator) -> dict:
    """A fresh model with the experiment's own dropout, through the validation code path."""
    set_seed(cfg.seed)
    model = mod.build_model(label_map.n_outputs, pretrained=False)  # same layers and dropout; no weights to load
    dropout = has_dropout(cfg, model)
    model, loader = accelerator.prepare(model, mod.loader(df, y, False, len(df)))
    runs = []
    for _ in range(2):
        model.train()  # as after a training epoch: infer() itself must switch to eval mode
        runs.append(infer(model, loader, accelerator, label_map, progress=False)[0])
    batch = next(iter(loader))
    model.train()
    with torch.no_grad():
        train_differs = not torch.equal(model(batch), model(batch))
    return {"eval_deterministic": bool(np.array_equal(runs[0], runs[1])), "has_dropout": dropout,
            "train_mode_stochastic": train_differs}


def caption(label_map: LabelMap, target: torch.Tensor) -> str:
    t = target.float().cpu().numpy()
    if label_map.problem in CLASSIFICATION:
        if t.ndim == 0:
            return label_map.classes[int(t)]
        top = np.argsort(-t)[:2]  # Mixup / CutMix: a distribution over classes
        return "+".join(f"{label_map.classes[i]} {t[i]:.2f}" for i in top if t[i] > 0.01)
    if label_map.problem == "multilabel":
        return ",".join(c for c, v in zip(label_map.target_cols, t) if v > 0.5) or "(none)"
    return ",".join(f"{v * s + m:.3g}" for v, s, m in zip(np.atleast_1d(t), label_map.std, label_map.mean))


def save_augmented(cfg: Config, mod, label_map: LabelMap, df: pd.DataFrame, y: np.ndarray, path) -> None:
    """The experiment's real training transforms (and Mixup / CutMix) on the first sanity.samples rows."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .modality.augment import aug_source  # image projects only: this branch never runs in a text project
    from .training.tricks.mixing import build_mixer
    n = min(cfg.sanity.samples, len(df))
    gen = torch.Generator().manual_seed(cfg.seed)
    batch = next(iter(mod.loader(df.iloc[:n], y[:n], True, n, generator=gen)))
    mixer = build_mixer(cfg, label_map)
    if mixer is not None and n > 1:
        batch = mixer(batch)
    mean, std = torch.tensor(mod.mean).view(3, 1, 1), torch.tensor(mod.std).view(3, 1, 1)
    images = (batch["image"].float() * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    cols = min(8, n)
    rows = -(-n // cols)
    side = images.shape[1]
    dx, dy = side + 2, side + max(4, side // 4)  # room for a caption above each image
    sheet = np.ones((rows * dy, cols * dx, 3))
    for k, img in enumerate(images):  # one imshow of a mosaic: a subplot per image costs seconds
        r, c = divmod(k, cols)
        sheet[r * dy + dy - side:(r + 1) * dy, c * dx:c * dx + side] = img
    fig, ax = plt.subplots(figsize=(1.6 * cols, 1.8 * rows))
    ax.imshow(sheet)
    for k in range(n):
        r, c = divmod(k, cols)
        ax.text(c * dx, r * dy + dy - side - 1, caption(label_map, batch["target"][k])[:24], fontsize=7, va="bottom")
    ax.axis("off")
    ax.set_title(f"{aug_source(cfg.aug)} as trained (+ Mixup / CutMix if on), {side}x{side}; the list and what "
                 f"each transform assumes: augmentations.txt", fontsize=8, pad=12)
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def save_text_samples(cfg: Config, mod, label_map: LabelMap, df: pd.DataFrame, y: np.ndarray, path) -> None:
    n = min(cfg.sanity.samples, len(df))
    part = df.iloc[:n]
    encoded = mod.encode(part)  # what the training loader feeds: truncated at data.max_len, special tokens added
    full = mod.tokenizer(mod.texts(part), verbose=False)["input_ids"]
    lines = [f"# the first {n} sanity rows as the model sees them: data.max_len={cfg.data.max_len}, "
             f"tokenizer of {cfg.model.name}; special tokens kept", ""]
    for k in range(n):
        ids = encoded[k]["input_ids"]
        decoded, pieces = mod.tokenizer.decode(ids), " ".join(mod.tokenizer.convert_ids_to_tokens(ids))
        lines += [f"[{k}] id={part[cfg.data.id_col].iloc[k]}  label={caption(label_map, torch.as_tensor(y[k]))}  "
                  f"tokens={len(ids)}" + (f" (truncated from {len(full[k])})" if len(full[k]) > len(ids) else ""),
                  f"decoded: {decoded}", *([f"tokens:  {pieces}"] if pieces != decoded else []), ""]
    write_text(path, "\n".join(lines))


def augmentation_lines(cfg: Config) -> list[str]:
    """What make train does to each training image, and the symmetry of the data each transform assumes."""
    if cfg.task != "image":
        return []
    from .modality.augment import describe  # image projects only
    return describe(cfg.aug, cfg.data.image_size)


def failed_checks(cfg: Config, scfg: Config, losses: list[float], rows: int, overfit_ok: bool,
                  modes: dict) -> list[str]:
    """One sentence per failed check, saying what to look at."""
    initial, final = losses[0], float(np.mean(losses[-LAST:]))
    limit = cfg.sanity.max_final_loss_ratio * initial
    failures = []
    if not overfit_ok:
        failures.append(f"training loss went from {initial:.4g} to {final:.4g} in {len(losses)} steps on "
                        f"{rows} rows (<= {limit:.4g} = sanity.max_final_loss_ratio x initial expected): check "
                        f"the labels (data.target_cols), the lr (sanity.lr / train.lr = {scfg.train.lr:g}) and "
                        f"that the model's output reaches the loss")
    if not modes["eval_deterministic"]:
        failures.append("two validation passes (training.loop.infer) on the same rows gave different predictions: "
                        "the model "
                        "is not in eval mode at validation, or a module ignores eval() (e.g. F.dropout(training="
                        "True)); use nn.Dropout or pass training=self.training")
    if modes["has_dropout"] and not modes["train_mode_stochastic"]:
        failures.append(f"the model has dropout (model.drop_rate={cfg.model.drop_rate}) but two train-mode passes "
                        f"agree: the dropout never acts; check that model.drop_rate reaches the model")
    return failures


def run(exp: str | None, overrides: list[str]) -> dict:
    t0 = time.time()
    cfg = load(exp, overrides)
    scfg = sanity_config(cfg)
    out = RunPaths(cfg).sanity_dir
    train = load_train(cfg)
    label_map = LabelMap.fit(cfg.problem, cfg.data.target_cols, train, cfg.data.id_col, cfg.data.train_file)
    y_all = label_map.encode(train, cfg.data.id_col, cfg.data.train_file, scaled=True)
    rows = subset(cfg, train, y_all if label_map.problem in CLASSIFICATION else None)
    df, y = train.iloc[rows].reset_index(drop=True), y_all[rows]
    real_cfg = copy.deepcopy(cfg)  # the experiment as configured (augmentation, dropout) ...
    real_cfg.train.num_workers = 0  # ... minus worker start-up, which would cost more than these few rows
    mod, real = get_modality(scfg), get_modality(real_cfg)
    if cfg.data.check_inputs:
        mod.check_inputs(df, cfg.data.train_file)
    accelerator = make_accelerator(scfg)

    losses = overfit(scfg, mod, label_map, df, y, accelerator)
    initial, final = losses[0], float(np.mean(losses[-LAST:]))
    limit = cfg.sanity.max_final_loss_ratio * initial
    overfit_ok = bool(np.isfinite(final) and (final <= limit or final <= ABS_FLOOR))
    modes = mode_checks(cfg, real, label_map, df, y, accelerator)
    augs = augmentation_lines(cfg)
    if cfg.sanity.samples:
        if cfg.task == "image":
            save_augmented(cfg, real, label_map, df, y, out / "augmented.png")
            write_text(out / "augmentations.txt", "\n".join(augs) + "\n")
        else:
            save_text_samples(cfg, real, label_map, df, y, out / "samples.txt")
    save_step_plot(out / "loss.png", losses, f"{cfg.exp}: {len(df)} rows, lr {scfg.train.lr:g}, no regularisation")

    failures = failed_checks(cfg, scfg, losses, len(df), overfit_ok, modes)
    result = {"exp": cfg.exp, "passed": not failures, "initial_loss": initial, "final_loss": final,
              "loss_ratio": final / initial if initial else None,
              "max_final_loss_ratio": cfg.sanity.max_final_loss_ratio,
              "overfit_passed": overfit_ok, "steps": len(losses), "rows": len(df), "lr": scfg.train.lr,
              "batch_size": min(cfg.train.batch_size, len(df)), **modes, "augmentations": augs, "failures": failures,
              "seconds": round(time.time() - t0, 1), "losses": losses}
    write_json(out / "sanity.json", result)
    dropout = ("dropout acts in train mode" if modes["train_mode_stochastic"] else "no dropout in train mode") \
        if modes["has_dropout"] else "the model has no dropout"
    print(f"sanity {cfg.exp}: loss {initial:.4g} -> {final:.4g} in {len(losses)} steps on {len(df)} rows "
          f"(ratio {final / initial if initial else float('nan'):.3g}, limit {cfg.sanity.max_final_loss_ratio}); "
          f"validation {'deterministic' if modes['eval_deterministic'] else 'NOT deterministic'}; {dropout}; -> {out}/")
    for line in augs:
        print(f"  {line}")
    if failures:
        for f in failures:
            print(f"SANITY FAILED: {f}", file=sys.stderr)
        raise SystemExit(1)
    return result


def main(argv=None):
    run_stage(run, argv)


if __name__ == "__main__":
    main()

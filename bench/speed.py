"""The template's epoch against the floor (a bare loop on pre-decoded tensors / pre-tokenised batches), and the
template's parts, side by side in one process, interleaved and repeated.

    python bench/speed.py [--threads 1,2] [--repeats 3] [--rows 1000] [--only r18,lite0,text]
    make bench-speed

Regimes (fold 0 of 5 of the first --rows train rows of the shared data; images linked, never copied):
  r18    resnet18 from scratch at 32 px, batch 64, image_fmnist, no augmentation
  lite0  efficientnet_lite0 with the offline ImageNet weights at 96 px, batch 64, image_fmnist, no augmentation
  text   all-MiniLM-L6-v2 (offline), max_len 128, batch 32, text_sst2
For each regime and thread count:
  template epoch   (T(train.epochs=3) - T(train.epochs=1)) / 2 of the package's k-fold training on fold 0: an
                   epoch as make train runs it (loader, tricks off, validation, best.pt, last.pt, history, log),
                   the run's setup subtracted out
  floor epoch      the same model (modality.build_model), rows, batch and threads: torch AdamW (fused, the
                   template's kernel) over batches built once in memory, then a no-grad pass over the
                   validation rows
  parts            the training loader alone (items / s, the default workers), the template's step alone on
                   pre-built batches (loop.train_epoch; items / s), validation alone (loop.infer), the resume
                   state + best.pt writes (snapshot to written), and the part of it the training thread waits
                   for (the snapshot and the hand-off to the writer thread, training/saver.py), and one AdamW
                   step with torch's default kernel (what a plain loop on CPU gets) against the fused one
Writes bench/results_speed.md.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import yaml
from cookiecutter.main import cookiecutter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import minilm_dir  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO, RUNS = BENCH.parent, BENCH / "runs" / "speed"
SHARED = REPO.parent / "shared" / "data"
REGIMES = {
    "r18": dict(task="image", data="image_fmnist", model="resnet18", size=32, batch=64),
    "lite0": dict(task="image", data="image_fmnist", model="efficientnet_lite0", size=96, batch=64, weights=True),
    "text": dict(task="text", data="text_sst2", model="minilm", size=128, batch=32),
}


def subset(name: str, rows: int) -> Path:
    src, out = SHARED / name, RUNS / f"data_{name}_{rows}"
    if not (out / "sample_submission.csv").is_file():
        out.mkdir(parents=True, exist_ok=True)
        if (src / "images").exists() and not (out / "images").exists():
            (out / "images").symlink_to((src / "images").resolve())
        pd.read_csv(src / "train.csv").iloc[:rows].to_csv(out / "train.csv", index=False)
        for f in ("test.csv", "sample_submission.csv"):
            shutil.copy(src / f, out / f)
    return out


def bake(name: str, r: dict, data: Path) -> Path:
    proj = RUNS / f"speed_{name}"
    if not proj.exists():
        ctx = dict(project_slug=proj.name, task=r["task"], n_folds="5", target_cols="label",
                   problem="multiclass" if r["task"] == "image" else "binary")
        ctx.update(image_col="image", image_size=str(r["size"])) if r["task"] == "image" else \
            ctx.update(text_cols="sentence", max_len=str(r["size"]))
        cookiecutter(str(REPO), no_input=True, output_dir=str(RUNS), extra_context=ctx)
    if r["model"] == "minilm":
        model = {"name": minilm_dir()}
    else:
        model = {"name": r["model"], "pretrained": bool(r.get("weights"))}
        if r.get("weights"):
            sys.path.insert(0, str(BENCH))
            from defaults import lite0_weights
            model["weights"] = lite0_weights()
    train = dict(batch_size=r["batch"], folds=[0], progress=False, warmup=0.0)
    cfg = dict(data=dict(dir=str(data)), model=model, train=train, report=dict(auto=False), overwrite=True)
    if r["task"] == "image":
        cfg["aug"] = dict(train=[])
    (proj / "configs" / "speed.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return proj


def reset_accelerate() -> None:
    from accelerate.state import AcceleratorState, GradientState
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


class Regime:
    """One baked project, imported; its fold-0 rows, loaders and pre-built batches."""

    def __init__(self, name: str, r: dict, rows: int):
        self.name, self.r = name, r
        self.proj = bake(name, r, subset(r["data"], rows))
        sys.path.insert(0, str(self.proj / "src"))
        os.chdir(self.proj)
        self.pkg = lambda m: importlib.import_module(f"{self.proj.name}.{m}")
        self.cfg = self.load(1)
        self.pkg("training.kfold").train_kfold(self.cfg)  # folds file, warm caches
        reset_accelerate()
        train, _, self.lm = self.pkg("data.preflight").load_all(self.cfg)
        folds = pd.read_csv(self.proj / "outputs" / "speed" / "folds.csv")
        fold = folds.set_index(self.cfg.data.id_col).loc[train[self.cfg.data.id_col], "fold"].to_numpy()
        y = self.lm.encode(train, self.cfg.data.id_col, self.cfg.data.train_file, scaled=True)
        self.tr, self.va = np.flatnonzero(fold != 0), np.flatnonzero(fold == 0)
        self.train_df, self.y = train, y
        self.mod = self.pkg("modality").get_modality(self.cfg)

    def load(self, epochs: int):
        return self.pkg("core.config").load("speed", [f"train.epochs={epochs}"])

    def template_epoch(self) -> float:
        times = []
        for epochs in (1, 3):
            cfg = self.load(epochs)
            t0 = time.perf_counter()
            self.pkg("training.kfold").train_kfold(cfg)
            times.append(time.perf_counter() - t0)
            reset_accelerate()
        return (times[1] - times[0]) / 2

    def batches(self, rows: np.ndarray, train: bool) -> list[dict]:
        """Batches built once: decoded and normalised images / tokenised and padded texts."""
        df, y = self.train_df.iloc[rows], self.y[rows]
        if train:  # random batches as training draws them (text: each padded to its own longest row)
            loader = self.mod.loader(df, y, True, self.r["batch"], generator=torch.Generator().manual_seed(1))
        else:
            loader = self.mod.loader(df, y, False, 2 * self.r["batch"])
        return list(loader)

    def floor_epoch(self) -> float:
        torch.manual_seed(0)
        model = self.mod.build_model(self.lm.n_outputs, self.cfg.model.pretrained)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=True)  # the template's kernel
        train, valid = self.batches(self.tr, True), self.batches(self.va, False)
        t0 = time.perf_counter()
        model.train()
        for b in train:
            loss = F.cross_entropy(model(b), b["target"].long())
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        model.eval()
        with torch.no_grad():
            for b in valid:
                model(b)
        return time.perf_counter() - t0

    def parts(self) -> dict:
        cfg = self.load(1)
        setup, fit, loop = self.pkg("training.setup"), self.pkg("training.fit"), self.pkg("training.loop")
        ck = self.pkg("training.checkpoints")
        acc = setup.make_accelerator(cfg)
        gen = torch.Generator().manual_seed(0)
        loader = self.mod.loader(self.train_df.iloc[self.tr], self.y[self.tr], True, self.r["batch"], generator=gen)
        val = self.mod.loader(self.train_df.iloc[self.va], self.y[self.va], False, 2 * self.r["batch"])
        t0, n = time.perf_counter(), 0
        built = []
        for b in loader:
            n += len(b["target"])
            built.append(b)
        loader_rate = n / (time.perf_counter() - t0)
        f = fit.prepare_fit(cfg, self.mod, self.lm, acc, loader, self.y[self.tr], val)
        t0 = time.perf_counter()
        loop.train_epoch(f.model, built, f.optimizer, f.scheduler, acc, f.tricks, 1, f.raw, progress=False)
        step_rate = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        loop.infer(f.model, f.eval_loaders[0], acc, self.lm, progress=False)
        valid = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            best = (Path(d) / "best.pt", ck.weights(f.raw, epoch=1))
            ck.save_fold_state(Path(d) / "last.pt", f, acc, gen, ck.FoldState(1, None, [], 0.0), best)
            queued = time.perf_counter() - t0  # what the training thread waits for: the snapshot, the hand-off
            self.pkg("training.saver").SAVER.flush()
            writes = time.perf_counter() - t0
        reset_accelerate()
        adamw = self.adamw_ms(f.raw)
        return dict(loader=loader_rate, step=step_rate, valid=valid, writes=writes, queued=queued, **adamw)

    @staticmethod
    def adamw_ms(model) -> dict:
        """One AdamW step on the model's gradients: torch's default kernel on CPU (a plain loop's) vs fused."""
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        out = {}
        for name, kw in (("adamw_default", {}), ("adamw_fused", {"fused": True})):
            opt = torch.optim.AdamW(model.parameters(), lr=1e-7, **kw)
            opt.step()
            t0 = time.perf_counter()
            for _ in range(5):
                opt.step()
            out[name] = (time.perf_counter() - t0) / 5 * 1000
        return out


def measure(reg: Regime, threads: int, repeats: int) -> dict:
    torch.set_num_threads(threads)
    res = {k: [] for k in ("template", "floor", "loader", "step", "valid", "writes", "queued", "adamw_default",
                           "adamw_fused")}
    for _ in range(repeats):
        res["floor"].append(reg.floor_epoch())
        res["template"].append(reg.template_epoch())
        for k, v in reg.parts().items():
            res[k].append(v)
        print(reg.name, threads, {k: round(v[-1], 2) for k, v in res.items()}, flush=True)
    return {k: statistics.median(v) for k, v in res.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--only", default="r18,lite0,text")
    args = ap.parse_args()
    lines = ["# The template's epoch vs the floor (`bench/speed.py`)", "",
             f"Fold 0 of 5 of the first {args.rows} train rows, medians of {args.repeats} interleaved repeats "
             f"(floor, template, parts). The floor: the same model, rows, batch and threads, torch AdamW (fused, as "
             f"the template's) over batches built once in memory, plus a no-grad validation pass.", "",
             "| regime | threads | floor epoch s | template epoch s | template / floor | loader items/s | "
             "step items/s | loader / step | validation s | state + best.pt writes s | of which on the training "
             "thread s | AdamW step ms: torch default / fused |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in args.only.split(","):
        reg = Regime(name, REGIMES[name], args.rows)
        for t in (int(x) for x in args.threads.split(",")):
            m = measure(reg, t, args.repeats)
            lines.append(f"| {name} | {t} | {m['floor']:.2f} | {m['template']:.2f} | {m['template'] / m['floor']:.2f}x"
                         f" | {m['loader']:.0f} | {m['step']:.0f} | {m['loader'] / m['step']:.1f}x | "
                         f"{m['valid']:.2f} | {m['writes']:.2f} | {m['queued']:.2f} | "
                         f"{m['adamw_default']:.1f} / {m['adamw_fused']:.1f} |")
        os.chdir(REPO)
    (BENCH / "results_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

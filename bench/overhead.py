"""Training-step overhead: the baked project's step, with each trick alone, against a bare PyTorch loop.

    python bench/overhead.py [--steps 20] [--repeats 5] [--device cpu|cuda] [--precision fp32|bf16]
                             [--only image|text] [--variants EMA,AWP] [--image-size 64]
    make bench-overhead

Bakes an image and a text project into bench/runs/overhead/, imports each one's package, and times
epochs of the same model, batches and AdamW optimiser: first a bare loop (forward, loss, backward,
step, zero_grad), then the project's `loop.train_epoch` with all tricks off, then each trick alone.
Variants are interleaved and repeated; the table shows median seconds per step and the ratio to the
bare loop measured in the same run. Batches are pre-built tensors on the device, so data loading is
not part of either side.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import minilm_dir  # noqa: E402
from demo import bake  # noqa: E402

VARIANTS = [
    ("all tricks off", []),
    ("EMA", ["ema.enabled=true"]),
    ("R-Drop", ["rdrop.alpha=1.0"]),
    ("FGM", ["adv.method=fgm", "adv.start_epoch=1"]),
    ("PGD (3 steps)", ["adv.method=pgd", "adv.start_epoch=1", "adv.steps=3"]),
    ("AWP", ["adv.method=awp", "adv.start_epoch=1"]),
    ("label smoothing", ["loss.label_smoothing=0.1"]),
    ("grad clip", ["train.max_grad_norm=1.0"]),
    ("accumulation x2", ["train.accum_steps=2"]),
]
TARGETS = {"all tricks off": 1.05, "EMA": 1.03, "R-Drop": 2.0, "FGM": 2.1, "AWP": 2.1}


def setup(task: str, out: Path, device: str, image_size: int = 64):
    name = f"overhead_{task}"
    project = out / name
    if not project.exists():
        bake(out, name, {"task": task, "problem": "multiclass"})
    sys.path.insert(0, str(project / "src"))
    pkg = lambda m: importlib.import_module(f"{name}.{m}")  # noqa: E731
    if task == "image":
        base = ["model.name=resnet18", "model.pretrained=false", f"data.image_size={image_size}", "train.batch_size=32"]
        batch = {"image": torch.randn(32, 3, image_size, image_size)}
    else:
        model_dir = minilm_dir()  # a real small BERT, offline
        base = [f"model.name={model_dir}", "data.max_len=64", "train.batch_size=16"]
        batch = {"input_ids": torch.randint(1000, 20000, (16, 64)), "attention_mask": torch.ones(16, 64, dtype=torch.long)}
    batch["target"] = torch.randint(0, 4, (len(next(iter(batch.values()))),))
    batch = {k: v.to(device) for k, v in batch.items()}
    return pkg, base, batch


def bench_task(task, args, out):
    pkg, base, batch = setup(task, out, args.device, args.image_size)
    config, fit, loop, labels = pkg("core.config"), pkg("training.fit"), pkg("training.loop"), pkg("core.labels")
    spec = labels.LabelMap("multiclass", ["target"], classes=["a", "b", "c", "d"])
    common = base + [f"train.precision={args.precision}", f"train.device={args.device}", "train.warmup=0.0"]
    configs = Path(config.__file__).parents[3] / "configs"
    cfg0 = config.load("x", common, config_dir=configs)
    accelerator = pkg("training.setup").make_accelerator(cfg0)
    torch.manual_seed(0)
    template = pkg("modality").get_modality(cfg0).build_model(4, pretrained=task == "text")
    batches = [batch] * args.steps

    def bare():
        model = copy.deepcopy(template).to(accelerator.device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        autocast = torch.autocast(accelerator.device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

        def run():
            model.train()
            for b in batches:
                with autocast:
                    loss = F.cross_entropy(model(b).float(), b["target"])
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
        return run

    def ours(overrides):
        cfg = config.load("x", common + overrides, config_dir=configs)
        model = copy.deepcopy(template)
        tricks = fit.build_tricks(cfg, spec, model, batch["target"].cpu().numpy())
        opt = pkg("training.optim").build_optimizer(model, cfg)
        sched = pkg("training.optim").build_scheduler(opt, 10**6, warmup=cfg.train.warmup, schedule=cfg.optim.schedule,
                                                      min_lr=cfg.train.min_lr)
        accelerator.gradient_accumulation_steps = cfg.train.accum_steps
        raw = model
        model, opt, sched = accelerator.prepare(model, opt, sched)
        tricks.ema, _ = pkg("training.tricks.averaging").build_averagers(cfg, raw)
        return lambda: loop.train_epoch(model, batches, opt, sched, accelerator, tricks, epoch=99, raw_model=raw,
                                        max_grad_norm=cfg.train.max_grad_norm, progress=False)

    runners = {"bare PyTorch loop": bare()}
    for label, overrides in VARIANTS:
        if not args.variants or label in args.variants.split(",") or label == "all tricks off":
            runners[label] = ours(overrides)
    times = {k: [] for k in runners}
    for fn in runners.values():  # warm-up: allocator, autotuning, first-call costs
        fn()
    for _ in range(args.repeats):
        for label, fn in runners.items():
            if accelerator.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if accelerator.device.type == "cuda":
                torch.cuda.synchronize()
            times[label].append((time.perf_counter() - t0) / args.steps)
    bare_t = statistics.median(times["bare PyTorch loop"])
    rows = []
    for label, ts in times.items():
        t = statistics.median(ts)
        target = TARGETS.get(label)
        rows.append((task, label, t * 1000, t / bare_t, f"<= {target}" if target else ""))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--only", choices=["image", "text"])
    ap.add_argument("--variants", help="comma-separated variant labels (default: all)")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "runs" / "overhead"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for task in ("image", "text"):
        if not args.only or args.only == task:
            rows += bench_task(task, args, out)
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU x {torch.get_num_threads()} threads"
    print(f"\nTraining-step overhead vs a bare PyTorch loop ({device}, {args.precision}, "
          f"{args.steps} steps x {args.repeats} repeats, median)\n")
    print("| model | variant | ms / step | ratio to bare | target |\n|---|---|---:|---:|---|")
    for task, label, ms, ratio, target in rows:
        model = f"resnet18 @{args.image_size}px, batch 32" if task == "image" else "MiniLM-L6 (22M), seq 64, batch 16"
        print(f"| {model} | {label} | {ms:.1f} | {ratio:.3f} | {target} |")


if __name__ == "__main__":
    main()

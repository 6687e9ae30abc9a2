"""Does masked-LM post-pretraining help? SST-2 with the offline all-MiniLM-L6-v2, CPU.

    python bench/pretrain.py [--data-root DIR] [--folds 0,1] [--epochs 1] [--threads 2]

Bakes a text/binary project into bench/runs/pretrain/, then:
1. `make pretrain EXP=mlm`: MLM on the train + test sentences (max_len 64, blocks, --epochs epochs), held-out
   perplexity before / after. MiniLM is a sentence-embedding BertModel: its MLM head starts random.
2. `make train predict submit` twice with identical settings (bench/run.py's: 1 epoch, batch 16, lr 8e-5,
   same folds file, seed 42), once from the original MiniLM and once from outputs/mlm/model.
Scores each submission against solution.csv; prints a markdown table and writes bench/results_pretrain.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import accuracy_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import minilm_dir, run_make  # noqa: E402
from demo import bake  # noqa: E402

HERE = Path(__file__).resolve().parent
ANSWERS = dict(task="text", problem="binary", metric="accuracy", target_cols="label", text_cols="sentence",
               max_len="64", n_folds="5")
FINETUNE = ["model.pretrained=true", "model.pooling=mean", "model.drop_rate=0.1", "train.epochs=1",
            "train.batch_size=16", "train.lr=8e-5", "train.weight_decay=0.01", "train.warmup=0.1"]



def make(project: Path, target: str, exp: str, args: list[str], threads: int) -> float:
    threads_env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return run_make(project, target, f"EXP={exp}", "ARGS=" + " ".join(args), env=threads_env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=str(HERE.parents[1] / "shared" / "data"))
    ap.add_argument("--folds", default="0,1", help="folds to fine-tune (of 5)")
    ap.add_argument("--epochs", type=int, default=1, help="pretraining epochs")
    ap.add_argument("--lr", default="1e-4", help="pretraining lr")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    data = Path(args.data_root).resolve() / "text_sst2"
    project = bake(HERE / "runs" / "pretrain", "pretrain_sst2", ANSWERS)
    common = [f"data.dir={data}", "train.progress=false", "overwrite=true"]
    pt_args = [*common, f"model.name={minilm_dir()}", "pretrain.max_len=64", "pretrain.batch_size=16",
               f"pretrain.epochs={args.epochs}", f"pretrain.lr={args.lr}", "pretrain.group_texts=true"]
    pt_wall = make(project, "pretrain", "mlm", pt_args, args.threads)
    pt = json.loads((project / "outputs" / "mlm" / "pretrain.json").read_text())
    print(f"pretrain: perplexity {pt['perplexity_before']:.1f} -> {pt['perplexity_after']:.1f} "
          f"({pt['steps']} steps, {pt_wall:.0f}s)", flush=True)

    solution = pd.read_csv(data / "solution.csv", dtype={"id": str}).set_index("id")["label"].astype(str)
    sources = {"original MiniLM": minilm_dir(),
               "post-pretrained (outputs/mlm/model)": str(project / "outputs" / "mlm" / "model")}
    rows = []
    for i, (name, source) in enumerate(sources.items()):
        exp = f"ft{i}"
        ft_args = [*common, *FINETUNE, f"model.name={source}", f"train.folds=[{args.folds}]"]
        wall = sum(make(project, t, exp, ft_args, args.threads) for t in ("train", "predict", "submit"))
        cv = json.loads((project / "outputs" / exp / "cv.json").read_text())
        sub = pd.read_csv(project / "submissions" / f"{exp}.csv", dtype={"id": str})
        test = accuracy_score(solution.loc[sub["id"]], sub["label"].astype(str))
        rows.append(dict(name=name, cv=cv["cv"], folds=cv["folds"], test=test, wall=wall))
        print(f"{name}: CV {cv['cv']:.4f} folds {[round(f, 4) for f in cv['folds']]} test {test:.4f} ({wall:.0f}s)",
              flush=True)

    cmd = (f"python bench/pretrain.py --folds {args.folds} --epochs {args.epochs} --lr {args.lr} "
           f"--threads {args.threads}")
    lines = ["# MLM post-pretraining on SST-2 (all-MiniLM-L6-v2, CPU)\n",
             f"`{cmd}`, {time.strftime('%Y-%m-%d %H:%M')}\n",
             f"Pretraining: {pt['n_texts']} distinct train + test sentences, {pt['n_valid_texts']} held out "
             f"({pt['valid_masked_tokens']} masked tokens, fixed masks), max_len 64 blocks, {pt['steps']} steps "
             f"({pt['epochs']} epochs) of 16, lr {args.lr}, {args.threads} CPU threads. MiniLM has no MLM head: "
             f"it starts random, hence the huge perplexity before.\n",
             "| held-out perplexity before | after | masked-LM loss before | after | wall time (s) |",
             "|---:|---:|---:|---:|---:|",
             f"| {pt['perplexity_before']:.1f} | {pt['perplexity_after']:.1f} | {pt['loss_before']:.4f} | "
             f"{pt['loss_after']:.4f} | {pt_wall:.0f} |\n",
             f"Fine-tuning: identical settings (`{' '.join(FINETUNE)}`), folds [{args.folds}] of 5 (the same folds "
             f"file), seed 42; test = accuracy of the submission (mean of the fold models) against solution.csv.\n",
             "| fine-tuned from | CV accuracy | fold scores | test accuracy | wall time (s) |",
             "|---|---:|---|---:|---:|"]
    lines += [f"| {r['name']} | {r['cv']:.4f} | {', '.join(f'{f:.4f}' for f in r['folds'])} | {r['test']:.4f} | "
              f"{r['wall']:.0f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    (HERE / "results_pretrain.md").write_text(text)


if __name__ == "__main__":
    main()

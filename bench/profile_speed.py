"""cProfile of train_kfold on bench/speed.py's r18 project (fold 0, 3 epochs, 1 thread): where an epoch's time
goes beside the step (AdamW, torch.save, worker start-up, validation). Run bench/speed.py once first (it bakes
bench/runs/speed/speed_r18).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python bench/profile_speed.py
"""
import cProfile
import importlib
import os
import pstats
import sys
import time
from pathlib import Path

import torch

PROJ = Path(__file__).resolve().parent / "runs" / "speed" / "speed_r18"
SHOWN = (r"train_epoch|run_backward|_fused_adamw|_multi_tensor_adamw|write_record|posix.fork|'poll'|gc.collect|"
         r"snapshot|infer|save_fold_state|evaluate")


def main() -> None:
    torch.set_num_threads(1)
    sys.path.insert(0, str(PROJ / "src"))
    os.chdir(PROJ)
    pkg = lambda m: importlib.import_module(f"{PROJ.name}.{m}")  # noqa: E731
    cfg = pkg("core.config").load("speed", ["train.epochs=3", "overwrite=true"])
    kfold = pkg("training.kfold")
    profile = cProfile.Profile()
    t0 = time.perf_counter()
    profile.runcall(kfold.train_kfold, cfg)
    print(f"train_kfold: {time.perf_counter() - t0:.2f} s (imports excluded)")
    pstats.Stats(profile).sort_stats("cumulative").print_stats(SHOWN)


if __name__ == "__main__":
    main()

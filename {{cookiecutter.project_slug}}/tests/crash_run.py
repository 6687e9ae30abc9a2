"""Run `train` and die like kill -9 (os._exit: no cleanup, no finally) at a chosen point.

    python tests/crash_run.py step E:S --exp x ...  # at step S of the E-th epoch run (counted over folds), once
                                                    # the resume points queued so far are on disk
    python tests/crash_run.py fold N  --exp x ...   # right after the N-th fold is marked done (between folds)
    python tests/crash_run.py save N  --exp x ...   # halfway through writing the N-th resume point
"""
from __future__ import annotations

import io
import os
import sys
from pathlib import Path

from helpers import mod  # puts the project's src/ on the path

KILLED = 137


def main() -> None:
    point, n, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    calls = {"n": 0}

    def hit() -> bool:
        calls["n"] += 1
        return calls["n"] == int(n)

    kfold, evals, loop, saver = mod("training.kfold"), mod("training.evals"), mod("training.loop"), mod("training.saver")
    if point == "step":
        (epoch, step), at = map(int, n.split(":")), {"epoch": 0, "step": 0}
        fit_epoch, loss_of = evals.fit_epoch, loop.Tricks.loss_of

        def counting_fit_epoch(*args, **kwargs):
            at.update(epoch=at["epoch"] + 1, step=0)
            return fit_epoch(*args, **kwargs)

        def dying_loss_of(self, model, batch):
            at["step"] += 1
            if (at["epoch"], at["step"]) == (epoch, step):
                saver.SAVER.flush()  # a kill during a write is the `save` point's
                os._exit(KILLED)
            return loss_of(self, model, batch)
        evals.fit_epoch, loop.Tricks.loss_of = counting_fit_epoch, dying_loss_of
    elif point == "fold":
        mark_done = kfold.mark_done

        def dying_mark_done(*args, **kwargs):
            mark_done(*args, **kwargs)
            if hit():
                os._exit(KILLED)
        kfold.mark_done = dying_mark_done
    elif point == "save":
        import torch
        save = torch.save

        def dying_save(obj, f, *args, **kwargs):
            if str(f).endswith(".tmp") and Path(f).name.startswith(".last.pt") and hit():
                buf = io.BytesIO()
                save(obj, buf)
                Path(f).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # a torn write
                os._exit(KILLED)
            return save(obj, f, *args, **kwargs)
        torch.save = dying_save
    else:
        raise SystemExit(f"unknown crash point {point}")
    mod("train").main(argv)


if __name__ == "__main__":
    main()

"""NPROC>1: torchrun (torch.distributed.run) as it is, with one difference: when a process fails, the exit
code is that process's and its own one-line error (already printed by run_stage) is the last word, instead
of torchrun's ChildFailedError traceback.

    python -m <package>.core.launch --standalone --nproc_per_node=2 -m <package>.train --exp exp001   # make train NPROC=2
"""
from __future__ import annotations

import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main as torchrun


def main(argv: list[str] | None = None) -> None:
    try:
        torchrun(sys.argv[1:] if argv is None else argv)
    except ChildFailedError as e:
        codes = [failure.exitcode for failure in e.failures.values()]
        print(f"error: {len(codes)} of the processes failed (exit codes {codes}); their messages are above",
              file=sys.stderr)
        raise SystemExit(next((c for c in codes if c and c > 0), 1)) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()

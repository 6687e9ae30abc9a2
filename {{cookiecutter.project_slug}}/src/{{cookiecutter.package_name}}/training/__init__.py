"""The training layer: one trainer for make train, pseudo, full fits, sanity and pretrain.

setup.py (accelerator, determinism) -> optim.py (parameter groups, schedules, freezing) -> loop.py (one
epoch, the inference pass, the trick hook points) -> fit.py (one model's training state) -> kfold.py /
fullfit.py (the runs); checkpoints.py (best.pt, last.pt, resume), tracking.py, plots.py, tricks/.
"""

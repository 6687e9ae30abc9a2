"""Training tricks, one concept per module, each behind one config switch and off by default.

adversarial.py  FGM / PGD / AWP (adv.*)          averaging.py  EMA / SWA of weights (ema.*, swa.*)
rdrop.py        R-Drop consistency (rdrop.alpha)  losses.py     CE / focal / BCE / MSE / SmoothL1 (loss.*)
mixing.py       Mixup / CutMix for images (aug.mixup_alpha, aug.cutmix_alpha)
"""

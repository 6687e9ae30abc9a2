"""The data layer: the competition files (files.py), the folds (splits.py), the submission layout
(submission.py) and the pre-flight that runs all their checks before any training (preflight.py)."""

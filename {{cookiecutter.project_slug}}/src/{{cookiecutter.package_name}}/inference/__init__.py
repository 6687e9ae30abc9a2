"""The inference layer: load a run's models (models.py) and predict with them (predictor.py): test rows,
any rows per fold (pseudo-labels), and the TTA'd OOF."""

"""K-fold training, prediction and submission for a Kaggle-style competition. See README.md."""
__version__ = "0.1.0"

"""K-fold training, prediction and submission for a Kaggle-style competition. See README.md."""
import os

__version__ = "0.1.0"

# albumentations asks PyPI for a newer release at import: on an offline Kaggle notebook that is a DNS
# timeout per process (make package-test's network block caught it); the projects never need the answer
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

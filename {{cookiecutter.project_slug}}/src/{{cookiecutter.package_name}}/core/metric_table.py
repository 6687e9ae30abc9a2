"""The metric table: which problems each metric applies to, its direction, and each problem's default.

Pure data with no imports, because it is read in three places: core.metrics (the scorers), core.schema
(the default of the `metric` key) and, when a project is baked, the template's hooks (to check the
`metric` answer and to write configs/default.yaml's `metric:`). Change a metric here and all follow.
"""

CLS = ("binary", "multiclass")
ML = ("multilabel",)
REG = ("regression",)

# name: (problems it applies to, greater is better)
METRIC_TABLE = {
    "accuracy": (CLS + ML, True),
    "f1_macro": (CLS + ML, True),
    "f1": (("binary",), True),
    "mcc": (CLS, True),
    "roc_auc": (CLS + ML, True),
    "log_loss": (CLS + ML, False),
    "qwk": (CLS + REG, True),
    "rmse": (REG, False),
    "mae": (REG, False),
    "r2": (REG, True),
}

DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "accuracy", "multilabel": "roc_auc", "regression": "rmse"}

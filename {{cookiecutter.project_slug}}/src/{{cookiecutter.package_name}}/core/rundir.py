"""Where every file of a run lives, how a run folder is found, opened and created, and the run's logger.

All paths come from here; stages never build them by hand. An experiment folder:

    outputs/<exp>/config.yaml       resolved config          outputs/<exp>/labels.json   label map
    outputs/<exp>/folds.csv         folds used (id, fold)    outputs/<exp>/train.log     log
    outputs/<exp>/history.csv       per-epoch metrics        outputs/<exp>/loss_fold<k>.png
    outputs/<exp>/fold<k>/best.pt   best checkpoint          outputs/<exp>/fold<k>/oof.csv
    outputs/<exp>/fold<k>/test_preds.csv                     outputs/<exp>/backbone/ (text)
    outputs/<exp>/oof_preds.csv     outputs/<exp>/cv.json    outputs/<exp>/test_preds.csv
    outputs/<exp>/run.json          run record: command, git commit, packages, hardware, times, data hashes
    outputs/<exp>/code.diff         uncommitted changes of the project when the run started
    outputs/<exp>/fold<k>/last.pt   resume point (end of the last finished epoch; removed when the fold is done)
    outputs/<exp>/fold<k>/done.json the fold finished: its score, best epoch, history rows
    outputs/<exp>/oof_preds_notta.csv  training-time OOF, kept when make predict redoes it with TTA
    outputs/<exp>/predict.json      the TTA views / reduce / models behind test_preds.csv
    outputs/<exp>/fold<k>/pseudo_labels.csv   pseudo runs: the rows and targets fold k trained on
    outputs/<exp>/seed<s>/model.pt  full-fit runs          outputs/<ens>/oof_corr.png  ensembles
    outputs/<ens>/meta_models.pkl   stack ensembles: the fold meta-models that predict test
    outputs/<exp>/post.json         post.method: parameters (all OOF, per fold), cv_post
    outputs/<exp>/test_post.csv     post.method: test_preds.csv post-processed (what make submit writes)
    submissions/<exp>.csv
    outputs/sanity_<exp>/           make sanity (sanity.json, loss.png, augmented.png + augmentations.txt / samples.txt)
    outputs/eda/                    make eda (report.md, *.png, summary.json)
    outputs/leaderboard.csv         make leaderboard
    outputs/<exp>/report.html       make report EXP=<exp> (and train / ensemble at their end)
    outputs/leaderboard.html        make report (no EXP)
    cache/<key>.npy                 image data.cache=disk: decoded, resized images (paths.cache)
    outputs/tracking/               optional trackers' local store (track.backends; track.dir moves it)
    packages/<bundle>/              make package: a Kaggle Dataset + notebook (BundlePaths below)
    outputs/<study>/                make tune: study.db, study.json, best.yaml, summary.md, *.png (StudyPaths below);
                                    its trials are experiments outputs/<study>_t<k>/
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .config import CONFIG_DIR, load, parse_overrides, read_yaml
from .errors import ConfigError, DataError
from .labels import LabelMap
from .schema import Config
from .tables import read_table

# cv.json's "kind": what made the run (make train, train.full_fit=true, make ensemble, make pseudo)
KINDS = ("kfold", "full_fit", "ensemble", "pseudo")


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# folders of outputs/ that other stages write: an experiment of that name would mix with them
RESERVED = ("eda", "tracking", "errors")


def check_run_name(name: str, var: str = "EXP") -> None:
    """A name that becomes a folder (outputs/<EXP>/, packages/<NAME>/): one a folder can hold, not another
    stage's folder, not hidden."""
    if not NAME.match(name) or name.endswith((".", ".lock")):
        raise ConfigError(f"{var}={name!r} cannot name a folder: use 1-100 letters, digits, '.', '_' or '-', "
                          f"starting with a letter or digit (no spaces or slashes)")
    if name in RESERVED or name.startswith("sanity_") or name.endswith(".rehearsal"):
        raise ConfigError(f"{var}={name!r} is the name of a folder another stage writes (outputs/eda, "
                          f"outputs/tracking, outputs/errors, outputs/sanity_<exp>); choose another")


class RunPaths:
    def __init__(self, cfg: Config, exp: str | None = None):
        self.exp = exp or cfg.exp
        self.dir = Path(cfg.paths.outputs) / self.exp
        self.submissions = Path(cfg.paths.submissions)
        self.folds_dir = Path(cfg.paths.folds)

    config = property(lambda s: s.dir / "config.yaml")
    labels = property(lambda s: s.dir / "labels.json")
    folds = property(lambda s: s.dir / "folds.csv")
    log = property(lambda s: s.dir / "train.log")
    history = property(lambda s: s.dir / "history.csv")
    oof = property(lambda s: s.dir / "oof_preds.csv")
    cv = property(lambda s: s.dir / "cv.json")
    test_preds = property(lambda s: s.dir / "test_preds.csv")
    backbone = property(lambda s: s.dir / "backbone")
    oof_notta = property(lambda s: s.dir / "oof_preds_notta.csv")
    predict_record = property(lambda s: s.dir / "predict.json")
    corr_plot = property(lambda s: s.dir / "oof_corr.png")
    meta_models = property(lambda s: s.dir / "meta_models.pkl")        # stack ensembles: fold meta-models
    post = property(lambda s: s.dir / "post.json")                     # post.method: fitted parameters, cv_post
    test_post = property(lambda s: s.dir / "test_post.csv")            # post.method: post-processed test_preds
    submission = property(lambda s: s.submissions / f"{s.exp}.csv")
    sanity_dir = property(lambda s: s.dir.parent / f"sanity_{s.exp}")  # make sanity: not an experiment
    pretrain_json = property(lambda s: s.dir / "pretrain.json")          # make pretrain: before / after
    pretrained_model = property(lambda s: s.dir / "model")              # make pretrain: HF directory
    pretrain_state = property(lambda s: s.dir / "pretrain_state.pt")    # make pretrain: resume point
    run_record = property(lambda s: s.dir / "run.json")
    report = property(lambda s: s.dir / "report.html")                 # make report: the run's page
    code_diff = property(lambda s: s.dir / "code.diff")

    def fold_dir(self, k: int) -> Path:
        return self.dir / f"fold{k}"

    @staticmethod
    def slot_name(k: int, seed: int | None = None) -> str:
        """How logs, plots and predict.json name fold k's model (of that seed, with train.seeds)."""
        return f"fold {k}" + ("" if seed is None else f" seed {seed}")

    def slot_dir(self, k: int, seed: int | None = None) -> Path:
        """Fold k's folder, or with train.seeds on a k-fold run, fold k's folder of that seed."""
        return self.fold_dir(k) if seed is None else self.fold_dir(k) / f"seed{seed}"

    def checkpoint(self, k: int, seed: int | None = None) -> Path:
        return self.slot_dir(k, seed) / "best.pt"

    def fold_oof(self, k: int, seed: int | None = None) -> Path:
        return self.slot_dir(k, seed) / "oof.csv"      # with seeds: fold<k>/oof.csv is their mean

    def fold_state(self, k: int, seed: int | None = None) -> Path:
        return self.slot_dir(k, seed) / "last.pt"

    def fold_done(self, k: int, seed: int | None = None) -> Path:
        return self.slot_dir(k, seed) / "done.json"

    def fold_test_preds(self, k: int) -> Path:
        return self.fold_dir(k) / "test_preds.csv"

    def pseudo_labels(self, k: int) -> Path:
        return self.fold_dir(k) / "pseudo_labels.csv"

    def seed_checkpoint(self, seed: int) -> Path:
        return self.dir / f"seed{seed}" / "model.pt"

    def loss_plot(self, k: int, seed: int | None = None) -> Path:
        return self.dir / (f"loss_fold{k}.png" if seed is None else f"loss_fold{k}_seed{seed}.png")

    def require(self, path: Path, make_target: str) -> Path:
        if not path.exists():
            raise ConfigError(f"{path} does not exist: run `make {make_target} EXP={self.exp}` first")
        return path



class BundlePaths:
    """A code-competition bundle (make package), laid out as a Kaggle Dataset:

        packages/<bundle>/MANIFEST.json            every file with size and sha256, versions, the time projection
        packages/<bundle>/dataset-metadata.json    kaggle datasets create -p packages/<bundle>
        packages/<bundle>/kernel-metadata.json     kaggle kernels push -p packages/<bundle>
        packages/<bundle>/inference.py | .ipynb    install the wheels offline, predict, write submission.csv
        packages/<bundle>/wheels/                  the project's wheel (+ package.extra_wheels)
        packages/<bundle>/runs/<exp>/              what inference needs of each run (an ensemble's members too)
        packages/<bundle>.rehearsal/               make package-test's scratch folder (kept when it fails)
        packages/<bundle>.rehearsal.json           make package-test's result
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.name = self.root.name

    manifest = property(lambda s: s.root / "MANIFEST.json")
    dataset_meta = property(lambda s: s.root / "dataset-metadata.json")
    kernel_meta = property(lambda s: s.root / "kernel-metadata.json")
    script = property(lambda s: s.root / "inference.py")
    notebook = property(lambda s: s.root / "inference.ipynb")
    wheels = property(lambda s: s.root / "wheels")
    runs = property(lambda s: s.root / "runs")
    rehearsal = property(lambda s: s.root.parent / f"{s.name}.rehearsal")
    rehearsal_json = property(lambda s: s.root.parent / f"{s.name}.rehearsal.json")

    def run_dir(self, exp: str) -> Path:
        return self.runs / exp


def bundle_paths(packages: str | Path, name: str) -> BundlePaths:
    return BundlePaths(Path(packages) / name)


class StudyPaths:
    """A hyper-parameter study (make tune EXP=<base> NAME=<study>); trial k is the experiment <study>_t<k>:

        outputs/<study>/study.db          Optuna's SQLite storage (WAL mode): make tune again continues it
        outputs/<study>/study.json        what the study is bound to: base, folds, metric (checked on every run)
        outputs/<study>/best.yaml         the best trial's config as an experiment config (configs/<name>.yaml-ready)
        outputs/<study>/summary.md        every trial: state, CV, fold scores, parameters, run folder
        outputs/<study>/history.png       optimisation history     outputs/<study>/importance.png  parameter importances
        outputs/<study>/tune.log          the study's log (each trial's own log is outputs/<study>_t<k>/train.log)
    """

    def __init__(self, outputs: str | Path, name: str):
        self.name = name
        self.dir = Path(outputs) / name

    db = property(lambda s: s.dir / "study.db")
    record = property(lambda s: s.dir / "study.json")
    best = property(lambda s: s.dir / "best.yaml")
    summary = property(lambda s: s.dir / "summary.md")
    history_plot = property(lambda s: s.dir / "history.png")
    importance_plot = property(lambda s: s.dir / "importance.png")
    log = property(lambda s: s.dir / "tune.log")

    def trial_exp(self, k: int) -> str:
        return f"{self.name}_t{k}"


def eda_dir(cfg: Config) -> Path:
    """make eda's report folder: one per outputs folder (the data set is the config's, not an experiment's)."""
    return Path(cfg.paths.outputs) / "eda"


def cache_dir(cfg: Config) -> Path:
    """data.cache=disk: decoded images of image projects (modality/image_cache.py), shared by every run."""
    return Path(cfg.paths.cache)


def tracking_dir(cfg: Config) -> Path:
    """Optional trackers' local store (MLflow file store, TensorBoard logs): track.dir or outputs/tracking."""
    return Path(cfg.track.dir) if cfg.track.dir else Path(cfg.paths.outputs) / "tracking"


def leaderboard_csv(outputs: Path) -> Path:
    return Path(outputs) / "leaderboard.csv"


def leaderboard_html(outputs: Path) -> Path:
    """make report without EXP: the leaderboard page, each row linking to outputs/<exp>/report.html."""
    return Path(outputs) / "leaderboard.html"


def outputs_root(overrides: list[str], config_dir: Path = CONFIG_DIR) -> Path:
    """paths.outputs without resolving an experiment: ARGS, then configs/default.yaml, then "outputs".
    Stages that read finished runs use it, so they also work in a folder holding only outputs/ (a notebook)."""
    root = parse_overrides(overrides).get("paths", {}).get("outputs")
    if root is None and (config_dir / "default.yaml").exists():
        root = read_yaml(config_dir / "default.yaml").get("paths", {}).get("outputs")
    return Path(root or "outputs")


def refuse_existing(paths: RunPaths, overwrite: bool) -> None:
    """The overwrite rule: a run folder that holds anything is only replaced with overwrite=true. Stages call
    it before any expensive work, and create_run_dir calls it again before it deletes anything."""
    if paths.dir.exists() and any(paths.dir.iterdir()) and not overwrite:
        resumable = paths.config.is_file() and not paths.cv.is_file() and any(paths.dir.glob("fold*/"))
        hint = (f"it stopped before the end: continue it with RESUME=1 (make train EXP={paths.exp} RESUME=1), "
                f"or " if resumable else "")
        raise ConfigError(f"{paths.dir} already holds experiment '{paths.exp}'; {hint}choose a new EXP name "
                          f"or pass ARGS=\"overwrite=true\" to replace it")


def create_run_dir(paths: RunPaths, overwrite: bool) -> None:
    """An empty run folder: a finished experiment is never replaced silently."""
    refuse_existing(paths, overwrite)
    if paths.dir.exists() and any(paths.dir.iterdir()):
        shutil.rmtree(paths.dir)
    paths.dir.mkdir(parents=True, exist_ok=True)


def read_cv(paths: RunPaths, make_target: str = "train") -> dict:
    return json.loads(paths.require(paths.cv, make_target).read_text())


def run_kind(paths: RunPaths, cv: dict | None = None) -> str:
    """kfold | full_fit | ensemble | pseudo: what the stage that made the run wrote into its cv.json
    (cv: that file, when the caller has read it already)."""
    kind = (read_cv(paths) if cv is None else cv).get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{paths.cv} does not say which kind of run it is (\"kind\": one of {', '.join(KINDS)}); "
                          f"it was written by an older version of this project: re-run that stage")
    return kind


def open_run(exp: str | None, overrides: list[str], stage: str) -> tuple[Config, RunPaths, LabelMap]:
    """A finished run's own saved config (+ overrides), its paths and its label map."""
    if not exp:
        raise ConfigError(f"name the experiment: make {stage} EXP=<name>")
    config_file = outputs_root(overrides) / exp / "config.yaml"
    if not config_file.exists():
        raise ConfigError(f"{config_file} does not exist: run `make train EXP={exp}` first")
    cfg = load(exp, overrides, base=config_file)
    paths = RunPaths(cfg)
    label_map = LabelMap.load(paths.require(paths.labels, "train"))
    if paths.oof.exists():  # written at training from the same map: an edited or swapped labels.json shows here
        trained = [c for c in read_table(paths.oof, nrows=0).columns if c != cfg.data.id_col]
        if trained != label_map.pred_cols:
            raise DataError(f"{paths.labels} predicts {label_map.pred_cols[:10]} but the run was trained for "
                            f"{trained[:10]} ({paths.oof}); restore the run's own labels.json or re-run "
                            f"make train EXP={paths.exp}")
    return cfg, paths, label_map


def preds_frame(ids: pd.Series, id_col: str, preds: np.ndarray, label_map: LabelMap) -> pd.DataFrame:
    """The layout of oof_preds.csv and test_preds.csv: the id column, then one column per output."""
    df = pd.DataFrame(preds, columns=label_map.pred_cols)
    df.insert(0, id_col, ids.to_numpy())
    return df


def get_logger(log_file: Path | None = None, main_process: bool = True) -> logging.Logger:
    """Console (+ file) logger; other DDP ranks only report warnings, so lines are not repeated."""
    logger = logging.getLogger("run")
    logger.setLevel(logging.INFO if main_process else logging.WARNING)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file)
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    return logger

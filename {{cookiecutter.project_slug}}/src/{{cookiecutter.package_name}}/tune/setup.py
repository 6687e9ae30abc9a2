"""What a study is made of, resolved and checked before any trial: the base experiment, the tune: section
(configs/<study>.tune.yaml < ARGS), the space, the folds, and the study folder it continues.

A study is bound to its base, folds and metric (outputs/<study>/study.json): continuing it with another
one would mix incomparable CVs in one history, so it is refused; so is a key whose kind or choices changed
(Optuna keeps one distribution kind per parameter name). A range may widen or narrow between runs.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..core.atomic import write_json
from ..core.config import CONFIG_DIR, flatten, load, parse_overrides, read_yaml
from ..core.errors import ConfigError
from ..core.metrics import METRICS
from ..core.rundir import StudyPaths, check_run_name
from ..core.schema import Config, TuneConfig
from .space import Param, check_values, overrides as param_overrides, parse_space

BOUND = ("base", "metric", "folds")  # study.json keys a continued study must share

# Optuna steps: fold position p (0, 1, ...) for per-fold scores; EVAL_STEP * (p + 1) + n for the n-th evaluation
# inside that fold (train.eval_every), so the median pruner compares trials at the same fold and evaluation.
EVAL_STEP = 1_000_000


@dataclass
class Setup:
    base: str
    paths: StudyPaths
    cfg: Config               # the base experiment (configs/<base>.yaml + ARGS), tune: section resolved
    space: list[Param]
    fixed: list[str]          # ARGS that every trial gets (no tune.*, no overwrite)
    folds: list[int]
    source: str               # where tune.space came from

    @property
    def tune(self) -> TuneConfig:
        return self.cfg.tune

    @property
    def direction(self) -> str:
        return "maximize" if METRICS[self.cfg.metric].greater_is_better else "minimize"

    def trial_overrides(self, params: dict) -> list[str]:
        return [*self.fixed, *param_overrides(params), f"train.folds={json.dumps(self.folds)}"]


def key_of(item: str) -> str:
    return item.split("=", 1)[0].strip()


def tune_file_args(path: Path) -> list[str]:
    """configs/<study>.tune.yaml -> tune.<key>=<value> overrides (applied before ARGS)."""
    if not path.is_file():
        return []
    data = read_yaml(path)
    if set(data) != {"tune"} or not isinstance(data["tune"], dict):
        raise ConfigError(f"{path} must hold a tune: section only (space, folds, trials, ...); put other keys in "
                          f"the base experiment's config or ARGS")
    known = [f.name for f in dataclasses.fields(TuneConfig)]
    for k in data["tune"]:
        if k not in known:
            raise ConfigError(f"unknown config key 'tune.{k}' in {path}; known keys here: "
                              f"{', '.join('tune.' + n for n in known)}")
    return [f"tune.{k}={json.dumps(v)}" for k, v in data["tune"].items()]


def prepare(base: str | None, name: str | None, overrides: list[str], config_dir: Path = CONFIG_DIR) -> Setup:
    if not base:
        raise ConfigError("name the base experiment: make tune EXP=<base> NAME=<study>")
    if not name:
        raise ConfigError(f"name the study: make tune EXP={base} NAME=<study> (its space in configs/<study>.tune.yaml)")
    if name == base:
        raise ConfigError(f"NAME={name} is the base experiment itself; a study needs a name of its own")
    if not (config_dir / f"{base}.yaml").is_file():
        raise ConfigError(f"{config_dir / (base + '.yaml')} does not exist: a study's base is an experiment config "
                          f"in {config_dir}/")
    tune_file = config_dir / f"{name}.tune.yaml"
    fixed = [o for o in overrides if not key_of(o).startswith("tune.") and key_of(o) != "overwrite"]
    cfg = load(base, [*tune_file_args(tune_file), *overrides], config_dir=config_dir)
    t = cfg.tune
    for key, value, low in (("tune.trials", t.trials, 1), ("tune.n_jobs", t.n_jobs, 1),
                            ("tune.startup_trials", t.startup_trials, 0)):
        if value < low:
            raise ConfigError(f"config key '{key}' must be >= {low}, got {value}")
    source = "ARGS" if "tune.space" in map(key_of, overrides) else str(tune_file)
    if source != "ARGS" and not tune_file.is_file() and not t.space:
        raise ConfigError(f"{tune_file} does not exist and ARGS give no tune.space: write the search space there "
                          f"(a tune: section with space: ...), see README: Tuning")
    space = parse_space(t.space, source)
    both = sorted(set(flatten(parse_overrides(fixed))) & {p.key for p in space})
    if both:
        raise ConfigError(f"config key '{both[0]}' is set by ARGS and searched by tune.space ({source}); drop one")
    folds = list(t.folds or cfg.train.folds or range(cfg.train.n_folds))
    bad = [f for f in folds if not 0 <= f < cfg.train.n_folds]
    if bad or len(set(folds)) != len(folds):
        raise ConfigError(f"config key 'tune.folds' {t.folds}: folds must be distinct, in 0..{cfg.train.n_folds - 1}")
    check_values(space, base, fixed, source)
    paths = StudyPaths(cfg.paths.outputs, name)
    check_run_name(paths.trial_exp(0), "NAME")
    return Setup(base, paths, cfg, space, fixed, folds, source)


def trial_dirs(setup: Setup) -> list[Path]:
    root = setup.paths.dir.parent
    if not root.is_dir():
        return []
    prefix = f"{setup.paths.name}_t"
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix)
                  and p.name[len(prefix):].isdigit())


def record(setup: Setup) -> dict:
    return {"base": setup.base, "metric": setup.cfg.metric, "folds": setup.folds, "direction": setup.direction,
            "space": {p.key: p.spec() for p in setup.space}}


def open_study_folder(setup: Setup, overwrite: bool) -> bool:
    """Check (or, with overwrite=true, clear) outputs/<study>/ and its trial folders; True for a new study.
    Runs under the study's lock, before any trial."""
    paths = setup.paths
    if overwrite:
        for folder in [paths.dir, *trial_dirs(setup)]:
            shutil.rmtree(folder, ignore_errors=True)
    if (paths.dir / "cv.json").exists() or (paths.dir / "config.yaml").exists():
        raise ConfigError(f"{paths.dir} is an experiment, not a study; choose another NAME")
    if not paths.db.is_file():
        left = trial_dirs(setup)
        if left:
            raise ConfigError(f"{left[0]} and {len(left) - 1} more trial folders exist without {paths.db}: they are "
                              f"from an earlier study of that name; choose another NAME or pass "
                              f"ARGS=\"overwrite=true\" to start it afresh")
        paths.dir.mkdir(parents=True, exist_ok=True)
        write_json(paths.record, record(setup))
        return True
    if paths.record.is_file():
        check_bound(setup, json.loads(paths.record.read_text()))
    write_json(paths.record, {**record(setup), "space": {**_old_space(paths), **record(setup)["space"]}})
    return False


def _old_space(paths: StudyPaths) -> dict:
    return json.loads(paths.record.read_text()).get("space", {}) if paths.record.is_file() else {}


def check_bound(setup: Setup, old: dict) -> None:
    new = record(setup)
    for key in BOUND:
        if old.get(key) != new[key]:
            hint = f"use EXP={old[key]}" if key == "base" else f"keep {key} {old.get(key)}"
            raise ConfigError(f"{setup.paths.record}: study '{setup.paths.name}' was built with {key} {old.get(key)}, "
                              f"this run asks for {new[key]}; {hint} or choose a new NAME (trials of one study must "
                              f"compare)")
    for key, spec in new["space"].items():
        was = old.get("space", {}).get(key)
        if was is not None and (was.get("kind"), was.get("choices")) != (spec.get("kind"), spec.get("choices")):
            raise ConfigError(f"tune.space key '{key}' ({setup.source}) was {was} in study '{setup.paths.name}'; a "
                              f"continued study keeps each key's kind and choices: choose a new NAME")

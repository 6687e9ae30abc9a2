"""The search space of make tune, checked against the config schema before any trial, and sampled per trial.

    # configs/<study>.tune.yaml
    tune:
      space:
        train.lr: {low: 1.0e-4, high: 3.0e-3, log: true}     # a number key: a float range (log: sampled in log)
        train.epochs: {low: 2, high: 6, step: 2}             # an int key: an int range (step optional)
        optim.name: {choices: [adamw, sgd]}                  # any key: one of the values
      folds: [0, 1]

The key's schema type decides float or int (model.drop_rate is a float even with {low: 0, high: 1}). Each
bound and each choice is loaded into the base experiment's config (configs/<base>.yaml + ARGS) once, so a
value the schema or its range checks refuse fails here, naming the key, not in the middle of trial 7.
Keys that change the data, the folds or the metric would make the trials' CVs incomparable, and keys of
later stages (tta, post, submit, ...) do not change a trial's CV: neither can be searched.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass

from ..core.config import flatten, load, to_dict
from ..core.errors import ConfigError
from ..core.schema import Config

# the study compares CVs: these must be the same in every trial
FIXED = ("task", "problem", "metric", "exp", "overwrite", "train.folds", "train.n_folds", "train.full_fit",
         "train.seeds", "data.dir", "data.train_file", "data.test_file", "data.sample_submission_file",
         "data.id_col", "data.target_cols", "data.group_col", "data.fold_seed", "data.image_col", "data.text_cols",
         "data.check_inputs", "train.device", "train.progress")
# sections of other stages: a trial's CV does not depend on them
LATER = ("paths.", "tune.", "ensemble.", "pseudo.", "package.", "eda.", "sanity.", "track.", "submit.", "post.",
         "report.", "tta.", "infer.", "pretrain.")
NUMERIC = ("low", "high", "log", "step")
SCALARS = (str, int, float, bool, type(None))
# the three forms of a key's entry (plain strings: no f-string brace escapes in this file)
FORMS = "{low: .., high: .., log: true}, {low: .., high: .., step: ..} or {choices: [..]}"
EXAMPLE = "space: {train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}"


@dataclass
class Param:
    """One searched key: kind float | int | choice, and its range or values."""
    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial):
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def spec(self) -> dict:
        """The YAML form (study.json records it; a continued study must keep each key's kind and choices)."""
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log, "step": self.step, "kind": self.kind}

    def contains(self, value) -> bool:
        if self.kind == "choice":
            return value in self.choices
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high


def schema_type(key: str):
    """The schema type of a dotted key; None when there is no such key, the dataclass when it is a section."""
    tp = Config
    for part in key.split("."):
        if not dataclasses.is_dataclass(tp):
            return None
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return None
        tp = hints[part]
    return tp


def numeric_kind(tp) -> str | None:
    """float when the key takes a float (also float | str like train.lr), int when it takes int only."""
    options = typing.get_args(tp) or (tp,)
    return "float" if float in options else "int" if int in options else None


def parse_param(key: str, spec, source: str) -> Param:
    where = f"tune.space key '{key}' ({source})"
    if any(key == k or key.startswith(f"{k}.") for k in FIXED) or key.startswith(LATER):
        why = ("changes the data, the folds or the metric, so the trials' CVs would not compare: set it in the "
               "base's config" if not key.startswith(LATER) else "is not a training setting (a trial's CV does not "
               "depend on it)")
        raise ConfigError(f"{where} cannot be searched: it {why}")
    tp = schema_type(key)
    if tp is None:
        near = difflib.get_close_matches(key, list(flatten(to_dict(Config()))), n=3)
        raise ConfigError(f"{where} is not a config key{'; did you mean ' + ', '.join(near) if near else ''} "
                          f"(configs/default.yaml lists every key)")
    if dataclasses.is_dataclass(tp):
        raise ConfigError(f"{where} is a section; name one of its keys, e.g. {key}.<name>")
    if not isinstance(spec, dict) or not spec:
        raise ConfigError(f"{where} must be a mapping: " + FORMS + f", got {spec!r}")
    if "choices" in spec:
        return parse_choices(key, spec, where)
    unknown = sorted(set(spec) - set(NUMERIC))
    if unknown or "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: a range needs low and high (and optionally log, step), got keys {sorted(spec)}")
    kind = numeric_kind(tp)
    if kind is None:
        raise ConfigError(f"{where}: the key is not a number ({tp}); search it with " + "{choices: [..]}")
    return parse_range(key, spec, kind, where)


def parse_choices(key: str, spec: dict, where: str) -> Param:
    choices = spec["choices"]
    if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
        raise ConfigError(f"{where}: " + "{choices: [..]}" + f" takes a non-empty list and nothing else, got {spec!r}")
    if not all(isinstance(c, SCALARS) for c in choices):
        raise ConfigError(f"{where}: choices must be single values (strings, numbers, true/false), got {choices!r}")
    if len(set(map(json.dumps, choices))) != len(choices):
        raise ConfigError(f"{where}: choices repeat a value: {choices!r}")
    return Param(key, "choice", choices=tuple(choices))


def parse_range(key: str, spec: dict, kind: str, where: str) -> Param:
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    number = (int,) if kind == "int" else (int, float)
    for name, v in (("low", low), ("high", high)) + ((("step", step),) if step is not None else ()):
        if isinstance(v, str):
            try:
                v = float(v)  # YAML 1.1 reads 1e-3 as a string
            except ValueError:
                pass
        if not isinstance(v, number) or isinstance(v, bool):
            what = "an integer (the key is an int)" if kind == "int" else "a number"
            raise ConfigError(f"{where}: {name} must be {what}, got {v!r}")
        if name == "low":
            low = v
        elif name == "high":
            high = v
        else:
            step = v
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, got {log!r}")
    if not low < high:
        raise ConfigError(f"{where}: low {low} must be below high {high}")
    if log and low <= 0:
        raise ConfigError(f"{where}: log: true needs low > 0, got {low}")
    if step is not None and (step <= 0 or log):
        raise ConfigError(f"{where}: step must be > 0 and cannot go with log: true, got step {step}")
    if kind == "float":
        low, high = float(low), float(high)
    return Param(key, kind, low, high, log, step)


def parse_space(space: dict, source: str) -> list[Param]:
    if not space:
        raise ConfigError(f"config key 'tune.space' is empty ({source}): give it the keys to search, e.g. "
                          + EXAMPLE)
    return [parse_param(str(k), v, source) for k, v in space.items()]


def as_override(key: str, value) -> str:
    """key=value that core.config reads back as the same value (JSON is valid YAML)."""
    return f"{key}={json.dumps(value)}"


def check_values(params: list[Param], base: str, fixed: list[str], source: str) -> None:
    """Each bound and choice loaded into the base's config (the others at the base's values): the schema's
    types and range checks refuse it now, naming the key."""
    for p in params:
        values = p.choices if p.kind == "choice" else (p.low, p.high)
        for v in values:
            try:
                load(base, [*fixed, as_override(p.key, v)])
            except ConfigError as e:
                raise ConfigError(f"tune.space key '{p.key}' ({source}): the value {v!r} is refused: {e}") from None


def overrides(params: dict) -> list[str]:
    return [as_override(k, v) for k, v in params.items()]

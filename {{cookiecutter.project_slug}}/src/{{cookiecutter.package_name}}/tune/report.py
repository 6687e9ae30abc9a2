"""What a study leaves besides study.db: best.yaml, summary.md, history.png and importance.png (StudyPaths).

best.yaml is the base's own configs/<base>.yaml with the ARGS the study ran with and the best trial's values
merged in: copied to configs/<name>.yaml, `make train EXP=<name>` trains that trial's settings on every
fold. Importances are Optuna's fANOVA over the complete trials (seeded); with fewer than two, or when no
key varied, they are left out with a note.
"""
from __future__ import annotations

import math

import optuna
import yaml
from optuna.trial import TrialState

from ..core.atomic import write_text, write_with
from ..core.config import CONFIG_DIR, parse_overrides, read_yaml
from ..training.plots import save_curves
from .setup import EVAL_STEP, Setup


def nest(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def complete(study: optuna.Study) -> list:
    return [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]


def write_best(setup: Setup, study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    if not complete(study):
        return None
    best = study.best_trial
    base_file = CONFIG_DIR / f"{setup.base}.yaml"
    data = merge(merge(read_yaml(base_file), parse_overrides(setup.fixed)), nest(best.params))
    head = (f"# make tune EXP={setup.base} NAME={setup.paths.name}: trial {best.number} "
            f"(outputs/{best.user_attrs.get('run', setup.paths.trial_exp(best.number))}), CV {setup.cfg.metric} "
            f"{best.value:.5f} on folds {setup.folds}.\n"
            f"# {base_file} + the study's ARGS + the trial's values: copy to configs/<name>.yaml, then "
            f"make train EXP=<name> (every fold).\n")
    write_text(setup.paths.best, head + yaml.safe_dump(data, sort_keys=False))
    return best


def importances(study: optuna.Study) -> dict | str:
    if len(complete(study)) < 2:
        return "needs two complete trials"
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError, ZeroDivisionError) as e:
        return f"not computed ({e})"


def fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def trial_rows(setup: Setup, study: optuna.Study) -> list[str]:
    keys = [p.key for p in setup.space]
    # a pruned trial's value in Optuna is its last fold score, not a CV: only complete trials show one
    rows = ["| trial | state | CV | fold scores | " + " | ".join(keys) + " | run | seconds | note |",
            "|" + "---|" * (len(keys) + 7)]
    every = study.get_trials(deepcopy=False)
    rerun = {t.user_attrs["retry_of"]: t.number for t in every if "retry_of" in t.user_attrs}
    for t in every:
        fold_values = sorted((s, v) for s, v in t.intermediate_values.items() if s < EVAL_STEP)
        evals = sum(s >= EVAL_STEP for s in t.intermediate_values)
        folds = ", ".join(f"{v:.4f}" for _, v in fold_values)
        note = "; ".join(filter(None, ["base values" if t.user_attrs.get("base") else "",
                                       f"retry of {t.user_attrs['retry_of']}" if "retry_of" in t.user_attrs else "",
                                       f"interrupted, re-run as trial {rerun[t.number]}" if t.number in rerun else
                                       "interrupted" if t.user_attrs.get("interrupted") else "",
                                       f"pruned after {len(fold_values)} fold(s)" + (f", {evals} evaluation(s)" if evals else "")
                                       if t.state == TrialState.PRUNED else ""]))
        seconds = f"{t.duration.total_seconds():.0f}" if t.duration is not None else ""
        rows.append(f"| {t.number} | {t.state.name.lower()} | {f'{t.value:.5f}' if t.state == TrialState.COMPLETE else ''} | "
                    f"{folds} | " + " | ".join(fmt(t.params.get(k, "")) for k in keys) +
                    f" | {t.user_attrs.get('run', '')} | {seconds} | {note} |")
    return rows


def write_summary(setup: Setup, study: optuna.Study, plots: bool = True) -> dict:
    """summary.md and best.yaml (and, with plots, the two PNGs) from the study as it stands."""
    best = write_best(setup, study)
    trials = study.get_trials(deepcopy=False)
    by_state = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    base = next((t for t in trials if t.user_attrs.get("base") and t.state == TrialState.COMPLETE), None)
    spent = sum(t.duration.total_seconds() for t in trials if t.duration is not None)
    t = setup.tune
    lines = [f"# Study {setup.paths.name}", "",
             f"Base `{setup.base}`, metric {setup.cfg.metric} ({setup.direction}), folds {setup.folds}, sampler "
             f"{t.sampler}, pruner {'median' if t.prune else 'none'} (startup {t.startup_trials}); space from "
             f"{setup.source}.", "",
             f"Trials: {by_state['complete']} complete, {by_state['pruned']} pruned, {by_state['fail']} failed, "
             f"{by_state['running']} running, {by_state['waiting']} waiting (tune.trials = {t.trials}). "
             f"Time in trials: {spent:.0f} s.", ""]
    if best is not None:
        run = best.user_attrs.get("run", setup.paths.trial_exp(best.number))
        lines += [f"Best: trial {best.number}, CV {best.value:.5f} (`outputs/{run}`; config in `{setup.paths.best}`)."
                  + (f" Base values (trial {base.number}): CV {base.value:.5f}." if base is not None else ""),
                  f"Next: `make predict EXP={run}`, `make submit EXP={run}`, or copy best.yaml to configs/ and train "
                  f"every fold.", ""]
    imp = importances(study) if plots else "computed at the end of the run"
    lines += ["Parameter importances (fANOVA): " + (", ".join(f"{k} {v:.3f}" for k, v in imp.items())
                                                    if isinstance(imp, dict) else imp), ""]
    lines += trial_rows(setup, study)
    write_text(setup.paths.summary, "\n".join(lines) + "\n")
    if plots:
        plot_history(setup, study)
        if isinstance(imp, dict):
            plot_importance(setup, imp)
    return {"best_trial": None if best is None else best.number, "best_value": None if best is None else best.value,
            "best_run": None if best is None else best.user_attrs.get("run"),
            "base_value": None if base is None else base.value, "trials": by_state, "trial_seconds": round(spent, 1)}


def plot_history(setup: Setup, study: optuna.Study) -> None:
    done = complete(study)
    if not done:
        return
    values, best, pick = [t.value for t in done], [], max if setup.direction == "maximize" else min
    for v in values:
        best.append(v if not best else pick(best[-1], v))
    curves = [(values, "o", "trial CV"), (best, "-", "best so far")]
    save_curves(setup.paths.history_plot, [t.number for t in done], curves, xlabel="trial",
                ylabel=f"CV {setup.cfg.metric}", title=f"study {setup.paths.name}: optimisation history")


def plot_importance(setup: Setup, imp: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(imp)[::-1]
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.4 * len(keys)))
    ax.barh(keys, [imp[k] for k in keys])
    ax.set_xlabel("importance (fANOVA, share of the CV's variance)")
    ax.set_title(f"study {setup.paths.name}: parameter importances")
    fig.tight_layout()
    write_with(setup.paths.importance_plot, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)

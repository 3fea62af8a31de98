"""What a sweep leaves behind: the rows of its trials table, the best trial's settings as a recipe
file (``best.toml``, loadable with ``cnnlab train --recipe DIR/best.toml``), and Optuna's
optimization-history and parameter-importance plots (drawn by ``optuna.visualization.matplotlib``
on :mod:`cnnlab.figures`' Agg backend, saved through :func:`cnnlab.figures.save_figure`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cnnlab import figures
from cnnlab.storage import atomic_write
from cnnlab.training.sweep_spec import SweepSpec
from cnnlab.training.sweep_study import optuna_module

__all__ = ["trial_rows", "best_row", "best_settings", "write_best", "write_plots", "toml_document"]


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """One row per trial, in order (surplus trials, failed at once because the sweep had its number, left out).
    A retried trial's row says which trial it replaced; a failed one, what it was retried as, or its error."""
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    retried_as = {t.system_attrs["failed_trial"]: t.number for t in trials if "failed_trial" in t.system_attrs}
    rows = []
    for t in trials:
        row = {"number": t.number, "state": t.state.name, "value": t.value, "params": dict(t.params),
               "epochs_reported": len(t.intermediate_values), "run_dir": t.user_attrs.get("run_dir"),
               "host": t.user_attrs.get("host")}
        if "failed_trial" in t.system_attrs:
            row["retry_of"] = t.system_attrs["failed_trial"]
        if t.number in retried_as:
            row["retried_as"] = retried_as[t.number]
        for key in ("error", "pruned_at"):
            if key in t.user_attrs:
                row[key] = t.user_attrs[key]
        rows.append(row)
    return rows


def best_row(spec: SweepSpec, study: Any) -> dict[str, Any] | None:
    """The best complete trial: number, score, its searched values, its run directory and all its settings."""
    optuna = optuna_module()
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    return {"number": best.number, "value": best.value, "params": dict(best.params),
            "run_dir": best.user_attrs.get("run_dir"), "settings": best_settings(spec, best.params)}


def best_settings(spec: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The base's settings (its recipe's included) and the trial's values, as a recipe holds them:
    no ``recipe`` or ``out``, nothing unset (None is every optional setting's default)."""
    merged = {**spec.settings, **params}
    return {k: v for k, v in merged.items() if k not in ("recipe", "out") and v is not None}


def write_best(spec: SweepSpec, best: dict[str, Any], path: Path, folder: Path) -> None:
    head = (f"# The best trial of sweep {spec.name!r}: trial {best['number']}, {spec.metric} {best['value']:.4g}.\n"
            f"# A recipe file: cnnlab train --recipe {path}  (options given with it override its settings)\n")
    description = (f"best of sweep {spec.name} ({spec.sampler}, {spec.trials} trials): trial {best['number']}, "
                   f"{spec.metric} {best['value']:.4g}")
    measured = {"metric": spec.metric, "value": best["value"], "trial": best["number"],
                "run_dir": best["run_dir"] or "", "sweep": str(folder),
                "searched": ", ".join(sorted(best["params"]))}
    atomic_write(path, head + toml_document({"description": description, **best["settings"]}, measured))


_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string: the same escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(str(k))} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} in TOML")


def toml_document(settings: dict[str, Any], measured: dict[str, Any] | None = None) -> str:
    """``KEY = VALUE`` lines (and a ``[measured]`` table): what :mod:`cnnlab.training.recipes` reads."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in settings.items()]
    if measured:
        lines += ["", "[measured]"] + [f"{_key(k)} = {_value(v)}" for k, v in measured.items()]
    return "\n".join(lines) + "\n"


def write_plots(study: Any, history: Path, importance: Path, notes: list[str]) -> dict[str, str]:
    """Optuna's optimization history (with a complete trial) and parameter importances (with two complete
    trials in which a searched value varies); what is not drawn is said in ``notes``."""
    optuna = optuna_module()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    files: dict[str, str] = {}
    if not complete:
        notes.append("no plots: no trial completed")
        return files
    plots = optuna.visualization.matplotlib
    figures.save_figure(plots.plot_optimization_history(study).figure, history, tight=True)
    files["history"] = str(history)
    varying = [name for name in complete[0].params
               if len({json.dumps(t.params.get(name), default=str) for t in complete}) > 1]
    if len(complete) < 2 or not varying:
        notes.append(f"no importance plot: it needs at least 2 completed trials in which a searched value varies "
                     f"(have {len(complete)} completed" + (", none varying" if len(complete) >= 2 else "") + ")")
        importance.unlink(missing_ok=True)
        return files
    figures.save_figure(plots.plot_param_importances(study, params=varying).figure, importance, tight=True)
    files["importance"] = str(importance)
    return files

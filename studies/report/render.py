"""Build the report: load runs, compute settings, comparisons and claims, draw the
plots and render ``templates/report.md.j2``.

The report directory holds ``report.md``, its plots as PNG files next to it (relative
links, so the directory can be moved) and ``report.json`` with every number.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from orchestrator.rundir import atomic_write_text
from studies.report.claims import claims, diffsem_claims, tally
from studies.report.comparisons import (
    communication_rows,
    mse_rows,
    privacy_families,
    radio_rows,
    semantic_rows,
)
from studies.report.loading import (
    degraded,
    load_runs,
    provenance_groups,
    provenance_warnings,
    sweep_problems,
)
from studies.report.plots import plot_accuracy, plot_frontier, plot_gap, plot_mse
from studies.report.reference import REFERENCE_DRAWS, subcarrier_snr_offset_db
from studies.report.statistics import INTERVAL_METHOD, Estimate, group_settings

TEMPLATE = "report.md.j2"
MSE_NOTE = (
    "Measured: the receiver's estimate against the true weighted sum of what the users "
    "sent, scored after the run from the nodes' audit logs (orchestrator.mixup_error), per "
    "real of unit-power payloads, payload and label tail apart. Predicted: the "
    "power-control policy's MSE on the *estimated* channels and noise. Both averaged "
    "linearly over slots and rounds, then over seeds; the verdict rests on the measured."
)


def _cell(value: Any) -> str:
    return str(value).replace("|", "/").replace("\n", " ")


def _est(value: Estimate, digits: int = 3, scale: float = 1.0) -> str:
    return value.format(digits, scale)


def _mean(value: Estimate) -> str:
    return f"{value.mean:.3f}" if value.measured else "n/a"


def _sizes(counts: dict[int, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def environment() -> jinja2.Environment:
    """The Jinja2 environment with the report's filters (``est``, ``mean``, ``cell``,
    ``sizes``); templates come from this package's ``templates/``."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("studies.report", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(est=_est, mean=_mean, cell=_cell, sizes=_sizes)
    return env


def jsonable(value: Any) -> Any:
    """``value`` with estimates as dicts, tuples as lists, non-finite floats as None."""
    if isinstance(value, Estimate):
        return jsonable(value.as_dict())
    if hasattr(value, "as_dict"):
        return jsonable(value.as_dict())
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.floating | np.integer | np.bool_):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def build_report(paths: Sequence[str | Path], out_dir: str | Path) -> Path:
    """Write ``report.md``, its plots and ``report.json`` into ``out_dir``; returns the
    Markdown path.

    Raises:
        FileNotFoundError: no finished run among ``paths``.
    """
    runs = load_runs(paths)
    if not runs:
        raise FileNotFoundError(f"no finished run directory (config + summary) in {list(paths)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings, varying = group_settings(runs)
    targets = {s.get("experiment.target_accuracy") for s in settings}
    comm, families = communication_rows(settings), privacy_families(settings)
    mse, radios = mse_rows(settings), radio_rows(settings)
    claim_rows = claims(settings)
    semantic, semantic_claims = semantic_rows(settings), diffsem_claims(settings)
    plots = {
        "accuracy": plot_accuracy(
            settings, targets.pop() if len(targets) == 1 else None, out / "accuracy.png"
        ),
        "frontier": plot_frontier(settings, out / "privacy_utility_frontier.png"),
        "mse": plot_mse(mse, out / "mse_vs_snr.png"),
        "gap": plot_gap(semantic, out / "accuracy_gap_vs_snr.png"),
    }
    plot_names = {k: v.name if v is not None else None for k, v in plots.items()}
    warnings = [f"`{r.path.name}`: {why}" for r in runs if (why := degraded(r))]
    warnings += [f"did not finish: {p}" for p in sweep_problems(paths)]
    provenance = provenance_groups(runs)
    warnings += provenance_warnings(provenance)
    context = {
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "interval_method": INTERVAL_METHOD,
        "runs": runs,
        "settings": settings,
        "varying": varying,
        "claims": claim_rows,
        "tally": tally(claim_rows),
        "communication": comm,
        "privacy": families,
        "mse": mse,
        "mse_note": MSE_NOTE,
        "reference_draws": REFERENCE_DRAWS,
        "subcarrier_offset_db": subcarrier_snr_offset_db(),
        "radios": radios,
        "membership": [s for s in settings if s.stats["membership.auc"].measured],
        "semantic": semantic,
        "semantic_claims": semantic_claims,
        "semantic_tally": tally(semantic_claims),
        "provenance": provenance,
        "plots": plot_names,
        "warnings": warnings,
    }
    path = out / "report.md"
    atomic_write_text(path, environment().get_template(TEMPLATE).render(context))
    data = {
        "interval_method": INTERVAL_METHOD,
        "runs": [str(r.path) for r in runs],
        "varying": varying,
        "settings": [{"label": s.label, "fields": s.fields, "stats": s.stats} for s in settings],
        "claims": claim_rows,
        "tally": tally(claim_rows),
        "diffsem_claims": semantic_claims,
        "diffsem_tally": tally(semantic_claims),
        "semantic": semantic,
        "communication": comm,
        "mse": mse,
        "radios": radios,
        "provenance": provenance,
        "plots": {k: v for k, v in plot_names.items() if v is not None},
        "warnings": warnings,
    }
    atomic_write_text(out / "report.json", json.dumps(jsonable(data), indent=2, default=str))
    return path

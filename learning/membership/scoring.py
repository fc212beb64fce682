"""Membership scores to figures, as LiRA and ML Privacy Meter report them.

A membership attack outputs one score per challenge sample (higher: more likely a
member). Figures come from scikit-learn's ROC utilities over all thresholds: ROC AUC
and the true-positive rate at 0.1% and 1% false-positive rate (the largest TPR whose
FPR does not exceed the target, as Carlini et al.'s code reads it). Each figure comes
with its chance level - what a guess independent of the model scores (AUC 0.5, TPR at
x% FPR = x%) - and ``min_fpr``: one non-member over their count, the smallest non-zero
FPR the challenge set resolves (a TPR at a target FPR below it is the TPR at zero
false positives).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from learning.figures import save_figure

#: (figure name, target FPR) of the low-FPR operating points
LOW_FPR_POINTS: tuple[tuple[str, float], ...] = (
    ("tpr_at_0_1pct_fpr", 0.001),
    ("tpr_at_1pct_fpr", 0.01),
)


def _check(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    m = np.asarray(is_member).reshape(-1)
    if s.shape != m.shape or s.size == 0:
        raise ValueError(
            f"scores {s.shape} and is_member {m.shape} must be equal non-empty vectors"
        )
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or inf")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise ValueError("is_member must be boolean or 0/1")
        m = m.astype(bool)
    if m.all() or not m.any():
        raise ValueError("need both members and non-members to score an attack")
    return s, m


def roc(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve ``(fpr, tpr)`` of membership scores (every threshold kept)."""
    s, m = _check(scores, is_member)
    fpr, tpr, _ = roc_curve(m, s, drop_intermediate=False)
    return fpr, tpr


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """The largest TPR on the curve whose FPR is at most ``target``."""
    ok = np.flatnonzero(np.asarray(fpr) <= target)
    return float(np.max(np.asarray(tpr)[ok])) if ok.size else 0.0


def roc_figures(scores: np.ndarray, is_member: np.ndarray) -> dict[str, float]:
    """AUC and TPR at 0.1% / 1% FPR, each with ``<name>_chance``, plus ``min_fpr``.

    Args:
        scores: ``(N,)`` membership scores, higher = member.
        is_member: ``(N,)`` booleans (or 0/1).
    """
    s, m = _check(scores, is_member)
    fpr, tpr = roc(s, m)
    figures = {"auc": float(roc_auc_score(m, s)), "auc_chance": 0.5}
    for name, target in LOW_FPR_POINTS:
        figures[name] = tpr_at_fpr(fpr, tpr, target)
        figures[f"{name}_chance"] = target
    figures["min_fpr"] = 1.0 / float((~m).sum())
    return figures


def _axes(size: tuple[float, float], ncols: int = 1):
    """A figure and its axis (``ncols`` > 1: a row of axes) on the Agg back-end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=size)


def plot_roc(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    title: str = "membership inference",
    aucs: dict[str, float] | None = None,
) -> Path:
    """Log-log ROC curves (one per attack) with the chance diagonal; writes a PNG."""
    floor = 1e-4
    figure, axis = _axes((5.5, 5))
    for name, (fpr, tpr) in curves.items():
        label = name if aucs is None or name not in aucs else f"{name} (AUC {aucs[name]:.3f})"
        axis.plot(np.maximum(fpr, floor), np.maximum(tpr, floor), label=label)
    grid = np.logspace(np.log10(floor), 0, 50)
    axis.plot(grid, grid, "k--", lw=1, label="chance")
    for _, target in LOW_FPR_POINTS:
        axis.axvline(target, color="grey", lw=0.5, ls=":")
    axis.set(xscale="log", yscale="log", xlim=(floor, 1), ylim=(floor, 1.05))
    axis.set(xlabel="false-positive rate", ylabel="true-positive rate", title=title)
    axis.legend(fontsize=7, loc="lower right")
    return save_figure(figure, path)


def plot_privacy_accuracy(
    points: dict[str, tuple[float, dict[str, float]]],
    path: str | Path,
    title: str = "privacy vs accuracy",
) -> Path:
    """The strongest attack's AUC and TPR at 0.1% / 1% FPR against test accuracy, one
    labelled point per model (``points``: name -> (accuracy, its
    :func:`roc_figures`)), each panel with the figure's chance level; writes a PNG."""
    panels = [("auc", "AUC", "linear")] + [
        (name, f"TPR at {100 * target:g}% FPR", "log") for name, target in LOW_FPR_POINTS
    ]
    figure, axes = _axes((5 * len(panels), 4.2), len(panels))
    for axis, (key, label, scale) in zip(axes, panels, strict=True):
        for name, (accuracy, figures) in points.items():
            value = max(figures[key], 1e-4) if scale == "log" else figures[key]
            axis.scatter([accuracy], [value])
            axis.annotate(
                name, (accuracy, value), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
        chance = next(iter(points.values()))[1][f"{key}_chance"]
        axis.axhline(chance, color="k", ls="--", lw=1, label=f"chance ({chance:g})")
        axis.set(xlabel="test accuracy", ylabel=f"strongest attack: {label}", yscale=scale)
        axis.legend(fontsize=8)
    axes[0].set_ylim(0.4, 1.02)
    figure.suptitle(title)
    return save_figure(figure, path)

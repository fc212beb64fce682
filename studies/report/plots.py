"""The report's figures, as PNG files next to ``report.md``.

Error bars and bands are the 95% Student-t confidence intervals over seeds
(:mod:`studies.report.statistics`); a setting with one seed has none.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from learning.figures import save_figure
from studies.report.reference import closed_form_mse
from studies.report.statistics import Estimate, Setting, mean_curve, short, show


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bar(value: Estimate) -> float:
    """Error-bar half-width (0 when there is no interval)."""
    return value.half_width if value.n > 1 and np.isfinite(value.half_width) else 0.0


def plot_accuracy(settings: Sequence[Setting], target: float | None, path: Path) -> Path:
    """Mean accuracy against cumulative payload channel uses, one curve per setting."""
    plt = _plt()
    figure, axis = plt.subplots(figsize=(8, 5))
    for s in settings:
        uses, acc, half = mean_curve(s)
        axis.plot(uses, acc, marker="o", ms=3, label=f"{s.label} (n={s.stats['n']})")
        axis.fill_between(uses, acc - half, acc + half, alpha=0.2)
    if target is not None:
        axis.axhline(target, color="k", ls=":", label=f"target {target:g}")
    axis.set_xscale("log")
    axis.set(xlabel="payload channel uses (symbols, cumulative)", ylabel="test accuracy")
    axis.set_title("accuracy vs channel uses (mean, 95% CI over seeds)")
    axis.legend(fontsize=7)
    return save_figure(figure, path)


def plot_frontier(settings: Sequence[Setting], path: Path) -> Path | None:
    """Attack success against legitimate accuracy (chance as a black tick), with the
    Pareto frontier; None when no setting ran attacks."""
    specs = (
        ("model_inversion.task_accuracy", "inversion task accuracy"),
        ("label_inference.exact_set_accuracy", "label inference (exact set)"),
    )
    usable = [s for s in settings if any(s.stats[k].measured for k, _ in specs)]
    if not usable:
        return None
    plt = _plt()
    figure, axes = plt.subplots(1, 2, figsize=(12, 5))
    for axis, (key, name) in zip(axes, specs, strict=True):
        points = []
        for s in usable:
            acc, success = s.stats["final_accuracy"], s.stats[key]
            if not success.measured:
                continue
            axis.errorbar(
                acc.mean,
                success.mean,
                xerr=_bar(acc),
                yerr=_bar(success),
                fmt="o",
                capsize=3,
                label=s.label,
            )
            axis.plot(acc.mean, s.stats[f"{key}_chance"].mean, "k_", ms=14)
            points.append((acc.mean, success.mean))
        front = pareto(points)
        if len(front) > 1:
            axis.plot(*zip(*front, strict=True), "k--", lw=1, label="frontier")
        axis.set(xlabel="legitimate test accuracy", ylabel=f"attack success: {name}")
        axis.set(xlim=(0, 1.02), ylim=(0, 1.02))
        axis.set_title(f"{name} (black tick: chance)")
        if points:
            axis.legend(fontsize=6)
        else:  # e.g. label inference on semantic links, which send no label tail to it
            axis.text(0.5, 0.5, "not measured by these runs", ha="center", va="center")
    return save_figure(figure, path)


def pareto(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated (higher accuracy and lower attack success is better)."""
    front = [p for p in points if not any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in points)]
    return sorted(front)


def plot_mse(rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Mixup MSE per setting against SNR: each MSE figure of the rows (``figures``:
    row key -> legend name, e.g. measured and predicted) as points with CIs, the closed
    form at the per-subcarrier SNR as a line. None without rows."""
    if not rows:
        return None
    plt = _plt()
    series: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        series[r["series"]].append(r)
    figure, axis = plt.subplots(figsize=(8, 5))
    markers = ("o", "s", "^")
    for i, (key, members) in enumerate(sorted(series.items(), key=lambda kv: str(kv[0]))):
        members = sorted(members, key=lambda r: r["snr_db"])
        color = f"C{i % 10}"
        label = ", ".join(f"{short(n)}={show(v)}" for n, v in key)
        snr = [r["snr_db"] for r in members]
        for marker, (figure_key, name) in zip(markers, members[0]["figures"].items(), strict=False):
            values = [r[figure_key] for r in members]
            axis.errorbar(
                snr,
                [v.mean for v in values],
                yerr=[_bar(v) for v in values],
                fmt=marker,
                color=color,
                mfc="none" if marker != "o" else color,
                capsize=3,
                label=f"{name}: {label}",
            )
        grid = np.linspace(min(snr) - 2, max(snr) + 2, 25)
        fields = dict(key)
        reference = [
            closed_form_mse(
                fields.get("channel.power_control", "mmse"),
                members[0]["group_sizes"],
                g + members[0]["subcarrier_offset_db"],
                fields.get("channel.fading", "rayleigh"),
                fields.get("channel.mixing", "equal"),
                draws=4000,
            )
            for g in grid
        ]
        axis.plot(grid, 10 * np.log10(reference), "-", color=color, alpha=0.7)
    axis.plot([], [], "k-", label="closed form E_h[MSE] (phy.power), per-subcarrier SNR")
    axis.set(xlabel="SNR (dB)", ylabel="mixup MSE (dB, per complex symbol)")
    axis.set_title("mixup MSE vs SNR (points: runs, 95% CI over seeds; lines: closed form)")
    axis.legend(fontsize=6)
    return save_figure(figure, path)


def plot_gap(rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """DiffSem's privacy figure against the legitimate SNR: one panel per semantic
    method (:func:`studies.report.comparisons.semantic_rows`), the accuracy gap in
    points (legitimate accuracy minus the eavesdropper's inversion task accuracy, mean
    and 95% CI over seeds) against the legitimate SNR (dB), one line per eavesdropper
    SNR offset (eavesdropper minus legitimate, dB). None without rows."""
    if not rows:
        return None
    plt = _plt()
    methods = sorted({r["method"] for r in rows})
    offsets = sorted({r["offset_db"] for r in rows})
    figure, axes = plt.subplots(
        1, len(methods), figsize=(5 * len(methods), 4.5), sharey=True, squeeze=False
    )
    for axis, method in zip(axes[0], methods, strict=True):
        for i, offset in enumerate(offsets):
            line = sorted(
                (r for r in rows if r["method"] == method and r["offset_db"] == offset),
                key=lambda r: r["legit_snr_db"],
            )
            if not line:
                continue
            axis.errorbar(
                [r["legit_snr_db"] for r in line],
                [100 * r["gap"].mean for r in line],
                yerr=[100 * _bar(r["gap"]) for r in line],
                fmt="o-",
                color=f"C{i % 10}",
                capsize=3,
                label=f"eavesdropper {offset:+g} dB",
            )
        axis.axhline(0.0, color="k", lw=0.8)
        axis.set(xlabel="legitimate SNR (dB)", title=method)
        axis.legend(fontsize=7)
    axes[0][0].set_ylabel("accuracy gap (points): legitimate - eavesdropper inversion")
    figure.suptitle("accuracy gap vs legitimate SNR (mean, 95% CI over seeds)")
    return save_figure(figure, path)

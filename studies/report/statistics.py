"""Per-run figures, settings (runs equal but for their seed) and estimates over seeds.

Every figure over seeds is an :class:`Estimate`: the mean with a two-sided 95% Student-t
confidence interval over the seeds (``mean +- t_{0.975, n-1} s / sqrt(n)``, ``s`` the
sample standard deviation). One seed gives no interval (``lo = -inf``, ``hi = +inf``),
so every verdict resting on it is inconclusive. Differences between two settings are
paired by seed (the same seed draws the same data split and channels), so the interval
is the Student-t interval of the per-seed differences.

The per-run table is a :class:`pandas.DataFrame` (one row per run); settings group it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from orchestrator.metrics import channel_uses_to_target
from studies.report.loading import Run

CONFIDENCE = 0.95
INTERVAL_METHOD = "two-sided 95% Student-t confidence interval over seeds"

#: fields that never distinguish settings
IGNORED = {"experiment.seed", "experiment.name", "experiment.out_dir"}
#: fields that do not change training or the legitimate channel (the eavesdropper is
#: passive and draws its own randomness): ignored when pairing settings and in labels
NEUTRAL = (
    {"attacks.enabled", "attacks.eavesdropper", "attacks.eavesdropper_snr_db"}
    | {"users.node_processes", "attacks.membership"}
    | {"experiment.eval_every"}
    | {
        f"link.{name}"
        for name in ("curve", "heartbeat_s", "liveness_s", "request_timeout_s", "retries")
    }
)
#: neutral fields still named in setting labels when they vary (settings that differ
#: only in them are distinct settings and must be told apart)
LABELLED = {"attacks.eavesdropper_snr_db"}
#: varying fields named first in setting labels
LABEL_ORDER = [
    "method.name",
    "method.link",
    "users.grouping",
    "users.group_size",
    "channel.snr_db",
    "channel.power_control",
    "channel.radio",
    "model.mode",
    "data.split",
    "data.alpha",
    "data.labels_per_user",
    "attacks.eavesdropper_snr_db",
]
#: (attack, figure) pairs the report reads from ``summary.privacy.attacks``
ATTACK_FIGURES = (
    ("model_inversion", "task_accuracy"),
    ("model_inversion", "psnr_db"),
    ("model_inversion", "ssim"),
    ("label_inference", "exact_set_accuracy"),
    ("label_inference", "per_user_accuracy"),
)


@dataclass(frozen=True)
class Estimate:
    """A figure over seeds: mean, sample std, count and the confidence interval.

    ``n == 0``: nothing measured (all nan). ``n == 1``: ``lo = -inf``, ``hi = inf``."""

    mean: float
    std: float
    n: int
    lo: float
    hi: float

    @property
    def measured(self) -> bool:
        return self.n > 0 and math.isfinite(self.mean)

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def format(self, digits: int = 3, scale: float = 1.0) -> str:
        """``mean ± half-width`` of the interval, ``(n=1)`` when there is none."""
        if not self.measured:
            return "n/a"
        mean, half = self.mean * scale, self.half_width * scale
        grouped = abs(mean) >= 1e4
        text = f"{mean:,.0f}" if grouped else f"{mean:.{digits}f}"
        if self.n < 2:
            return f"{text} (n=1)"
        return f"{text} ± {half:,.0f}" if grouped else f"{text} ± {half:.{digits}f}"

    def as_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "std": self.std, "n": self.n, "lo": self.lo, "hi": self.hi}


def estimate(values: Iterable[float | None]) -> Estimate:
    """:class:`Estimate` over the finite ``values`` (None and nan are left out)."""
    finite = np.array([float(v) for v in values if v is not None and math.isfinite(float(v))])
    n = len(finite)
    if n == 0:
        return Estimate(math.nan, math.nan, 0, math.nan, math.nan)
    mean = float(finite.mean())
    if n == 1:
        return Estimate(mean, 0.0, 1, -math.inf, math.inf)
    std = float(finite.std(ddof=1))
    half = float(scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
    return Estimate(mean, std, n, mean - half, mean + half)


# --------------------------------------------------------------------------- per run


def to_target(metrics: Sequence[dict[str, Any]], target: float) -> dict[str, Any] | None:
    """The first metrics line whose accuracy reaches ``target`` (None: never)."""
    return next((m for m in metrics if (m.get("accuracy") or 0.0) >= target), None)


def mean_db(values: Iterable[float | None]) -> float:
    """Mean of dB values taken in linear scale, in dB (nan if none is finite)."""
    linear = [10 ** (v / 10) for v in values if v is not None and math.isfinite(v)]
    return 10 * math.log10(float(np.mean(linear))) if linear else math.nan


def predicted_mse_db(metrics: Sequence[dict[str, Any]]) -> float:
    """The power policy's predicted mixup MSE over rounds (linear mean), in dB."""
    return mean_db(m.get("predicted_mixup_mse_db") for m in metrics)


def group_size_counts(metrics: Sequence[dict[str, Any]]) -> dict[int, int]:
    """Group size -> number of groups over all rounds (from the metrics' ``groups``)."""
    counts: dict[int, int] = defaultdict(int)
    for m in metrics:
        for group in m.get("groups") or []:
            counts[len(group)] += 1
    return dict(counts)


def uses_at(run: Run, target: float, pilots: bool = False) -> float | None:
    """Payload channel uses (plus pilots) when ``run`` first reaches ``target``, at the
    finest evaluations its metrics hold (:func:`orchestrator.metrics.channel_uses_to_target`:
    the within-round channel-use grid when ``experiment.eval_channel_uses`` is set)."""
    reached = channel_uses_to_target(run.metrics, target)
    if reached["channel_uses"] is None:
        return None
    return reached["channel_uses"] + ((reached["pilot_channel_uses"] or 0) if pilots else 0)


def rounds_at(run: Run, target: float) -> float | None:
    m = to_target(run.metrics, target)
    return None if m is None else m["round"] + 1


def attack_figure(run: Run, attack: str, figure: str) -> float | None:
    return run.summary.get("privacy", {}).get("attacks", {}).get(attack, {}).get(figure)


def eavesdropper_figure(run: Run, attack: str, figure: str) -> float | None:
    """An attack figure on the passive eavesdropper radio's view
    (``summary.privacy.eavesdropper.attacks``; None when the run had no eavesdropper)."""
    eavesdropper = run.summary.get("privacy", {}).get("eavesdropper") or {}
    return eavesdropper.get("attacks", {}).get(attack, {}).get(figure)


def eavesdropper_gap(run: Run) -> float | None:
    """Legitimate final accuracy minus the eavesdropper's model-inversion task accuracy
    (fractions; None when either is missing): DiffSem's privacy figure (issue 11)."""
    attacker = eavesdropper_figure(run, "model_inversion", "task_accuracy")
    if not run.metrics or attacker is None or run.metrics[-1].get("accuracy") is None:
        return None
    return float(run.metrics[-1]["accuracy"]) - float(attacker)


#: membership-inference figures of the strongest attack on the final model
#: (``summary.privacy.membership.best``, :mod:`orchestrator.membership_audit`)
MEMBERSHIP_FIGURES = ("auc", "tpr_at_0_1pct_fpr", "tpr_at_1pct_fpr")


def membership_figure(run: Run, figure: str) -> float | None:
    membership = run.summary.get("privacy", {}).get("membership") or {}
    return (membership.get("best") or {}).get(figure)


def run_figures(run: Run) -> dict[str, Any]:
    """The scalar figures of one run (None or nan where it did not measure them).

    MSE figures (dB, linear mean over rounds): ``predicted_mse_db`` (the power policy's
    prediction on the estimated channels), ``measured_mse_db`` and
    ``measured_label_mse_db`` (the receiver's estimate against the true weighted sum,
    payload and label tail, :mod:`orchestrator.mixup_error`)."""
    metrics = run.metrics
    target = run.config.experiment.target_accuracy
    reached = to_target(metrics, target)
    figures: dict[str, Any] = {
        "seed": run.seed,
        "final_accuracy": metrics[-1]["accuracy"] if metrics else None,
        "max_accuracy": max((m["accuracy"] for m in metrics), default=None),
        "reached": reached is not None,
        "channel_uses_to_target": uses_at(run, target),
        "total_channel_uses_to_target": uses_at(run, target, pilots=True),
        "rounds_to_target": rounds_at(run, target),
        "digital_bytes_to_target": reached.get("digital_bytes") if reached else None,
        "round_channel_uses": (
            float(np.mean([m["round_channel_uses"] for m in metrics])) if metrics else None
        ),
        "predicted_mse_db": predicted_mse_db(metrics),
        "measured_mse_db": mean_db(m.get("measured_mixup_mse_db") for m in metrics),
        "measured_label_mse_db": mean_db(m.get("measured_label_mse_db") for m in metrics),
    }
    for attack, figure in ATTACK_FIGURES:
        figures[f"{attack}.{figure}"] = attack_figure(run, attack, figure)
        figures[f"{attack}.{figure}_chance"] = attack_figure(run, attack, f"{figure}_chance")
    for attack, figure in ATTACK_FIGURES:
        for name in (figure, f"{figure}_chance"):
            figures[f"eavesdropper.{attack}.{name}"] = eavesdropper_figure(run, attack, name)
    figures["eavesdropper_gap"] = eavesdropper_gap(run)
    for figure in MEMBERSHIP_FIGURES:
        figures[f"membership.{figure}"] = membership_figure(run, figure)
        figures[f"membership.{figure}_chance"] = membership_figure(run, f"{figure}_chance")
    return figures


# --------------------------------------------------------------------------- settings


@dataclass
class Setting:
    """Runs that differ only in their seed.

    Attributes:
        key: the (field, value) pairs that identify the setting.
        fields: dotted field -> value.
        runs: its runs.
        label: the varying fields, e.g. ``grouping=label_aware, snr_db=20``.
        frame: one row per run (index: seed), columns from :func:`run_figures`.
        stats: figure name -> :class:`Estimate` over seeds, plus ``n``, ``seeds``,
            ``reached``, ``target_accuracy`` and ``group_sizes``.
    """

    key: tuple
    fields: dict[str, Any]
    runs: list[Run]
    label: str = ""
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    stats: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def by_seed(self) -> dict[int, Run]:
        return {r.seed: r for r in self.runs}


def short(name: str) -> str:
    """The last component of a dotted field name."""
    return name.split(".")[-1]


def show(value: Any) -> str:
    """A field value as shown in labels."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "+".join(map(str, value)) or "none"
    return str(value)


def runs_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run: :func:`run_figures` plus its path."""
    return pd.DataFrame([{**run_figures(r), "path": str(r.path)} for r in runs])


def group_settings(runs: Sequence[Run]) -> tuple[list[Setting], list[str]]:
    """Settings (runs equal but for their seed) and the fields that vary between them."""
    all_fields = [r.fields for r in runs]
    names = sorted({n for f in all_fields for n in f} - IGNORED)
    varying = [n for n in names if len({f.get(n) for f in all_fields}) > 1]
    varying.sort(key=lambda n: (LABEL_ORDER.index(n) if n in LABEL_ORDER else len(LABEL_ORDER), n))
    shown = [n for n in varying if n not in NEUTRAL - LABELLED] or varying
    by_key: dict[tuple, Setting] = {}
    for run, fields in zip(runs, all_fields, strict=True):
        key = tuple((n, fields.get(n)) for n in names)
        if key not in by_key:
            label = ", ".join(f"{short(n)}={show(fields.get(n))}" for n in shown) or "all"
            by_key[key] = Setting(key, {n: fields.get(n) for n in names}, [], label)
        by_key[key].runs.append(run)
    settings = sorted(by_key.values(), key=lambda s: s.label)
    for setting in settings:
        setting.frame = runs_frame(setting.runs).set_index("seed", drop=False)
        setting.stats = setting_stats(setting)
    return settings, varying


def setting_stats(setting: Setting) -> dict[str, Any]:
    """:class:`Estimate` of every numeric figure of the setting's frame, and counts."""
    frame = setting.frame
    stats: dict[str, Any] = {
        name: estimate(pd.to_numeric(frame[name], errors="coerce"))
        for name in frame.columns
        if name not in ("seed", "path", "reached")
    }
    stats.update(
        n=len(frame),
        seeds=sorted(int(s) for s in frame["seed"]),
        reached=int(frame["reached"].sum()),
        target_accuracy=setting.get("experiment.target_accuracy"),
        group_sizes=group_size_counts([m for r in setting.runs for m in r.metrics]),
    )
    return stats


def paired(a: Setting, b: Setting, figure: Callable[[Run, Run], float | None]) -> Estimate:
    """:class:`Estimate` of ``figure(run_a, run_b)`` over the seeds both settings ran."""
    runs_a, runs_b = a.by_seed(), b.by_seed()
    return estimate(figure(runs_a[s], runs_b[s]) for s in sorted(set(runs_a) & set(runs_b)))


def mean_curve(setting: Setting) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(channel uses, mean accuracy, CI half-width of the accuracy) per round over the
    setting's seeds (rounds all seeds reached)."""
    n = min(len(r.metrics) for r in setting.runs)
    uses = np.array([[r.metrics[i]["channel_uses"] for i in range(n)] for r in setting.runs])
    acc = np.array([[r.metrics[i]["accuracy"] for i in range(n)] for r in setting.runs])
    half = np.array([estimate(acc[:, i]).half_width for i in range(n)])
    return uses.mean(axis=0), acc.mean(axis=0), np.where(np.isfinite(half), half, 0.0)


def matches(a: Setting, b: Setting, free: set[str]) -> bool:
    """Equal in every field but ``free`` and the :data:`NEUTRAL` ones."""
    return all(a.fields.get(n) == b.fields.get(n) for n in a.fields if n not in free | NEUTRAL)

"""Comparisons between settings that the claims rest on, each an :class:`Estimate`
over seeds (paired by seed where two settings are compared).

* :func:`communication_rows`: label-aware OAM vs the orthogonal baseline, everything
  else equal: channel uses to the target accuracy, the saving, the accuracy gap;
* :func:`privacy_families`: settings that differ only in the grouping policy;
* :func:`mse_rows`: mixup MSE against the closed form per setting;
* :func:`radio_rows`: settings that differ only in the radio back-end.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from studies.report.reference import closed_form_mse, subcarrier_snr_offset_db
from studies.report.statistics import (
    NEUTRAL,
    Estimate,
    Setting,
    estimate,
    matches,
    mean_curve,
    paired,
    rounds_at,
    uses_at,
)


def _ratio_saving(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else 1 - a / b


def communication_rows(settings: Sequence[Setting]) -> list[dict[str, Any]]:
    """Label-aware OAM (groups > 1) vs the orthogonal baseline, everything else equal."""
    rows = []
    free = {"users.grouping", "users.group_size"}
    for oam in settings:
        if oam.get("users.grouping") != "label_aware" or oam.get("users.group_size") == 1:
            continue
        for base in settings:
            if base.get("users.grouping") == "orthogonal" and matches(oam, base, free):
                rows.append(communication(oam, base))
    return rows


def communication(oam: Setting, base: Setting) -> dict[str, Any]:
    """Channel uses of ``oam`` and ``base`` to a common accuracy target, and the saving.

    The target is the configured one when every seed of both reached it; otherwise the
    best accuracy both mean curves reach (noted in ``target_note``)."""
    target = oam.get("experiment.target_accuracy")
    row: dict[str, Any] = {"oam": oam.label, "baseline": base.label, "target": target}
    row["target_note"] = None
    if oam.stats["reached"] < oam.stats["n"] or base.stats["reached"] < base.stats["n"]:
        best = min(mean_curve(oam)[1].max(), mean_curve(base)[1].max())
        fallback = math.floor(100 * best) / 100
        row["target_note"] = (
            f"the configured target {target:.2f} was not reached by every seed; "
            f"compared at {fallback:.2f}, the best accuracy both mean curves reach"
        )
        target = row["target"] = fallback
    row["oam_channel_uses"] = estimate(uses_at(r, target) for r in oam.runs)
    row["baseline_channel_uses"] = estimate(uses_at(r, target) for r in base.runs)
    row["saving"] = paired(
        oam, base, lambda a, b: _ratio_saving(uses_at(a, target), uses_at(b, target))
    )
    row["saving_with_pilots"] = paired(
        oam,
        base,
        lambda a, b: _ratio_saving(uses_at(a, target, True), uses_at(b, target, True)),
    )
    row["n_oam"], row["n_baseline"] = oam.stats["n"], base.stats["n"]
    row["per_round_ratio"] = (
        oam.stats["round_channel_uses"].mean / base.stats["round_channel_uses"].mean
    )
    row["rounds_oam"] = estimate(rounds_at(r, target) for r in oam.runs)
    row["rounds_baseline"] = estimate(rounds_at(r, target) for r in base.runs)
    row["final_accuracy_oam"] = oam.stats["final_accuracy"]
    row["final_accuracy_baseline"] = base.stats["final_accuracy"]
    row["accuracy_gap"] = paired(
        oam, base, lambda a, b: a.metrics[-1]["accuracy"] - b.metrics[-1]["accuracy"]
    )
    return row


def privacy_families(settings: Sequence[Setting]) -> list[list[Setting]]:
    """Groups of settings equal in everything but ``users.grouping`` (two policies or
    more), each sorted by policy name."""
    groups: dict[tuple, list[Setting]] = defaultdict(list)
    for s in settings:
        key = tuple((n, v) for n, v in s.fields.items() if n not in {"users.grouping"} | NEUTRAL)
        groups[key].append(s)
    return [
        sorted(members, key=lambda s: str(s.get("users.grouping")))
        for members in groups.values()
        if len({s.get("users.grouping") for s in members}) > 1
    ]


def mse_rows(settings: Sequence[Setting]) -> list[dict[str, Any]]:
    """Mixup MSE against the closed form for every setting that recorded one: the
    measured payload and label-tail MSE and the predicted MSE (Estimates, dB), the
    closed form at ``snr_db`` and at the per-subcarrier SNR, and ``gap_db``, the per-seed
    measured payload MSE minus the per-subcarrier closed form (exact up to
    ``REFERENCE_DRAWS`` sampling)."""
    rows = []
    for s in settings:
        measured, predicted = s.stats["measured_mse_db"], s.stats["predicted_mse_db"]
        if not (measured.measured or predicted.measured) or not s.stats["group_sizes"]:
            continue
        offset = subcarrier_snr_offset_db(s.get("channel.sample_rate_hz"))
        args = (s.get("channel.power_control"), s.stats["group_sizes"])
        fading = (s.get("channel.fading"), s.get("channel.mixing"))
        nominal = closed_form_mse(*args, s.get("channel.snr_db"), *fading)
        reference = closed_form_mse(*args, s.get("channel.snr_db") + offset, *fading)
        reference_db = 10 * math.log10(reference) if reference > 0 else math.nan
        rows.append(
            {
                "setting": s.label,
                "snr_db": s.get("channel.snr_db"),
                "subcarrier_offset_db": offset,
                "measured_db": measured,
                "label_db": s.stats["measured_label_mse_db"],
                "predicted_db": predicted,
                "closed_form_db": reference_db,
                "closed_form_nominal_db": 10 * math.log10(nominal) if nominal > 0 else math.nan,
                "gap_db": estimate(v - reference_db for v in s.frame["measured_mse_db"]),
                "predicted_gap_db": estimate(v - reference_db for v in s.frame["predicted_mse_db"]),
                "power_control": s.get("channel.power_control"),
                "series": tuple(
                    (n, v)
                    for n, v in s.fields.items()
                    if n in ("channel.power_control", "channel.fading", "channel.mixing")
                    or n in ("users.group_size", "users.grouping", "channel.radio")
                ),
                "group_sizes": s.stats["group_sizes"],
                "figures": {"measured_db": "measured", "predicted_db": "predicted"},
            }
        )
    return rows


def radio_rows(settings: Sequence[Setting]) -> list[dict[str, Any]]:
    """Pairs of settings that differ only in ``channel.radio`` (sim vs another back-end):
    per-seed differences (other - sim) of the final accuracy and the MSE (measured when
    both recorded it, else predicted)."""
    rows = []
    for a in settings:
        for b in settings:
            if a.get("channel.radio") != "sim" or b.get("channel.radio") == "sim":
                continue
            if not matches(a, b, {"channel.radio"}):
                continue
            both = a.stats["measured_mse_db"].measured and b.stats["measured_mse_db"].measured
            mse = "measured_mse_db" if both else "predicted_mse_db"
            rows.append(
                {
                    "sim": a.label,
                    "other": b.label,
                    "radio": b.get("channel.radio"),
                    "accuracy": (a.stats["final_accuracy"], b.stats["final_accuracy"]),
                    "mse_db": (a.stats[mse], b.stats[mse]),
                    "mse_kind": mse.split("_")[0],
                    "accuracy_difference": _paired_column(b, a, "final_accuracy"),
                    "mse_difference_db": _paired_column(b, a, mse),
                }
            )
    return rows


def _paired_column(a: Setting, b: Setting, column: str) -> Estimate:
    """Per-seed ``a[column] - b[column]`` over the seeds both ran."""
    seeds = sorted(set(a.frame.index) & set(b.frame.index))
    return estimate(a.frame.at[s, column] - b.frame.at[s, column] for s in seeds)


# --------------------------------------------------------------------------- semantic links

#: method name -> the semantic link it runs (``learning.methods.diffsem``); ``diffsem``
#: runs the link its ``method.link`` option names
SEMANTIC_PEERS = {"semantic_plain": "plain", "semantic_ibal": "ibal"}


def semantic_link(setting: Setting) -> str | None:
    """The semantic link a setting ran (``"diffsem"``, ``"plain"``, ``"ibal"``), None
    for other methods."""
    name = setting.get("method.name")
    if name == "diffsem":
        return setting.get("method.link", "diffsem")
    return SEMANTIC_PEERS.get(name)


def semantic_method(setting: Setting) -> str:
    """The label of a semantic setting's method in plots and tables: its link, with the
    DiffSem receiver's conditioning and SIMix slots when they are not the defaults."""
    link = semantic_link(setting) or str(setting.get("method.name"))
    extra = []
    if link == "diffsem" and setting.get("method.conditioning", "label") != "label":
        extra.append("no label embeddings")
    if setting.get("method.slots", "orthogonal") != "orthogonal":
        extra.append(f"{setting.get('method.slots')} slots")
    return link + (f" ({', '.join(extra)})" if extra else "")


def semantic_rows(settings: Sequence[Setting]) -> list[dict[str, Any]]:
    """One row per semantic-link setting whose eavesdropper ran model inversion (issue
    11): the method label, legitimate and eavesdropper SNRs (dB) and their offset
    (eavesdropper minus legitimate), the legitimate final accuracy, the eavesdropper's
    inversion task accuracy, PSNR (dB) and SSIM (Estimates over seeds, fractions) with
    their mean chance levels, and ``gap``: per seed, legitimate minus eavesdropper task
    accuracy (fractions). Sorted by method, then SNRs."""
    rows = []
    for s in settings:
        link = semantic_link(s)
        attacker = s.stats["eavesdropper.model_inversion.task_accuracy"]
        if link is None or not attacker.measured:
            continue
        legit, eve = float(s.get("channel.snr_db")), float(s.get("attacks.eavesdropper_snr_db"))
        row: dict[str, Any] = {
            "setting": s.label,
            "method": semantic_method(s),
            "link": link,
            "legit_snr_db": legit,
            "eve_snr_db": eve,
            "offset_db": eve - legit,
            "legit_accuracy": s.stats["final_accuracy"],
            "gap": s.stats["eavesdropper_gap"],
            "n": s.stats["n"],
        }
        for figure in ("task_accuracy", "psnr_db", "ssim"):
            key = f"eavesdropper.model_inversion.{figure}"
            row[figure] = s.stats[key]
            row[f"{figure}_chance"] = s.stats[f"{key}_chance"].mean
        rows.append(row)
    return sorted(rows, key=lambda r: (r["method"], r["legit_snr_db"], r["eve_snr_db"]))


def semantic_pairs(
    settings: Sequence[Setting], link: str, baseline: str
) -> list[tuple[Setting, Setting]]:
    """(``link`` setting, ``baseline`` setting) pairs equal in everything but the method
    fields, at the same legitimate and eavesdropper SNR, both with the eavesdropper's
    inversion measured."""
    measured = [
        s for s in settings if s.stats["eavesdropper.model_inversion.task_accuracy"].measured
    ]
    free = {n for s in settings for n in s.fields if n.startswith("method.")}
    eve = "attacks.eavesdropper_snr_db"
    return [
        (a, b)
        for a in measured
        if semantic_link(a) == link
        for b in measured
        if semantic_link(b) == baseline and matches(a, b, free) and a.get(eve) == b.get(eve)
    ]

"""SIMix's claims against what a set of runs measured, each with a verdict.

A verdict rests on confidence intervals (:mod:`studies.report.statistics`), never on a
mean alone. For a claim "figure >= threshold": **holds** when the whole interval is at
or above the threshold, **does not hold** when it is wholly below, **inconclusive** when
it straddles the threshold (one seed has no interval, so it is always inconclusive).
"<=" and "within [low, high]" claims read the same way. A claim made over several
comparisons combines their verdicts: for "in every setting" claims any refutation
refutes and all must hold; for "up to" claims (SIMix's best case) one holding
comparison suffices and all must be refuted. **not measured**: the runs lack what the
claim needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from studies.report.comparisons import (
    communication_rows,
    mse_rows,
    privacy_families,
    radio_rows,
    semantic_link,
    semantic_pairs,
)
from studies.report.loading import Run
from studies.report.statistics import (
    Estimate,
    Setting,
    attack_figure,
    eavesdropper_gap,
    estimate,
    matches,
    paired,
)

HOLDS, FAILS, INCONCLUSIVE, MISSING = "holds", "does not hold", "inconclusive", "not measured"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, MISSING)

#: SIMix's communication claim: up to this fraction fewer channel uses than orthogonal
SIMIX_SAVING = 0.25
#: OAM accuracy may be at most this far below orthogonal training ("comparable")
ACCURACY_TOLERANCE = 0.02
#: an attack whose success exceeds its chance level by at most this is "at chance"
AT_CHANCE = 0.05
#: settings whose mean final accuracies differ by at most this are "at equal accuracy"
EQUAL_ACCURACY = 0.05
#: the mixup MSE must be within this many dB of the closed form
MSE_TOLERANCE_DB = 3.0
#: another radio back-end must match the simulated channel within these
RADIO_ACCURACY_TOLERANCE = 0.05
RADIO_MSE_TOLERANCE_DB = 1.0
LABEL_NOTE = (
    ". The mixed one-hot label travels with the payload (the server trains on the soft label"
    " sum_k w_k onehot(y_k)), so with known mixing weights the label multiset is readable from"
    " what the server must see: label privacy against the server needs labels kept off the air"
    " (e.g. feature mode with a label-free loss) or noisy weights"
)


@dataclass
class Claim:
    """One row of the claims table."""

    claim: str
    simix: str
    measured: str
    verdict: str
    why: str
    seeds: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


# --------------------------------------------------------------------------- verdicts


def at_least(value: Estimate, threshold: float) -> str:
    """Verdict on "value >= threshold" from its interval."""
    if not value.measured:
        return MISSING
    if value.lo >= threshold:
        return HOLDS
    if value.hi < threshold:
        return FAILS
    return INCONCLUSIVE


def at_most(value: Estimate, threshold: float) -> str:
    """Verdict on "value <= threshold" from its interval."""
    if not value.measured:
        return MISSING
    if value.hi <= threshold:
        return HOLDS
    if value.lo > threshold:
        return FAILS
    return INCONCLUSIVE


def within(value: Estimate, low: float, high: float) -> str:
    """Verdict on "low <= value <= high" from its interval."""
    if not value.measured:
        return MISSING
    if low <= value.lo and value.hi <= high:
        return HOLDS
    if value.hi < low or value.lo > high:
        return FAILS
    return INCONCLUSIVE


def _combined(verdicts: Sequence[str], decisive: str, unanimous: str) -> str:
    """The measured ``verdicts`` combined: ``decisive`` if any is, ``unanimous`` if all
    are, else inconclusive (missing when none is measured)."""
    measured = [v for v in verdicts if v != MISSING]
    if not measured:
        return MISSING
    if decisive in measured:
        return decisive
    return unanimous if all(v == unanimous for v in measured) else INCONCLUSIVE


def for_all(verdicts: Sequence[str]) -> str:
    """A claim over every comparison: refuted by one, holds when all hold."""
    return _combined(verdicts, decisive=FAILS, unanimous=HOLDS)


def for_some(verdicts: Sequence[str]) -> str:
    """A best-case claim: holds when one comparison holds, refuted when all are."""
    return _combined(verdicts, decisive=HOLDS, unanimous=FAILS)


def _interval(value: Estimate, digits: int = 3, scale: float = 1.0) -> str:
    if not value.measured:
        return "n/a"
    if value.n < 2:
        return f"{value.mean * scale:.{digits}f} (one seed: no interval)"
    mean, lo, hi = (x * scale for x in (value.mean, value.lo, value.hi))
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _pct(value: Estimate) -> str:
    return _interval(value, 1, 100) + " %" if value.measured else "n/a"


def _seeds(values: Sequence[Estimate]) -> str:
    counts = sorted({v.n for v in values if v.measured})
    if not counts:
        return "0"
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def _missing(claim: str, simix: str, what: str) -> Claim:
    return Claim(claim, simix, f"needs {what}", MISSING, "", "0")


# --------------------------------------------------------------------------- claims


def communication_claims(settings: Sequence[Setting]) -> list[Claim]:
    """ "less communication" (up to 25% fewer channel uses, best case) and "accurate
    models" (within 2 points of orthogonal training, every comparison)."""
    simix_comm = (
        "OAM with label-aware grouping needs up to 25% fewer channel uses than "
        "orthogonal transmission to train an accurate model"
    )
    simix_acc = "OAM-trained models reach accuracy comparable to orthogonal training"
    rows = communication_rows(settings)
    if not rows:
        need = "label_aware and orthogonal runs, equal otherwise"
        return [
            _missing("less communication", simix_comm, need),
            _missing("accurate models", simix_acc, need),
        ]
    parts, verdicts = [], []
    for r in rows:
        verdicts.append(at_least(r["saving"], SIMIX_SAVING))
        parts.append(
            f"{r['oam']} vs {r['baseline']}: {r['oam_channel_uses'].format(0)} vs "
            f"{r['baseline_channel_uses'].format(0)} payload channel uses to accuracy "
            f"{r['target']:.2f} (seeds reaching it {r['oam_channel_uses'].n}/{r['n_oam']} vs "
            f"{r['baseline_channel_uses'].n}/{r['n_baseline']}); saving {_pct(r['saving'])}"
            f" ({_pct(r['saving_with_pilots'])} counting pilots; a round costs "
            f"{r['per_round_ratio']:.2f}x the baseline's; rounds to target "
            f"{r['rounds_oam'].format(1)} vs {r['rounds_baseline'].format(1)})"
        )
    why = (
        f"holds when one comparison's saving interval lies at or above {SIMIX_SAVING:.0%}, "
        "does not hold when every interval lies below it"
    )
    if any(r["rounds_baseline"].measured and r["rounds_baseline"].mean == 1 for r in rows):
        why += (
            "; the baseline reached the target at its first evaluation, so its channel uses"
            " are an upper bound and the saving a lower bound"
        )
    notes = [r["target_note"] for r in rows if r["target_note"]]
    out = [
        Claim(
            "less communication",
            simix_comm,
            "; ".join(parts + notes),
            for_some(verdicts),
            why,
            _seeds([r["saving"] for r in rows]),
        )
    ]
    gaps = [r["accuracy_gap"] for r in rows]
    out.append(
        Claim(
            "accurate models",
            simix_acc,
            "; ".join(
                f"{r['oam']} minus {r['baseline']}: final accuracy "
                f"{_interval(r['accuracy_gap'])} (same rounds)"
                for r in rows
            ),
            for_all([at_least(g, -ACCURACY_TOLERANCE) for g in gaps]),
            f"holds when every accuracy-difference interval lies at or above "
            f"-{ACCURACY_TOLERANCE:g}, does not hold when one lies wholly below",
            _seeds(gaps),
        )
    )
    return out


def resistance_claims(settings: Sequence[Setting]) -> list[Claim]:
    """ "resists model inversion" / "resists label inference": on every label-aware OAM
    setting, the attack's success is at most :data:`AT_CHANCE` above its chance level."""
    oam = [
        s
        for s in settings
        if s.get("users.grouping") == "label_aware" and s.get("users.group_size", 1) > 1
    ]
    base = [s for s in settings if s.get("users.grouping") == "orthogonal"]
    out = []
    for claim, key, name in (
        ("model inversion", "model_inversion.task_accuracy", "inversion task accuracy"),
        ("label inference", "label_inference.exact_set_accuracy", "label-set exact accuracy"),
    ):
        simix = f"an attacker's {claim} on OAM observations does not succeed"
        measured_on = [s for s in oam if s.stats[key].measured]
        if not measured_on:
            out.append(_missing(f"resists {claim}", simix, "label_aware runs with attacks"))
            continue
        parts, advantages = [], []
        for s in measured_on:
            advantage = estimate(_advantage(r, key) for r in s.runs)
            advantages.append(advantage)
            text = (
                f"{s.label}: {name} {s.stats[key].format()} (chance "
                f"{s.stats[key + '_chance'].mean:.3f}), advantage {_interval(advantage)}"
            )
            twin = next(
                (b for b in base if matches(s, b, {"users.grouping", "users.group_size"})), None
            )
            if twin is not None and twin.stats[key].measured:
                text += f"; unmixed orthogonal {twin.stats[key].format()}"
            parts.append(text)
        verdict = for_all([at_most(a, AT_CHANCE) for a in advantages])
        out.append(
            Claim(
                f"resists {claim}",
                simix,
                "; ".join(parts),
                verdict,
                f"advantage = success minus chance; holds when every interval lies at or "
                f"below {AT_CHANCE:g}, does not hold when one lies wholly above"
                + (LABEL_NOTE if claim == "label inference" and verdict == FAILS else ""),
                _seeds(advantages),
            )
        )
    return out


def _advantage(run: Run, key: str) -> float | None:
    """Attack success minus its chance level (None if either is missing)."""
    attack, figure = key.split(".")
    success = attack_figure(run, attack, figure)
    chance = attack_figure(run, attack, f"{figure}_chance")
    return None if success is None or chance is None else success - chance


def leak_least_claim(settings: Sequence[Setting]) -> Claim:
    """ "label-distinct groups leak least": at equal accuracy, label-aware grouping's
    attack success is below that of random and label-identical grouping (paired
    per-seed differences, both attacks, every alternative)."""
    simix = (
        "label-aware grouping (label-distinct groups) leaks less than random or "
        "label-identical grouping"
    )
    parts, verdicts, differences, unequal = [], [], [], 0
    for family in privacy_families(settings):
        by = {s.get("users.grouping"): s for s in family}
        la = by.get("label_aware")
        others = [by[p] for p in ("random", "label_identical") if p in by]
        if la is None or not others or not la.stats["model_inversion.task_accuracy"].measured:
            continue
        accuracies = [s.stats["final_accuracy"].mean for s in [la, *others]]
        equal = max(accuracies) - min(accuracies) <= EQUAL_ACCURACY
        unequal += not equal
        texts = []
        for key, name in (
            ("model_inversion.task_accuracy", "inversion"),
            ("label_inference.exact_set_accuracy", "label set"),
        ):
            for other in others:
                diff = paired(la, other, lambda a, b, key=key: _difference(a, b, key))
                if equal:
                    verdicts.append(at_most(diff, 0.0))
                    differences.append(diff)
                texts.append(
                    f"{name} label_aware minus {other.get('users.grouping')} {_interval(diff)}"
                )
        note = "" if equal else "; not at equal accuracy, left out of the verdict"
        parts.append(
            f"[{la.label}] "
            + "; ".join(texts)
            + " (final accuracies "
            + ", ".join(
                f"{s.get('users.grouping')} {s.stats['final_accuracy'].mean:.3f}"
                for s in [la, *others]
            )
            + note
            + ")"
        )
    if not verdicts:
        claim = _missing(
            "label-distinct groups leak least",
            simix,
            "label_aware plus random and/or label_identical runs with attacks at equal accuracy",
        )
        if parts:
            claim.measured = "; ".join(parts)
        return claim
    return Claim(
        "label-distinct groups leak least",
        simix,
        "; ".join(parts),
        for_all(verdicts),
        "at equal accuracy (mean final accuracies within "
        f"{EQUAL_ACCURACY:g}), the per-seed difference label-aware minus alternative must "
        "lie at or below 0 for both attacks and every alternative; one interval wholly "
        "above 0 refutes" + (f"; {unequal} family(ies) not at equal accuracy" if unequal else ""),
        _seeds(differences),
    )


def _difference(a: Run, b: Run, key: str) -> float | None:
    """Attack success on ``a`` minus on ``b`` (None if either is missing)."""
    va, vb = attack_figure(a, *key.split(".")), attack_figure(b, *key.split("."))
    return None if va is None or vb is None else va - vb


def mse_claim(settings: Sequence[Setting]) -> Claim:
    """ "closed-form MSE-optimal scaling": the *measured* mixup error (receiver estimate
    against the true weighted sum) within :data:`MSE_TOLERANCE_DB` of the closed-form
    expectation in every MMSE setting. The predicted MSE is shown, never judged."""
    simix = "closed-form Tx-Rx scaling minimises the mixup MSE under noise"
    rows = [
        r
        for r in mse_rows(settings)
        if r["power_control"] == "mmse" and math.isfinite(r["closed_form_db"])
    ]
    if not rows:
        need = "runs with power_control = 'mmse'"
        return _missing("closed-form MSE-optimal scaling", simix, need)
    measured = [r for r in rows if r["measured_db"].measured]
    if not measured:
        claim = _missing(
            "closed-form MSE-optimal scaling",
            simix,
            "runs that record the measured mixup error (mixup_error.json; older runs only "
            "predicted it)",
        )
        return claim
    parts = [
        f"{r['setting']}: measured {r['measured_db'].format(1)} dB (label tail "
        f"{r['label_db'].format(1)} dB, predicted {r['predicted_db'].format(1)} dB) vs "
        f"closed form {r['closed_form_db']:.1f} dB, gap {_interval(r['gap_db'], 1)} dB"
        for r in sorted(measured, key=lambda r: r["snr_db"])
    ]
    return Claim(
        "closed-form MSE-optimal scaling",
        simix,
        "receiver estimate vs true weighted sum (payload reals) against E_h[closed form] "
        "at the per-subcarrier SNR: " + "; ".join(parts),
        for_all([within(r["gap_db"], -MSE_TOLERANCE_DB, MSE_TOLERANCE_DB) for r in measured]),
        f"on the measured error: holds when every gap interval lies within "
        f"±{MSE_TOLERANCE_DB:g} dB, does not hold when one lies wholly outside",
        _seeds([r["gap_db"] for r in measured]),
    )


def radio_claim(settings: Sequence[Setting]) -> Claim | None:
    """ "hardware path = simulation": another back-end matches the simulated channel
    (accuracy and MSE differences within tolerance). None without such pairs."""
    rows = radio_rows(settings)
    if not rows:
        return None
    parts, verdicts = [], []
    for r in rows:
        acc, mse = r["accuracy_difference"], r["mse_difference_db"]
        verdicts.append(within(acc, -RADIO_ACCURACY_TOLERANCE, RADIO_ACCURACY_TOLERANCE))
        if mse.measured:
            verdicts.append(within(mse, -RADIO_MSE_TOLERANCE_DB, RADIO_MSE_TOLERANCE_DB))
        parts.append(
            f"{r['other']} minus {r['sim']}: accuracy {_interval(acc)}, MSE {_interval(mse, 1)} dB"
        )
    return Claim(
        "hardware path = simulation",
        "(issue 6) virtual Plutos give the same curves as the simulated channel",
        "; ".join(parts),
        for_all(verdicts),
        f"holds when the accuracy difference lies within ±{RADIO_ACCURACY_TOLERANCE:g} and "
        f"the MSE difference within ±{RADIO_MSE_TOLERANCE_DB:g} dB",
        _seeds([r["accuracy_difference"] for r in rows]),
    )


def claims(settings: Sequence[Setting]) -> list[Claim]:
    """Every claim, in table order."""
    out = communication_claims(settings)
    out += resistance_claims(settings)
    out.append(leak_least_claim(settings))
    out.append(mse_claim(settings))
    radio = radio_claim(settings)
    if radio is not None:
        out.append(radio)
    return out


# --------------------------------------------------------------------------- DiffSem

#: DiffSem's legitimate accuracy is judged at this legitimate SNR (dB)
DIFFSEM_HIGH_SNR_DB = 23.0
DIFFSEM_BASELINES = {
    "plain": (
        "a plain task-oriented link (same encoder and classifier, no self-noise, no diffusion)"
    ),
    "ibal": "the information-bottleneck adversarial link (IBAL, Wang et al. TWC 2024)",
}


def _gap_difference(a: Run, b: Run) -> float | None:
    """Per seed: ``a``'s accuracy gap minus ``b``'s (fractions)."""
    ga, gb = eavesdropper_gap(a), eavesdropper_gap(b)
    return None if ga is None or gb is None else ga - gb


def diffsem_gap_claim(settings: Sequence[Setting], baseline: str) -> Claim:
    """ "DiffSem's gap exceeds the <baseline>'s at every SNR": for every (legitimate,
    eavesdropper) SNR pair both links ran, everything else equal, the per-seed
    difference of their gaps (legitimate accuracy minus the eavesdropper's inversion
    task accuracy) must lie above 0."""
    name = f"DiffSem's gap exceeds the {baseline} link's at every SNR"
    paper = (
        "self-noising plus the diffusion receiver widen the gap between the legitimate "
        "receiver's task accuracy and a model-inverting eavesdropper's over "
        f"{DIFFSEM_BASELINES[baseline]} (v1: +10.03 points on MNIST)"
    )
    pairs = semantic_pairs(settings, "diffsem", baseline)
    if not pairs:
        need = f"diffsem and {baseline} runs with an eavesdropper, equal otherwise"
        return _missing(name, paper, need)
    pairs.sort(key=lambda p: (p[0].get("channel.snr_db"), p[0].get("attacks.eavesdropper_snr_db")))
    parts, differences = [], []
    for a, b in pairs:
        difference = paired(a, b, _gap_difference)
        differences.append(difference)
        parts.append(
            f"{a.get('channel.snr_db'):g} / {a.get('attacks.eavesdropper_snr_db'):g} dB: gap "
            f"{a.stats['eavesdropper_gap'].format(1, 100)} vs "
            f"{b.stats['eavesdropper_gap'].format(1, 100)} points, difference "
            f"{_interval(difference, 1, 100)}"
        )
    return Claim(
        name,
        paper,
        "legitimate / eavesdropper SNR: " + "; ".join(parts),
        for_all([at_least(d, 0.0) for d in differences]),
        "gap = legitimate final accuracy minus the eavesdropper's inversion task accuracy; "
        "holds when every per-seed difference interval lies at or above 0, does not hold "
        "when one lies wholly below",
        _seeds(differences),
    )


def diffsem_accuracy_claim(settings: Sequence[Setting]) -> Claim:
    """ "DiffSem's legitimate accuracy at 23 dB within 2 points of no channel": the
    plain link (same encoder and classifier, no self-noise, no diffusion) at the highest
    legitimate SNR the runs hold (at least 23 dB), everything else equal, stands in for
    the classifier without channel; per seed, DiffSem's accuracy minus it must lie at or
    above -:data:`ACCURACY_TOLERANCE`."""
    name = f"DiffSem's legitimate accuracy at {DIFFSEM_HIGH_SNR_DB:g} dB keeps up"
    paper = (
        "DiffSem's legitimate task accuracy at high SNR is within 2 points of the same "
        "classifier without channel"
    )
    free = {n for s in settings for n in s.fields if n.startswith("method.")}
    free |= {"channel.snr_db"}
    parts, differences = [], []
    for d in settings:
        if semantic_link(d) != "diffsem" or d.get("channel.snr_db") != DIFFSEM_HIGH_SNR_DB:
            continue
        references = [
            s
            for s in settings
            if semantic_link(s) == "plain"
            and s.get("channel.snr_db") >= DIFFSEM_HIGH_SNR_DB
            and matches(d, s, free)
        ]
        if not references:
            continue
        best = max(s.get("channel.snr_db") for s in references)
        same_eve = [
            s
            for s in references
            if s.get("channel.snr_db") == best
            and s.get("attacks.eavesdropper_snr_db") == d.get("attacks.eavesdropper_snr_db")
        ]
        reference = (same_eve or [s for s in references if s.get("channel.snr_db") == best])[0]
        difference = paired(
            d, reference, lambda a, b: a.metrics[-1]["accuracy"] - b.metrics[-1]["accuracy"]
        )
        differences.append(difference)
        parts.append(
            f"[{d.label}] {d.stats['final_accuracy'].format()} vs plain link at {best:g} dB "
            f"{reference.stats['final_accuracy'].format()}, difference {_interval(difference)}"
        )
    if not differences:
        return _missing(
            name,
            paper,
            f"diffsem runs at {DIFFSEM_HIGH_SNR_DB:g} dB and plain-link runs at "
            f">= {DIFFSEM_HIGH_SNR_DB:g} dB, equal otherwise",
        )
    return Claim(
        name,
        paper,
        "; ".join(parts),
        for_all([at_least(d, -ACCURACY_TOLERANCE) for d in differences]),
        "the plain link at the highest legitimate SNR the runs hold stands in for no channel "
        f"(runs have no channel-free evaluation); holds when every per-seed difference "
        f"interval lies at or above -{ACCURACY_TOLERANCE:g}, does not hold when one lies "
        "wholly below",
        _seeds(differences),
    )


def diffsem_claims(settings: Sequence[Setting]) -> list[Claim]:
    """DiffSem's claims (issue 11), in table order; empty when no setting ran a semantic
    link."""
    if not any(semantic_link(s) is not None for s in settings):
        return []
    return [
        diffsem_gap_claim(settings, "plain"),
        diffsem_gap_claim(settings, "ibal"),
        diffsem_accuracy_claim(settings),
    ]


def tally(rows: Sequence[Claim]) -> dict[str, int]:
    """Number of claims per verdict."""
    return {v: sum(c.verdict == v for c in rows) for v in VERDICTS}

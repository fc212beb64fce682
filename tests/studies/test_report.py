"""``airmix report``: verdicts on synthetic run directories of known outcome, the
statistics under them, and the smoke sweep's report from real runs."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.special import exp1

from orchestrator.cli import main as cli_main
from phy.power import tx_rx_scaling
from studies.report import build_report
from studies.report.claims import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    MISSING,
    at_least,
    at_most,
    claims,
    for_all,
    for_some,
    within,
)
from studies.report.loading import find_run_dirs, load_runs
from studies.report.reference import closed_form_mse, subcarrier_snr_offset_db
from studies.report.statistics import estimate, group_settings, predicted_mse_db, to_target
from tests.studies.shipped import run_and_report
from tests.studies.synthetic import attacks, write_run

SEEDS = (0, 1, 2)


def verdicts(root: Path) -> dict[str, str]:
    settings, _ = group_settings(load_runs([root]))
    return {c.claim: c.verdict for c in claims(settings)}


# --------------------------------------------------------------------------- statistics


def test_estimate_is_the_student_t_interval_and_one_seed_has_none():
    values = [1.0, 2.0, 4.0, None, float("nan")]
    e = estimate(values)
    lo, hi = stats.t.interval(0.95, 2, loc=np.mean([1, 2, 4]), scale=stats.sem([1, 2, 4]))
    assert (e.n, e.mean) == (3, pytest.approx(7 / 3))
    assert (e.lo, e.hi) == (pytest.approx(lo), pytest.approx(hi))
    one = estimate([0.5])
    assert one.n == 1 and one.lo == -math.inf and one.hi == math.inf
    assert one.format() == "0.500 (n=1)"
    assert not estimate([]).measured and estimate([]).format() == "n/a"


def test_verdict_rules_read_the_interval():
    tight_high, tight_low, wide = (
        estimate([0.4, 0.41, 0.42]),
        estimate([0.0, 0.01, 0.005]),
        estimate([0.0, 0.5, 1.0]),
    )
    assert at_least(tight_high, 0.25) == HOLDS
    assert at_least(tight_low, 0.25) == FAILS
    assert at_least(wide, 0.25) == INCONCLUSIVE
    assert at_least(estimate([0.9]), 0.25) == INCONCLUSIVE  # one seed: no interval
    assert at_least(estimate([]), 0.25) == MISSING
    assert at_most(tight_low, 0.05) == HOLDS and at_most(tight_high, 0.05) == FAILS
    assert at_most(wide, 0.05) == INCONCLUSIVE
    assert within(tight_low, -0.1, 0.1) == HOLDS and within(tight_high, -0.1, 0.1) == FAILS
    assert within(wide, -0.1, 0.1) == INCONCLUSIVE
    assert for_all([HOLDS, HOLDS, MISSING]) == HOLDS
    assert for_all([HOLDS, INCONCLUSIVE]) == INCONCLUSIVE
    assert for_all([HOLDS, FAILS, INCONCLUSIVE]) == FAILS
    assert for_some([FAILS, HOLDS]) == HOLDS and for_some([FAILS, FAILS]) == FAILS
    assert for_some([FAILS, INCONCLUSIVE]) == INCONCLUSIVE and for_some([MISSING]) == MISSING


def test_statistics_helpers():
    metrics = [{"round": 0, "accuracy": 0.4}, {"round": 1, "accuracy": 0.8}]
    assert to_target(metrics, 0.7)["round"] == 1 and to_target(metrics, 0.9) is None
    lines = [{"predicted_mixup_mse_db": -10.0}, {"predicted_mixup_mse_db": -20.0}]
    assert predicted_mse_db(lines) == pytest.approx(10 * math.log10((0.1 + 0.01) / 2))


def test_closed_form_reference_matches_the_analytic_single_user_mmse():
    # one user, weight 1, Rayleigh: MSE = nv / (|h|^2 + nv), E = nv e^nv E1(nv)
    for snr_db in (0.0, 10.0, 20.0):
        nv = 10 ** (-snr_db / 10)
        analytic = nv * math.exp(nv) * exp1(nv)
        estimate_ = closed_form_mse("mmse", {1: 1}, snr_db, draws=40000)
        assert estimate_ == pytest.approx(analytic, rel=0.05)
    # AWGN (h = 1), K users, equal weights: the expectation is the single closed form
    k, nv = 4, 0.01
    expected = float(tx_rx_scaling(np.ones(k), np.full(k, 1 / k), 1.0, nv).mse)
    assert closed_form_mse("mmse", {k: 1}, 20.0, fading="awgn", draws=10) == pytest.approx(expected)
    assert closed_form_mse("mmse", {4: 1}, 10.0) < closed_form_mse("mmse", {1: 1}, 10.0)


# --------------------------------------------------------------------------- verdicts


def _communication(root: Path, savings: list[float], gaps: list[float] | None = None) -> None:
    """Orthogonal at 100 channel uses per round; label-aware reaching the target after
    one round of ``100 (1 - saving)`` channel uses; OAM accuracy = baseline + gap."""
    gaps = gaps or [0.0] * len(savings)
    for seed, (saving, gap) in enumerate(zip(savings, gaps, strict=True)):
        write_run(root, seed=seed, grouping="orthogonal", accuracy=[0.95, 0.95])
        write_run(
            root,
            seed=seed,
            accuracy=[0.95, 0.95 + gap],
            round_channel_uses=100 * (1 - saving),
        )


@pytest.mark.parametrize(
    ("savings", "expected"),
    [
        ([0.40, 0.42, 0.41], HOLDS),
        ([0.05, 0.06, 0.04], FAILS),
        ([0.10, 0.40, 0.25], INCONCLUSIVE),
        ([0.40], INCONCLUSIVE),  # one seed: no interval
    ],
)
def test_less_communication_verdicts(tmp_path, savings, expected):
    _communication(tmp_path, savings)
    assert verdicts(tmp_path)["less communication"] == expected


@pytest.mark.parametrize(
    ("gaps", "expected"),
    [
        ([0.0, 0.001, -0.001], HOLDS),
        ([-0.20, -0.21, -0.19], FAILS),
        ([0.0, -0.1, 0.05], INCONCLUSIVE),
    ],
)
def test_accurate_models_verdicts(tmp_path, gaps, expected):
    _communication(tmp_path, [0.3, 0.3, 0.3], gaps)
    assert verdicts(tmp_path)["accurate models"] == expected


@pytest.mark.parametrize(
    ("inversion", "label_set", "expected_inversion", "expected_label"),
    [
        ([0.10, 0.11, 0.12], [0.5, 0.55, 0.6], HOLDS, FAILS),
        ([0.05, 0.30, 0.12], [0.1, 0.1, 0.11], INCONCLUSIVE, HOLDS),
    ],
)
def test_resistance_verdicts(tmp_path, inversion, label_set, expected_inversion, expected_label):
    for seed, (inv, lab) in enumerate(zip(inversion, label_set, strict=True)):
        write_run(tmp_path, seed=seed, attacks=attacks(inv, lab, chance=0.1))
    result = verdicts(tmp_path)
    assert result["resists model inversion"] == expected_inversion
    assert result["resists label inference"] == expected_label
    assert result["less communication"] == MISSING  # no orthogonal runs


@pytest.mark.parametrize(
    ("random_inversion", "accuracy", "expected"),
    [
        ([0.50, 0.52, 0.51], 0.95, HOLDS),  # label-aware clearly lower on both attacks
        ([0.10, 0.11, 0.12], 0.95, FAILS),  # random clearly lower: label-aware leaks more
        ([0.20, 0.60, 0.30], 0.95, INCONCLUSIVE),
        ([0.50, 0.52, 0.51], 0.70, MISSING),  # not at equal accuracy: left out
    ],
)
def test_leak_least_verdicts(tmp_path, random_inversion, accuracy, expected):
    for seed, inversion in enumerate(random_inversion):
        write_run(tmp_path, seed=seed, attacks=attacks(0.30 + seed / 100, 0.30 + seed / 100))
        write_run(
            tmp_path,
            seed=seed,
            grouping="random",
            accuracy=[accuracy],
            attacks=attacks(inversion, 0.60 - seed / 100),
        )
    assert verdicts(tmp_path)["label-distinct groups leak least"] == expected


def _closed_form_db(snr_db: float = 20.0) -> float:
    value = closed_form_mse("mmse", {2: 2}, snr_db + subcarrier_snr_offset_db(), fading="awgn")
    return 10 * math.log10(value)


@pytest.mark.parametrize(
    ("gaps", "expected"),
    [
        ([0.2, -0.1, 0.0], HOLDS),
        ([8.0, 9.0, 8.5], FAILS),
        ([0.0, 5.0, 2.5], INCONCLUSIVE),
        (None, MISSING),  # only the predicted MSE recorded: no verdict on a prediction
    ],
)
def test_mse_verdicts_rest_on_the_measured_error(tmp_path, gaps, expected):
    reference = _closed_form_db()
    for seed, gap in enumerate(gaps or [0.0, 0.0, 0.0]):
        write_run(
            tmp_path,
            seed=seed,
            mse_db=reference + 20 - gap,  # a prediction far off, never judged
            measured_mse_db=None if gaps is None else reference + gap,
        )
    assert verdicts(tmp_path)["closed-form MSE-optimal scaling"] == expected


@pytest.mark.parametrize(
    ("differences", "expected"),
    [
        ([0.0, 0.01, -0.01], HOLDS),
        ([-0.3, -0.31, -0.29], FAILS),
        ([0.0, -0.08, 0.04], INCONCLUSIVE),
    ],
)
def test_radio_verdicts(tmp_path, differences, expected):
    for seed, difference in enumerate(differences):
        write_run(tmp_path, seed=seed, accuracy=[0.9], mse_db=-20.0)
        write_run(
            tmp_path,
            seed=seed,
            accuracy=[0.9 + difference],
            mse_db=-20.0,
            sections={"channel": {"radio": "virtual-pluto"}},
        )
    assert verdicts(tmp_path)["hardware path = simulation"] == expected


def test_report_renders_every_section_and_the_cli_reports_errors(tmp_path, capsys):
    runs = tmp_path / "runs"
    _communication(runs, [0.40, 0.42, 0.41])
    for seed in SEEDS:
        write_run(
            runs,
            seed=seed,
            grouping="random",
            accuracy=[0.95, 0.95],
            mse_db=-20.0,
            measured_mse_db=-19.0,
            attacks=attacks(0.5, 0.5),
        )
    assert len(find_run_dirs([runs])) == 9
    assert cli_main(["report", str(runs), "--out", str(tmp_path / "report")]) == 0
    path = tmp_path / "report" / "report.md"
    text = path.read_text()
    for heading in (
        "## Claims: SIMix vs this testbed",
        "## Settings",
        "## Accuracy vs channel uses per policy",
        "## Privacy-utility frontier",
        "## Mixup MSE vs SNR against the closed form",
    ):
        assert heading in text
    assert "Student-t" in text and "**holds**" in text
    assert "| -19.0 ± 0.0 | -22.0 ± 0.0 | -20.0 ± 0.0 |" in text  # measured, label, predicted
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(images) == 3
    for image in images:  # relative links to PNG files next to the report
        assert "/" not in image and (path.parent / image).read_bytes()[:4] == b"\x89PNG"
    data = json.loads((path.parent / "report.json").read_text())
    claim = {c["claim"]: c for c in data["claims"]}["less communication"]
    assert claim["verdict"] == HOLDS and claim["seeds"] == "3"
    assert f"**{claim['verdict']}**" in text
    moved = shutil.move(str(path.parent), str(tmp_path / "moved"))
    assert all((Path(moved) / image).exists() for image in images)
    (tmp_path / "empty").mkdir()
    assert cli_main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "e")]) == 2
    assert "no finished run" in capsys.readouterr().err


def test_report_shows_membership_inference_with_chance(tmp_path):
    runs = tmp_path / "runs"
    best = {
        "auc": 0.8,
        "auc_chance": 0.5,
        "tpr_at_0_1pct_fpr": 0.1,
        "tpr_at_0_1pct_fpr_chance": 0.001,
        "tpr_at_1pct_fpr": 0.2,
        "tpr_at_1pct_fpr_chance": 0.01,
    }
    for seed in SEEDS:
        write_run(runs, seed=seed, membership={**best, "auc": 0.8 + 0.01 * seed})
    build_report([runs], tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    section = text.split("## Membership inference on the final model")[1].split("##")[0]
    # AUC is the mean over three seeds with its interval; every figure beside its chance
    assert "| all | 3 | 0.950 ± 0.000 | 0.810 ± 0.025 (0.500) | 0.100 ± 0.000 (0.001) |" in section
    write_run(tmp_path / "plain", seed=1)
    build_report([tmp_path / "plain"], tmp_path / "plain_report")
    assert "Membership inference" not in (tmp_path / "plain_report" / "report.md").read_text()


def _provenance(torch_version: str) -> dict:
    return {
        "code": {"commit": "a" * 40, "dirty": False},
        "python": "3.11.2",
        "packages": {"torch": torch_version, "numpy": "2.0.0"},
        "libiio": "0.24 (v0.24)",
        "machine": {"cpu": "test CPU"},
    }


def test_report_lists_provenance_per_group_and_warns_on_different_versions(tmp_path):
    same, mixed = tmp_path / "same", tmp_path / "mixed"
    for seed in SEEDS:
        write_run(same, seed=seed, provenance=_provenance("2.13.0+cpu"))
        write_run(mixed, seed=seed, provenance=_provenance("2.13.0+cpu" if seed else "2.12.0"))
    data = json.loads((build_report([same], tmp_path / "r1").parent / "report.json").read_text())
    assert len(data["provenance"]) == 1 and data["provenance"][0]["count"] == 3
    assert "torch 2.13.0+cpu" in data["provenance"][0]["description"]
    assert not any("different code" in w for w in data["warnings"])
    path = build_report([mixed], tmp_path / "r2")
    data = json.loads((path.parent / "report.json").read_text())
    assert sorted(g["count"] for g in data["provenance"]) == [1, 2]
    assert any("2 different code or package versions" in w for w in data["warnings"])
    assert "## Provenance" in path.read_text() and "torch 2.12.0" in path.read_text()


# --------------------------------------------------------------------------- real runs


def test_smoke_sweep_and_its_report(tmp_path):
    """The CI smoke sweep as shipped (its runs in this process: child processes are
    tested in tests/studies/test_sweep.py), then its report: one seed per point, so every
    measured claim is inconclusive."""
    sweep_dir, data = run_and_report("smoke", tmp_path, in_process=True)
    claimed = {c["claim"]: c for c in data["claims"]}
    assert all(c["verdict"] in (INCONCLUSIVE, MISSING) for c in claimed.values())
    for name in ("less communication", "closed-form MSE-optimal scaling"):
        assert claimed[name]["verdict"] == INCONCLUSIVE and claimed[name]["seeds"] == "1"
        assert re.search(r"\d", claimed[name]["measured"])
    # every run scored its receiver's estimates against what its users sent
    for run in find_run_dirs([sweep_dir]):
        scored = json.loads((run / "mixup_error.json").read_text())["overall"]
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        measured = [m["measured_mixup_mse_db"] for m in lines]
        assert scored["slots"] and all(v < 0 for v in measured if v is not None)
    comm = data["communication"][0]
    assert comm["per_round_ratio"] == pytest.approx(0.5)  # 2 groups of 2 vs 4 slots
    assert any(s["stats"]["predicted_mse_db"]["n"] == 1 for s in data["settings"])
    # every run directory and the sweep directory record their provenance
    # (several groups when commits land during the sweep; the report then warns)
    assert sum(g["count"] for g in data["provenance"]) == 4
    assert all(g["description"].startswith("commit ") for g in data["provenance"])
    assert json.loads((sweep_dir / "provenance.json").read_text())["packages"]["torch"]

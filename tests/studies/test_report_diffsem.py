"""``airmix report`` on semantic-link runs (issue 11): the accuracy gap vs SNR plot and
DiffSem's claim rows, on synthetic run directories of known outcome, and the DiffSem
smoke sweep's report from real runs (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studies.report import build_report
from studies.report.claims import FAILS, HOLDS, INCONCLUSIVE, MISSING, diffsem_claims
from studies.report.comparisons import semantic_rows
from studies.report.loading import load_runs
from studies.report.statistics import group_settings
from tests.studies.shipped import run_and_report
from tests.studies.synthetic import inversion, write_run

GAP_PLAIN = "DiffSem's gap exceeds the plain link's at every SNR"
GAP_IBAL = "DiffSem's gap exceeds the ibal link's at every SNR"
ACCURACY = "DiffSem's legitimate accuracy at 23 dB keeps up"


def _semantic(
    root: Path, method: str, snr: float, eve: float, legit: list[float], attacker: list[float]
) -> None:
    """One run per seed of ``method`` at legitimate SNR ``snr`` and eavesdropper SNR
    ``eve``: final accuracy ``legit[seed]``, eavesdropper task accuracy ``attacker[seed]``."""
    for seed, (acc, att) in enumerate(zip(legit, attacker, strict=True)):
        write_run(
            root,
            seed=seed,
            grouping="random",
            group_size=1,
            accuracy=[acc],
            eavesdropper=inversion(att),
            sections={
                "method": {"name": method},
                "model": {"mode": "features"},
                "channel": {"snr_db": snr},
                "attacks": {"eavesdropper_snr_db": eve},
            },
        )


def _claims(root: Path) -> dict[str, str]:
    settings, _ = group_settings(load_runs([root]))
    return {c.claim: c.verdict for c in diffsem_claims(settings)}


def _grid(root: Path, diffsem_attacker: list[float]) -> None:
    """DiffSem and the plain link at 7 and 23 dB, eavesdropper 0 and +5 dB: the plain
    link's eavesdropper at 0.80-0.82 against a legitimate 0.95; DiffSem's legitimate
    accuracy 0.94 and its eavesdropper at ``diffsem_attacker``."""
    for snr in (7.0, 23.0):
        for offset in (0.0, 5.0):
            _semantic(root, "semantic_plain", snr, snr + offset, [0.95] * 3, [0.80, 0.81, 0.82])
            _semantic(root, "diffsem", snr, snr + offset, [0.94] * 3, diffsem_attacker)


@pytest.mark.parametrize(
    ("attacker", "expected"),
    [
        ([0.60, 0.62, 0.61], HOLDS),  # gap 33 points vs 14: wider at every SNR
        ([0.90, 0.91, 0.92], FAILS),  # gap 3 points vs 14
        ([0.40, 0.95, 0.80], INCONCLUSIVE),
    ],
)
def test_diffsem_gap_claim_verdicts(tmp_path, attacker, expected):
    _grid(tmp_path, attacker)
    verdicts = _claims(tmp_path)
    assert verdicts[GAP_PLAIN] == expected
    assert verdicts[GAP_IBAL] == MISSING  # no IBAL runs
    assert verdicts[ACCURACY] == HOLDS  # 0.94 vs the plain link's 0.95 at 23 dB


def test_diffsem_accuracy_claim_fails_beyond_two_points_and_needs_a_reference(tmp_path):
    _semantic(tmp_path, "semantic_plain", 23.0, 28.0, [0.95, 0.96, 0.95], [0.8] * 3)
    _semantic(tmp_path, "diffsem", 23.0, 28.0, [0.90, 0.91, 0.90], [0.6] * 3)
    assert _claims(tmp_path)[ACCURACY] == FAILS
    alone = tmp_path / "alone"
    _semantic(alone, "diffsem", 23.0, 28.0, [0.90] * 3, [0.6] * 3)
    assert _claims(alone)[ACCURACY] == MISSING
    assert _claims(alone)[GAP_PLAIN] == MISSING


def test_report_draws_the_gap_plot_and_the_diffsem_claim_rows(tmp_path):
    runs = tmp_path / "runs"
    _grid(runs, [0.60, 0.62, 0.61])
    settings, _ = group_settings(load_runs([runs]))
    rows = semantic_rows(settings)
    assert len(rows) == 8 and {r["offset_db"] for r in rows} == {0.0, 5.0}
    diffsem = next(r for r in rows if r["method"] == "diffsem")
    assert diffsem["gap"].mean == pytest.approx(0.94 - 0.61)
    assert diffsem["task_accuracy_chance"] == pytest.approx(0.1)
    # settings that differ only in the eavesdropper's SNR are told apart in labels
    assert len({s.label for s in settings}) == len(settings) == 8
    path = build_report([runs], tmp_path / "report")
    text = path.read_text()
    section = text.split("## DiffSem: accuracy gap vs SNR")[1]
    assert "![accuracy gap vs SNR](accuracy_gap_vs_snr.png)" in section
    assert (path.parent / "accuracy_gap_vs_snr.png").read_bytes()[:4] == b"\x89PNG"
    for claim in (GAP_PLAIN, GAP_IBAL, ACCURACY):
        assert f"| {claim} |" in section
    row = "| diffsem | 7 | 12 | 3 | 0.940 ± 0.000 | 0.610 ± 0.025 (0.100) | 33.0 ± 2.5 |"
    assert row in section
    data = json.loads((path.parent / "report.json").read_text())
    verdicts = {c["claim"]: c["verdict"] for c in data["diffsem_claims"]}
    assert verdicts == {GAP_PLAIN: HOLDS, GAP_IBAL: MISSING, ACCURACY: HOLDS}
    assert data["plots"]["gap"] == "accuracy_gap_vs_snr.png" and len(data["semantic"]) == 8


def test_report_without_semantic_runs_has_no_diffsem_section(tmp_path):
    write_run(tmp_path / "runs", seed=0)
    text = build_report([tmp_path / "runs"], tmp_path / "report").read_text()
    assert "DiffSem" not in text


@pytest.mark.slow
def test_diffsem_smoke_sweep_and_its_report(tmp_path):
    """The DiffSem smoke sweep as shipped (4 tiny runs, a few minutes), then its report:
    one seed per point, so the measured claims are inconclusive."""
    _, data = run_and_report("diffsem_smoke", tmp_path)
    assert data["plots"]["gap"] == "accuracy_gap_vs_snr.png"
    assert {r["method"] for r in data["semantic"]} == {"diffsem", "plain"}
    verdicts = {c["claim"]: c["verdict"] for c in data["diffsem_claims"]}
    assert verdicts == {GAP_PLAIN: INCONCLUSIVE, GAP_IBAL: MISSING, ACCURACY: INCONCLUSIVE}

"""``airmix report``: built from real tiny run directories (a two-point sweep)."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.special import exp1

from orchestrator.cli import main as cli_main
from orchestrator.report import (
    build_report,
    closed_form_mse,
    find_run_dirs,
    mean_std,
    measured_mse_db,
    to_target,
)
from orchestrator.sweep import inprocess_runner, load_sweep, parse_sweep, run_sweep
from phy.power import tx_rx_scaling

REPO = Path(__file__).resolve().parents[2]

BASE = {
    "experiment": {"rounds": 2, "target_accuracy": 0.5},
    "users": {"count": 4, "group_size": 2, "node_processes": 1},
    "channel": {"fading": "awgn", "snr_db": 20.0},
    "link": {"curve": False},
}


@pytest.fixture(scope="module")
def sweep_dirs(tmp_path_factory) -> list[Path]:
    """Label-aware OAM with both attacks, and the orthogonal baseline without attacks
    (two one-point sweeps: attacks cost time and the report must cope with their absence)."""
    out = tmp_path_factory.mktemp("sweeps")
    paths = []
    for name, grouping, attacks in (
        ("oam", "label_aware", ["model_inversion", "label_inference"]),
        ("orth", "orthogonal", []),
    ):
        raw = {"sweep": {"name": name, "grid": {"users.grouping": [grouping]}}}
        raw.update(BASE, attacks={"enabled": attacks})
        sweep = parse_sweep(raw, out_dir=out)
        result = run_sweep(sweep, inprocess_runner(), progress=None, fail_fast=True)
        assert result.remaining == 0
        paths.append(sweep.path)
    return paths


def test_report_from_real_runs_has_sections_plots_and_claims(sweep_dirs, tmp_path):
    runs = find_run_dirs(sweep_dirs)
    assert len(runs) == 2
    path = build_report(sweep_dirs, tmp_path / "report")
    text = path.read_text()
    for heading in (
        "## Claims: SIMix vs this testbed",
        "## Settings",
        "## Accuracy vs channel uses per policy",
        "## Privacy-utility frontier",
        "## Mixup MSE vs SNR against the closed form",
    ):
        assert heading in text
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(images) == 3
    for image in images:  # relative links to PNG files next to the report
        assert "/" not in image and (path.parent / image).read_bytes()[:4] == b"\x89PNG"
    data = json.loads((path.parent / "report.json").read_text())
    claims = {c["claim"]: c for c in data["claims"]}
    for claim in ("less communication", "accurate models", "resists model inversion"):
        assert claims[claim]["verdict"] in ("holds", "partially holds", "does not hold")
        assert re.search(r"\d", claims[claim]["measured"])
    assert claims["label-distinct groups leak least"]["verdict"] == "not measured"
    comm = data["communication"][0]
    uses = {s["label"]: s["stats"] for s in data["settings"]}
    # each run reports per-round payload channel uses; label-aware (2 groups of 2) spends
    # half the orthogonal baseline's (4 one-user slots) per round
    assert comm["per_round_ratio"] == pytest.approx(0.5)
    assert set(uses) == {"grouping=label_aware, group_size=2", "grouping=orthogonal, group_size=1"}
    assert all(s["mse_db"][0] < 0 for s in uses.values())
    # the claims table in the Markdown carries the same verdicts
    assert f"**{claims['less communication']['verdict']}**" in text
    # self-contained: the directory still renders after a move
    moved = shutil.move(str(path.parent), str(tmp_path / "moved"))
    assert all((Path(moved) / image).exists() for image in images)


def test_cli_report_and_error_on_empty_input(sweep_dirs, tmp_path, capsys):
    assert cli_main(["report", *map(str, sweep_dirs), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "report.md").is_file()
    (tmp_path / "empty").mkdir()
    assert cli_main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "e")]) == 2
    assert "no finished run" in capsys.readouterr().err


def test_closed_form_reference_matches_the_analytic_single_user_mmse():
    # one user, weight 1, Rayleigh: MSE = nv / (|h|^2 + nv), E = nv e^nv E1(nv)
    for snr_db in (0.0, 10.0, 20.0):
        nv = 10 ** (-snr_db / 10)
        analytic = nv * math.exp(nv) * exp1(nv)
        estimate = closed_form_mse("mmse", {1: 1}, snr_db, draws=40000)
        assert estimate == pytest.approx(analytic, rel=0.05)
    # AWGN (h = 1), K users, equal weights: the expectation is the single closed form
    k, nv = 4, 0.01
    expected = float(tx_rx_scaling(np.ones(k), np.full(k, 1 / k), 1.0, nv).mse)
    assert closed_form_mse("mmse", {k: 1}, 20.0, fading="awgn", draws=10) == pytest.approx(expected)
    # more mixing users at the same SNR: the MMSE estimate of the (weaker) mixture is better
    assert closed_form_mse("mmse", {4: 1}, 10.0) < closed_form_mse("mmse", {1: 1}, 10.0)


def test_statistics_helpers():
    assert mean_std([1.0, 3.0, None, float("nan")]) == (2.0, pytest.approx(math.sqrt(2)), 2)
    empty = mean_std([])
    assert math.isnan(empty[0]) and math.isnan(empty[1]) and empty[2] == 0
    assert mean_std([0.5]) == (0.5, 0.0, 1)
    metrics = [{"round": 0, "accuracy": 0.4}, {"round": 1, "accuracy": 0.8}]
    assert to_target(metrics, 0.7)["round"] == 1 and to_target(metrics, 0.9) is None
    lines = [{"predicted_mixup_mse_db": -10.0}, {"predicted_mixup_mse_db": -20.0}]
    assert measured_mse_db(lines) == pytest.approx(10 * math.log10((0.1 + 0.01) / 2))


def test_smoke_sweep_and_its_report(tmp_path):
    """The CI smoke sweep as shipped (about a minute, in the default run), then its report."""
    sweep = load_sweep(REPO / "experiments" / "sweeps" / "smoke.toml", out_dir=tmp_path)
    result = run_sweep(sweep, progress=None)
    assert result.remaining == 0 and not result.failed
    path = build_report([sweep.path], tmp_path / "report")
    claims = {
        c["claim"]: c for c in json.loads((path.parent / "report.json").read_text())["claims"]
    }
    assert claims["less communication"]["verdict"] != "not measured"
    assert claims["closed-form MSE-optimal scaling"]["verdict"] != "not measured"

"""``airmix run`` with ``attacks.membership = true``: the final server model is attacked
for membership of the users' samples; summary.json, the plots and the printed table
carry AUC and TPR at 0.1% / 1% FPR, each with its chance level. Real processes (the
helpers of tests/orchestrator/test_main_job.py)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import tomli_w

from tests.orchestrator.test_main_job import (
    AirmixRun,
    finished_run,
    kill_all,
    write_experiment,
)


def with_attacks(path: Path, **fields) -> Path:
    """Set ``[attacks]`` fields of an experiment file."""
    experiment = tomllib.loads(path.read_text())
    experiment["attacks"].update(fields)
    path.write_text(tomli_w.dumps(experiment))
    return path


def test_run_attacks_the_final_model_for_membership(tmp_path):
    out = tmp_path / "runs"
    experiment = with_attacks(
        write_experiment(tmp_path / "membership.toml", out, rounds=2),
        eavesdropper=False,
        membership=True,
        membership_shadows=4,
        membership_samples=60,
    )
    run = AirmixRun(str(experiment))
    try:
        run_dir = finished_run(run)
    finally:
        kill_all(run, out)
    summary = json.loads((run_dir / "summary.json").read_text())
    membership = summary["privacy"]["membership"]
    assert membership["n_members"] == membership["n_non_members"] == 60
    assert membership["n_shadows"] == 4
    assert set(membership["attacks"]) >= {"loss", "shokri", "lira_offline", "lira_online"}
    for figures in membership["attacks"].values():
        assert 0.0 <= figures["auc"] <= 1.0 and figures["auc_chance"] == 0.5
        assert figures["tpr_at_0_1pct_fpr_chance"] == 0.001
        assert figures["tpr_at_1pct_fpr_chance"] == 0.01
    best = membership["best"]
    assert summary["headline"]["membership_auc"] == best["auc"]
    assert summary["headline"]["membership_best_attack"] == membership["best_attack"]
    assert membership["shadow_recipe"] == {"defence": "mixup", "alpha": None, "k": 2}
    for name in ("membership_roc.png", "membership_privacy_accuracy.png"):
        assert (run_dir / "plots" / name).stat().st_size > 0
    assert "membership inference on the final model" in run.output
    assert "lira_online" in run.output


def test_membership_needs_raw_mode(tmp_path):
    experiment = with_attacks(
        write_experiment(tmp_path / "bad.toml", tmp_path / "runs", model={"mode": "features"}),
        membership=True,
    )
    run = AirmixRun(str(experiment))
    try:
        assert run.wait() == 2
    finally:
        kill_all(run, tmp_path / "runs")
    assert "attacks.membership" in run.output and "raw" in run.output
    assert not (tmp_path / "runs").exists()

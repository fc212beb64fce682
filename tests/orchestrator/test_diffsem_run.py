"""``airmix run`` with the diffsem method end to end (orchestrator, node processes, the
sim medium and virtual Plutos): DiffSem's features on the air with closed-loop
self-noise, the diffusion receiver, the eavesdropper's model inversion in the summary,
same seed same metrics, and bad method settings refused before anything is written.

The experiment is tiny (a small MLP link trained for a few epochs, 80% of the digits
public, one round) so the suite stays fast; ``experiments/diffsem.toml`` is the real one.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import tomli_w

from orchestrator.rundir import RunDirectory
from phy.link_budget import subcarrier_noise_var
from tests.learning.test_diffsem_method import TINY
from tests.orchestrator.test_main_job import (  # noqa: F401 - airmix_runs: the fixture
    airmix_runs,
    assert_resume_matches_uninterrupted,
    comparable,
    finished_run,
    read_metrics,
    write_experiment,
)

#: a link trained in about a second (the real settings are the defaults)
TINY_METHOD = {"name": "diffsem", **TINY, "attack_epochs": 5}


def diffsem_experiment(
    path: Path, out: Path, attacks: dict | None = None, **sections: dict
) -> Path:
    """One round of 4 users (about 2 x 36 private digits each) on a tiny DiffSem link;
    ``attacks``: the ``[attacks]`` fields (default: none enabled)."""
    method = {**TINY_METHOD, **sections.pop("method", {})}
    write_experiment(
        path,
        out,
        rounds=1,
        method=method,
        model={"mode": "features", "arch": "mlp", "feature_dim": 16},
        data={"auxiliary_fraction": 0.8},
        **sections,
    )
    experiment = tomllib.loads(path.read_text())
    experiment["attacks"].update(attacks or {})
    path.write_text(tomli_w.dumps(experiment))
    return path


def _eavesdropper_figures(summary: dict) -> dict:
    """The eavesdropper's inversion figures, each beside its chance level."""
    eve = summary["privacy"]["eavesdropper"]
    assert eve["frames_found"] == eve["slots"] > 0 and eve["group_size"] == 1
    figures = eve["attacks"]["model_inversion"]
    for name in ("task_accuracy", "psnr_db", "ssim"):
        assert name in figures and f"{name}_chance" in figures
    assert 0.0 <= figures["task_accuracy"] <= 1.0
    return figures


def test_sim_run_closes_the_self_noise_loop(tmp_path, airmix_runs):  # noqa: F811
    """On the sim medium (AWGN at 20 dB) the receiver learns, and the channel ratio the
    closed loop told each user (what its self-noise adapts to) is the link budget's."""
    out = tmp_path / "runs"
    experiment = diffsem_experiment(tmp_path / "sim.toml", out, channel={"fading": "awgn"})
    run_dir = finished_run(airmix_runs(str(experiment), out_dir=out))
    metrics = read_metrics(run_dir)
    assert metrics[-1]["slots"] > 0 and metrics[-1]["missed_slots"] == 0
    assert metrics[-1]["accuracy"] > 0.3  # chance 0.1
    told = RunDirectory.open_existing(run_dir).load_checkpoint()["method"]["told"]
    nominal = 2 * subcarrier_noise_var(20.0)  # channel.snr_db's ratio per real
    assert len(told) == 4 and all(0.5 * nominal < r < 2 * nominal for r in told), told


def test_virtual_pluto_run_audits_the_eavesdropper(tmp_path, airmix_runs):  # noqa: F811
    """Users and receiver are virtual PlutoSDRs; the passive eavesdropper's inversion of
    what it captured is scored with task accuracy, PSNR and SSIM beside their chances."""
    out = tmp_path / "runs"
    experiment = diffsem_experiment(
        tmp_path / "vp.toml",
        out,
        attacks={"enabled": ["model_inversion"], "eavesdropper_snr_db": 25.0},
        channel={"radio": "virtual-pluto", "time_base": "ideal"},
    )
    run_dir = finished_run(airmix_runs(str(experiment), out_dir=out))
    metrics = read_metrics(run_dir)
    assert metrics[-1]["slots"] > 0 and metrics[-1]["accuracy"] > 0.3
    summary = json.loads((run_dir / "summary.json").read_text())
    _eavesdropper_figures(summary)
    headline = summary["headline"]
    assert headline["eavesdropper_model_inversion_task_accuracy"] is not None


@pytest.mark.slow
def test_same_file_gives_the_same_metrics_and_privacy_figures(tmp_path, airmix_runs):  # noqa: F811
    """Two runs of the same file (in parallel, the audit on): same metrics line for line
    (but wall time) and the same privacy figures."""
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        experiment = diffsem_experiment(
            tmp_path / f"{name}.toml",
            out,
            attacks={"enabled": ["model_inversion"]},
            channel={"time_base": "ideal"},  # the air repeats exactly on a loaded machine
        )
        runs.append(airmix_runs(str(experiment), out_dir=out))
    run_dirs = [finished_run(run) for run in runs]
    metrics = [comparable(read_metrics(d)) for d in run_dirs]
    assert metrics[0] == metrics[1]
    summaries = [json.loads((d / "summary.json").read_text()) for d in run_dirs]
    assert summaries[0]["privacy"] == summaries[1]["privacy"]
    _eavesdropper_figures(summaries[0])


@pytest.mark.slow
def test_resume_after_mid_round_kill_matches_uninterrupted_run(tmp_path, airmix_runs):  # noqa: F811
    """The receiver head, its optimiser, the channel ratios told and the users' ratios
    are checkpointed; the link is re-derived: a run killed mid-round 2 ends as one that
    was not."""
    out = tmp_path / "runs"
    experiment = diffsem_experiment(tmp_path / "resume.toml", out, channel={"time_base": "ideal"})
    text = experiment.read_text().replace("rounds = 1", "rounds = 3")
    experiment.write_text(text)
    assert_resume_matches_uninterrupted(airmix_runs, experiment, out, tmp_path / "killed")


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ({"noise_level": -1.0}, "method.noise_level: must be >= 0, got -1.0"),
        (
            {"conditioning": "labels"},
            "method.conditioning: 'labels' is not one of ['label', 'none']",
        ),
        ({"link": "ibal2"}, "method.link: 'ibal2' is not one of"),
        ({"train_snr_low_db": 30.0}, "method.train_snr_low_db: low must not exceed high"),
    ],
)
def test_bad_settings_exit_2_naming_the_field(tmp_path, capsys, method, expected):
    """Validation names the field; nothing is written (in-process: main returns the code)."""
    from orchestrator.cli import main

    experiment = diffsem_experiment(tmp_path / "bad.toml", tmp_path / "runs", method=method)
    assert main(["run", str(experiment)]) == 2
    assert expected in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_peer_baseline_refuses_diffsem_settings(tmp_path, capsys):
    """The peer baselines take no DiffSem setting: the field is named."""
    from orchestrator.cli import main

    method = {"name": "semantic_plain", "noise_level": 1.0}
    experiment = write_experiment(tmp_path / "bad.toml", tmp_path / "runs", method=method)
    assert main(["run", str(experiment)]) == 2
    assert "method.noise_level: unknown field; allowed: [" in capsys.readouterr().err

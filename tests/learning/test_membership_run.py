"""``airmix run`` with ``attacks.membership = true``: the final server model is attacked
for membership of the users' samples; summary.json, the plots and the printed table
carry AUC and TPR at 0.1% / 1% FPR, each with its chance level. The end-to-end run uses
real processes (the helpers of tests/orchestrator/test_main_job.py) and is marked slow;
the glue is also tested in-process."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from learning.channels import IdealChannel
from learning.data import load_dataset, split_users
from learning.defences import TrainSettings, get_defence
from learning.methods import make_method
from learning.methods.base import Reception
from learning.methods.loop import run_method
from learning.models import build_classifier
from orchestrator import experiment as ex
from orchestrator.config import ConfigError, resolve_experiment
from orchestrator.membership_audit import membership_figures, membership_headline, membership_table
from tests.learning.contexts import method_context
from tests.orchestrator.test_main_job import (
    AirmixRun,
    finished_run,
    kill_all,
    write_experiment,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/learning/conftest.py


def with_attacks(path: Path, **fields) -> Path:
    """Set ``[attacks]`` fields of an experiment file."""
    experiment = tomllib.loads(path.read_text())
    experiment["attacks"].update(fields)
    path.write_text(tomli_w.dumps(experiment))
    return path


def test_membership_figures_on_a_run_s_data(tmp_path):
    """The run's glue in-process: the run's data, a server model, the audit and its plots."""
    config = resolve_experiment(
        {
            "users": {"count": 4, "group_size": 2, "node_processes": 2},
            "experiment": {"rounds": 3},
            "attacks": {"membership": True, "membership_shadows": 2, "membership_samples": 40},
        }
    )
    data = ex.load_experiment_data(config)

    def factory():
        return build_classifier(data.train.input_shape, 10, "mlp", config.model.feature_dim)

    members = np.concatenate(data.split.users)
    model = get_defence("none").train_target(
        factory, data.train.x, data.train.y, members, 10, TrainSettings(epochs=3), rng=0
    )
    figures = membership_figures(config, data, model, tmp_path, progress=None)
    assert figures["n_members"] == figures["n_non_members"] == 40
    assert figures["n_shadows"] == 2 and figures["best_attack"] in figures["attacks"]
    assert 0 < figures["accuracy"] <= 1
    assert sorted(figures["plots"]) == ["membership_privacy_accuracy.png", "membership_roc.png"]
    assert membership_headline(figures)["membership_auc"] == figures["best"]["auc"]
    table = membership_table(figures)
    assert len(table) == 2 + len(figures["attacks"]) and "(0.500)" in table[2]
    assert membership_table(None) == []
    again = membership_figures(config, data, model, tmp_path / "again")
    assert again["attacks"]["lira_online"] == {
        **figures["attacks"]["lira_online"],
        "seconds": again["attacks"]["lira_online"]["seconds"],
    }


@pytest.mark.slow
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


def test_membership_needs_raw_mode():
    with pytest.raises(ConfigError, match="model.mode = 'raw'") as error:
        resolve_experiment({"model": {"mode": "features"}, "attacks": {"membership": True}})
    assert error.value.field == "attacks.membership"  # airmix run exits 2 naming it
    with pytest.raises(ConfigError, match="membership_shadows"):
        resolve_experiment({"attacks": {"membership_shadows": 1}})


def test_adamixup_method_runs_in_the_run_loop():
    """``[method] name = "adamixup"``: orthogonal slots, the server mixes with a decaying
    partner weight and the dominant member's label; state survives a checkpoint."""
    train, test = load_dataset("digits", rng=0)
    split = split_users(train, 4, "iid", auxiliary_fraction=0.2, rng=1)
    model = {"mode": "raw", "arch": "mlp", "feature_dim": 16, "learning_rate": 3e-3}
    context = method_context(
        (train, test, split),
        {**model, "batch_size": 16},
        options={"lam_start": 0.5, "lam_end": 0.1, "decay_rounds": 2},
    )
    method = make_method("adamixup", context)
    assert method.coefficient() == 0.5
    result = run_method(method, IdealChannel(), 3, group_size=2)
    assert method.coefficient() == pytest.approx(0.1)  # decayed after 2 of 3 rounds
    assert result.slots == 3 * context.steps_per_round * 4  # one slot per user per step
    assert result.accuracy > 0.5
    state = method.state_dict()
    again = make_method("adamixup", context)
    again.load_state_dict(state)
    assert again.samples_seen == method.samples_seen > 0
    view = method.server_step(
        [
            Reception((0,), vector, np.ones(1), np.ones(1))
            for vector in (np.ones(method.payload_reals), np.zeros(method.payload_reals))
        ],
        np.random.default_rng(0),
    ).views[0]
    assert sorted(view.weights) == pytest.approx([0.1, 0.9])

"""The run's summary: attacks declare their success figures (a new attack needs no edit
in summary, table or plot code), and channel uses to target come from the finest
evaluations, payload and pilots apart."""

from __future__ import annotations

import numpy as np

from learning.attacks.base import ATTACKS, Attack, success_figures
from orchestrator.config import resolve_experiment
from orchestrator.main_job import attack_table, summarize, write_plots
from orchestrator.metrics import channel_uses_to_target
from orchestrator.rundir import RunDirectory


class HitRate(Attack):
    """A stand-in attack, registered only for this test."""

    name = "hit_rate_attack"
    success_figures = ("hit_rate",)

    def fit(self, aux_observations, aux_truth):
        return self

    def attack(self, observations):
        return np.zeros(0)

    def evaluate(self, observations, truth, rng=None):
        return {"hit_rate": 0.75, "hit_rate_chance": 0.5}


def _record(round_id, accuracy, uses, pilots, evaluations=None):
    return {
        "round": round_id,
        "accuracy": accuracy,
        "channel_uses": uses,
        "pilot_channel_uses": pilots,
        "round_channel_uses": 100,
        "round_pilot_channel_uses": 10,
        "evaluations": evaluations or [],
    }


def _point(uses, pilots, accuracy):
    return {"channel_uses": uses, "pilot_channel_uses": pilots, "accuracy": accuracy}


def test_channel_uses_to_target_reads_the_grid_not_the_round_ends():
    metrics = [
        _record(0, 0.5, 100, 10, [_point(50, 10, 0.4), _point(100, 10, 0.5)]),
        _record(1, 0.95, 200, 20, [_point(120, 20, 0.91), _point(200, 20, 0.95)]),
    ]
    assert channel_uses_to_target(metrics, 0.9) == {"channel_uses": 120, "pilot_channel_uses": 20}
    assert channel_uses_to_target(metrics, 0.99) == {
        "channel_uses": None,
        "pilot_channel_uses": None,
    }
    no_grid = [_record(0, 0.5, 100, 10), _record(1, 0.95, 200, 20)]  # older metrics
    assert channel_uses_to_target(no_grid, 0.9)["channel_uses"] == 200


def test_a_new_attack_reaches_summary_table_and_plot_without_edits(monkeypatch, tmp_path):
    monkeypatch.setitem(ATTACKS._entries, HitRate.name, HitRate)
    assert success_figures()[HitRate.name] == ("hit_rate",)
    config = resolve_experiment({})
    metrics = [_record(0, 0.95, 100, 10)]
    figures = {HitRate.name: HitRate().evaluate(None, None)}
    privacy = {"group_size": 4, "figures": figures}
    eve = {"group_size": 4, "figures": figures, "slots": 2, "frames_found": 1, "snr_db": 20.0}
    summary = summarize(config, metrics, privacy, {}, eve)
    assert summary["headline"]["hit_rate_attack_hit_rate"] == 0.75
    assert summary["headline"]["eavesdropper_hit_rate_attack_hit_rate"] == 0.75
    table = "\n".join(attack_table(summary))
    assert "hit_rate_attack hit_rate" in table and "(chance 0.500)" in table
    run = RunDirectory.create(tmp_path, "t", config.to_toml())
    write_plots(run, metrics, privacy, eve)
    assert (run.plots_dir / "privacy.png").stat().st_size > 0

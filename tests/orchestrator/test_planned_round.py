"""Planned rounds (``channel.schedule = "planned"``, radio.planned_air): the ideal loop's
round laid out ahead on the simulated medium's clock, one request per node per wave.

Real runs (``orchestrator.main_job.run_experiment``: node processes, CurveZMQ, the
simulated medium, the receiver's closed loop) of the same experiment played sequentially
and planned: the same slots and air time, a mixup as good as predicted, the eavesdropper
hearing the same windows, and a fraction of the requests.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from orchestrator.config import ConfigError, resolve_experiment
from orchestrator.main_job import run_experiment
from orchestrator.rundir import RunDirectory


def _run(tmp_path, schedule: str) -> tuple[dict, dict]:
    config = resolve_experiment(
        {
            "experiment": {"name": schedule, "seed": 4, "rounds": 1},
            "users": {"count": 8, "group_size": 4, "node_processes": 2},
            "model": {"batch_size": 16},
            "channel": {"time_base": "ideal", "schedule": schedule},
            "attacks": {"enabled": [], "eavesdropper": True},
        }
    )
    run = RunDirectory.create(tmp_path, schedule, config.to_toml())
    run_experiment(config, run, False, progress=False)
    (metrics,) = run.read_metrics()
    return metrics, json.loads((run.path / "summary.json").read_text())


def test_a_planned_round_plays_the_sequential_rounds_slots_in_a_few_requests(tmp_path):
    planned, planned_summary = _run(tmp_path, "planned")
    sequential, _ = _run(tmp_path, "sequential")
    for key in ("slots", "round_channel_uses", "round_pilot_channel_uses", "groups"):
        assert planned[key] == sequential[key], key
    assert planned["missed_slots"] == 0
    # as good as the receiver predicted, as the sequential loop is
    assert planned["measured_mixup_mse_db"] < planned["predicted_mixup_mse_db"] + 1.0
    assert abs(planned["predicted_mixup_mse_db"] - sequential["predicted_mixup_mse_db"]) < 1.5
    # one request per node per wave (pilots, slots) instead of one per pilot and slot
    assert planned["link_requests"] + 25 < sequential["link_requests"]
    # the eavesdropper heard the planned windows
    eve = planned_summary["privacy"]["eavesdropper"]
    assert eve["slots"] == planned["slots"] and eve["frames_found_fraction"] == 1.0


def test_planned_needs_the_simulated_medium_and_the_ideal_loop():
    for channel in ({"time_base": "stream"}, {"time_base": "ideal", "radio": "virtual-pluto"}):
        with pytest.raises(ConfigError, match="channel.schedule"):
            resolve_experiment({"channel": {**channel, "schedule": "planned"}})


def test_a_frame_that_would_clip_is_not_sent_and_the_reply_names_its_slot(tmp_path):
    from orchestrator import messages as m
    from orchestrator.node import Node
    from orchestrator.radios import radio_config
    from phy.medium import SharedMedium, register_medium, unregister_medium
    from radio.ota_transmitter import SlotOrder

    config = resolve_experiment({"users": {"count": 2, "group_size": 2}})
    medium = register_medium("clip-test", SharedMedium(rng=1, timing="ideal"))
    try:
        uris = {u: f"sim://clip-test/{u}" for u in ("u000", "u001")}
        node = Node(config, "node0", ["u000", "u001"], uris, tmp_path)
        node._start_round(m.StartRound.of(0, radio_config(config)))
        loud = SlotOrder(10.0, 0.0, 0.0, 40, 50.0 + 0j, 2000)  # b_k = 50: far past full scale
        fine = SlotOrder(10.0, 0.0, 0.0, 40, 0.5 + 0j, 2000)
        order = m.Transmit(0, 3, ["u000", "u001"], np.array([0.5, 0.5]), [loud, fine], 1)
        body = node._transmit(order)
        assert body == {"clipped": {"u000": 3}}
        assert medium.port("u000").transmission is None  # nothing went on the air
        assert medium.port("u001").transmission is not None
        reply = m.Message("ack", body, 1, "node0", 0.0, 7)  # a node may send it
        assert m.decode(m.encode(reply)).body["clipped"] == {"u000": 3}
    finally:
        unregister_medium("clip-test")

"""Node processes as Ray actors (``users.backend = "ray"``, orchestrator.ray_nodes).

Real runs (``orchestrator.main_job.run_experiment``) on a local Ray cluster started
once for the module: a few users for one round give the same metrics as local node
processes with the same seed; a node actor killed mid-round is dropped like a dead node
and the round goes on with the remaining users.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import ray

from orchestrator.config import ConfigError, resolve_experiment
from orchestrator.engine import Engine
from orchestrator.main_job import run_experiment
from orchestrator.ray_nodes import RayNodes
from orchestrator.round_timing import PARTS
from orchestrator.rundir import RunDirectory

#: metrics that depend on the seed only (not on timing or on where nodes run)
DETERMINISTIC = (
    "accuracy",
    "loss",
    "slots",
    "channel_uses",
    "pilot_channel_uses",
    "round_channel_uses",
    "round_pilot_channel_uses",
    "groups",
    "alive_users",
    "regroupings",
    "missed_slots",
    "evaluations",
    "predicted_mixup_mse_db",
)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local two-CPU Ray cluster shared by the module's runs (they join it)."""
    ray.init(
        num_cpus=2,
        object_store_memory=80 * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    yield
    ray.shutdown()


def _config(backend: str, schedule: str = "sequential", **link: Any):
    return resolve_experiment(
        {
            "experiment": {"name": f"ray-{backend}", "seed": 5, "rounds": 1},
            "users": {"count": 4, "group_size": 2, "node_processes": 2, "backend": backend},
            "model": {"batch_size": 8},
            "channel": {"time_base": "ideal", "schedule": schedule},
            "attacks": {"enabled": [], "eavesdropper": False},
            "link": link,
        }
    )


def _run(tmp_path: Path, config, engine_class: type[Engine] = Engine) -> list[dict]:
    run = RunDirectory.create(tmp_path, config.experiment.name, config.to_toml())
    run_experiment(config, run, False, progress=True, engine_class=engine_class)
    return run.read_metrics()


def test_ray_run_gives_the_metrics_of_local_processes(tmp_path, ray_cluster, capsys):
    # planned: the air of each wave is rendered on the cluster's air workers on Ray and
    # in worker processes locally (the sequential loop's nodes are the same code: see the kill test)
    on_ray = _run(tmp_path, _config("ray", "planned"))
    assert capsys.readouterr().out.count("round   1/1") == 1
    local = _run(tmp_path, _config("local", "planned"))
    assert len(on_ray) == len(local) == 1
    assert on_ray[0]["alive_users"] == 4 and on_ray[0]["slots"] > 0
    assert {k: on_ray[0][k] for k in DETERMINISTIC} == {k: local[0][k] for k in DETERMINISTIC}
    assert on_ray[0]["round_digital_bytes"] == local[0]["round_digital_bytes"]
    for record in on_ray + local:  # the round's time split adds up to the round
        split = record["time_split"]
        assert list(split) == sorted(PARTS)  # (metrics lines are written with sorted keys)
        assert abs(sum(split.values()) - record["seconds"]) < 0.02 * record["seconds"] + 0.01
        assert split["medium"] > 0 and split["phy"] > 0 and split["nodes"] > 0
        assert record["slots_per_second"] > 0
    logs = sorted(p.name for p in (tmp_path).glob("ray-ray-*/logs/*"))
    assert logs == ["node0.log", "node0.timing.json", "node1.log", "node1.timing.json"]


class KillingEngine(Engine):
    """Kills node1's actor once, in the middle of round 0 (after its third slot)."""

    slots_seen = 0

    def _slot(self, *args: Any) -> Any:
        reception = super()._slot(*args)
        KillingEngine.slots_seen += 1
        if KillingEngine.slots_seen == 3:
            ray.kill(ray.get_actor(f"airmix-{self.run.path.name}-node1"), no_restart=True)
        return reception


def test_node_actor_killed_mid_round_is_dropped_and_the_round_goes_on(
    tmp_path, ray_cluster, capsys
):
    config = _config("ray", heartbeat_s=0.1, liveness_s=1.0, request_timeout_s=5.0)
    (metrics,) = _run(tmp_path, config, KillingEngine)
    output = capsys.readouterr().out
    assert "node node1 lost: users u001, u003 dropped" in output
    assert metrics["alive_users"] == 2 and metrics["regroupings"] >= 1
    assert metrics["groups"] == [["u000", "u002"]]  # node0's users, regrouped
    assert metrics["slots"] > 3 and metrics["accuracy"] > 0.1


class KillingPlannedEngine(Engine):
    """Kills node1's actor once, in a planned round: after the pilots' wave, before the
    slots' wave."""

    def _planned_acquisition(self, *args: Any) -> None:
        super()._planned_acquisition(*args)
        if not getattr(KillingPlannedEngine, "killed", False):
            KillingPlannedEngine.killed = True
            ray.kill(ray.get_actor(f"airmix-{self.run.path.name}-node1"), no_restart=True)


def test_node_actor_killed_in_a_planned_round_is_dropped_and_the_round_goes_on(
    tmp_path, ray_cluster, capsys
):
    config = _config("ray", "planned", heartbeat_s=0.1, liveness_s=1.0, request_timeout_s=5.0)
    (metrics,) = _run(tmp_path, config, KillingPlannedEngine)
    assert "node node1 lost: users u001, u003 dropped" in capsys.readouterr().out
    assert metrics["alive_users"] == 2 and metrics["regroupings"] >= 1
    assert metrics["groups"] == [["u000", "u002"]]
    # the lost wave's windows are skipped: the regrouped users' slots are all found
    assert metrics["slots"] > 0 and metrics["missed_slots"] == 0


def test_ray_backend_is_validated_and_an_impossible_placement_fails_at_start(ray_cluster):
    with pytest.raises(ConfigError, match="users.remote_nodes"):
        resolve_experiment({"users": {"backend": "ray", "remote_nodes": ["n0"]}})
    with pytest.raises(ConfigError, match="ray.cpus_per_node"):
        resolve_experiment({"ray": {"cpus_per_node": 0.0}})
    # no per-node user cap: a node's simulated radios share one socket (test_sim_net)
    assert resolve_experiment({"users": {"count": 2001, "node_processes": 2, "backend": "ray"}})
    config = resolve_experiment({"users": {"backend": "ray"}, "ray": {"cpus_per_node": 1.5}})
    with pytest.raises(RuntimeError, match="offers 2 CPUs; 2 node actors"):
        RayNodes(config, 2)
    assert ray.is_initialized()  # the module's cluster is not this run's to stop

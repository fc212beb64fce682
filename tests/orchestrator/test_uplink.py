"""The declared model-update uplink: digital FedAvg (secure aggregation, a user dropping
out) through ``airmix run``, and the privacy invariant still enforced for every method
that does not declare it."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from learning.federated.gradient_inversion import InversionConfig
from learning.methods import METHODS
from learning.methods.base import MODEL_UPDATES
from orchestrator import experiment as ex
from orchestrator import inversion_audit
from orchestrator import messages as m
from orchestrator.config import resolve_experiment
from orchestrator.engine import UPDATE_VIEWS_FILE
from orchestrator.link import LinkConfig, NodeLink, OrchestratorLink
from orchestrator.main_job import run_experiment
from orchestrator.rundir import RunDirectory

FAST = LinkConfig(heartbeat_s=0.1, liveness_s=1.0, request_timeout_s=0.5, retries=1)
REPLY = {
    "user_ids": ["u0"],
    "blobs": [{}],
    "updates": np.arange(6, dtype=np.float32).reshape(1, 6),
}


def _settings(method: dict) -> dict:
    return {
        "experiment": {"name": "fl", "seed": 2, "rounds": 2},
        "users": {"count": 4, "group_size": 4, "node_processes": 2},
        "model": {"batch_size": 64},
        "method": method,
        "attacks": {"enabled": [], "eavesdropper": False},
        "link": {"curve": False},
    }


def test_only_a_method_declaring_model_updates_gets_the_capability():
    secure = resolve_experiment(_settings({"name": "fedavg", "aggregation": "secure"}))
    assert ex.link_capabilities(secure) == {MODEL_UPDATES}
    for name in METHODS:  # every method with its defaults (fedavg's: over the air)
        config = resolve_experiment(_settings({"name": name}))
        assert ex.link_capabilities(config) == frozenset(), name


def _wait_rejects(link: OrchestratorLink, reason: str, timeout_s: float = 5.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        link.recv(timeout_s=0.05)
        if link.counters.snapshot()["rejects"].get(reason):
            return link.counters.snapshot()["rejects"][reason]
    return 0


def test_a_run_without_the_capability_refuses_model_updates():
    """The orchestrator of a non-FL run (``oam``: no capability) refuses an update a
    node sends anyway (reason "privacy", counted), and a node of such a run cannot even
    encode one; under the capability the same reply is accepted."""
    oam = resolve_experiment(_settings({"name": "oam"}))
    plain = LinkConfig(**{**vars(FAST), "capabilities": ex.link_capabilities(oam)})
    granted = LinkConfig(**{**vars(FAST), "capabilities": frozenset({MODEL_UPDATES})})
    with OrchestratorLink(config=plain) as orch:
        with NodeLink("node0", orch.address, config=FAST) as node:
            node.join(["u0"], timeout_s=2.0)
            with pytest.raises(m.ProtocolError) as info:
                node.send("orchestrator", "uplink_reply", REPLY)
            assert info.value.reason == "privacy"
        with NodeLink("node1", orch.address, config=granted) as hostile:
            hostile.join(["u1"], timeout_s=2.0)
            hostile.send("orchestrator", "uplink_reply", {**REPLY, "user_ids": ["u1"]})
            assert _wait_rejects(orch, "privacy") == 1
            with pytest.raises(m.ProtocolError):  # nor can the orchestrator ask for one
                orch.send("node1", "uplink_request", {"round_id": 0, "slot_id": 0,
                          "phase": "fedavg/update", "user_ids": ["u1"], "blobs": [{}]})  # fmt: skip
    with OrchestratorLink(config=granted) as orch:
        with NodeLink("node0", orch.address, config=granted) as node:
            node.join(["u0"], timeout_s=2.0)
            node.send("orchestrator", "uplink_reply", REPLY)
            assert _wait_rejects(orch, "privacy", timeout_s=0.5) == 0


@pytest.fixture(scope="module")
def secure_runs(tmp_path_factory):
    """Two runs of the same secure-aggregation experiment (a user drops out of some
    aggregations after sharing its keys); the gradient-inversion audit is cut to one view
    and a short optimisation to keep the test fast."""
    runs = []
    patch = pytest.MonkeyPatch()
    patch.setattr(inversion_audit, "MAX_VIEWS", 1)
    patch.setattr(inversion_audit, "INVERSION", InversionConfig(iterations=20))
    patch.setattr(inversion_audit, "EVALUATOR_EPOCHS", 3)
    for attempt in range(2):
        base = tmp_path_factory.mktemp(f"secure{attempt}")
        settings = _settings(
            {"name": "fedavg", "aggregation": "secure", "local_steps": 2, "dropout": 0.1}
        )
        settings["experiment"]["out_dir"] = str(base)
        config = resolve_experiment(settings)
        run = RunDirectory.create(base, "fl", config.to_toml())
        summary = run_experiment(config, run, False, progress=False)
        runs.append((run, summary))
    patch.undo()
    return runs


def _metrics(run: RunDirectory) -> list[dict]:
    return [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]


def test_secure_fedavg_trains_over_the_link_and_recovers_dropouts(secure_runs):
    run, summary = secure_runs[0]
    rounds = _metrics(run)
    assert len(rounds) == 2
    assert rounds[-1]["accuracy"] > 0.5  # chance 0.1
    for r in rounds:
        assert r["round_channel_uses"] == 0 and r["slots"] == 0  # nothing on the air
        assert r["round_uplink_bytes"] > 0 and r["link_rejects"] == {}
        assert r["round_digital_bytes"] >= r["round_uplink_bytes"]
    # the nodes' local audit: one line per (masked) update sent; some aggregation lost a
    # user after the key sharing and went on with the three others (threshold 3 of 4)
    lines = [
        json.loads(line)
        for path in (run.path / "audit").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    per_step: dict[tuple[int, int], int] = {}
    for line in lines:
        per_step[(line["round"], line["slot"])] = per_step.get((line["round"], line["slot"]), 0) + 1
    assert max(per_step.values()) == 4 and 3 in per_step.values(), per_step
    # the server saw only means of the survivors (the recorded round)
    views = torch.load(run.path / UPDATE_VIEWS_FILE, weights_only=True)
    assert views and {v["kind"] for v in views} == {"secure_sum"}
    assert summary["link"]["rejects"]["orchestrator"] == {}
    # the run's audit inverted what the server saw: the secure mean, beside chance
    inversion = summary["privacy"]["gradient_inversion"]
    assert inversion["server"]["kinds"] == ["secure_sum"] and inversion["eavesdropper"] is None
    for figure in ("task_accuracy", "psnr_db", "ssim"):
        for key in (figure, f"{figure}_chance", f"{figure}_label_chance"):
            assert np.isfinite(summary["headline"][f"gradient_inversion_{key}"])


def test_same_seed_same_metrics(secure_runs):
    (a, _), (b, _) = secure_runs
    keys = ("accuracy", "loss", "round_uplink_bytes", "round_channel_uses", "alive_users")
    assert [{k: r[k] for k in keys} for r in _metrics(a)] == [
        {k: r[k] for k in keys} for r in _metrics(b)
    ]

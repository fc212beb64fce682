"""Measured mixup error: logs, scoring against a direct computation, metrics annotation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from orchestrator.mixup_error import RESULT_FILE, MixupLog, plot, score_run

BATCH, DIM, TAIL = 4, 6, 10


def _write_slot(run_dir, rng, round_id, slot_id, users, noise, nodes):
    """Users' vectors in their nodes' logs, the receiver's noisy estimate in its log;
    returns (weights, vectors, estimate)."""
    weights = rng.dirichlet(np.ones(len(users)))
    vectors = rng.standard_normal((len(users), BATCH * (DIM + TAIL))).astype(np.float32)
    for user, vector in zip(users, vectors, strict=True):
        nodes[user].slot(round_id, slot_id, [user], vector)
    estimate = (weights @ vectors + noise * rng.standard_normal(vectors.shape[1])).astype(
        np.float32
    )
    MixupLog.receiver(run_dir).slot(
        round_id,
        slot_id,
        users,
        estimate,
        weights=weights,
        predicted_mse=noise**2,
        batch=BATCH,
        dim=DIM,
    )
    return weights, vectors, estimate


def test_scoring_equals_a_direct_computation(tmp_path):
    rng = np.random.default_rng(0)
    nodes = {u: MixupLog.node(tmp_path, f"node{i % 2}") for i, u in enumerate("abcd")}
    (tmp_path / "metrics.jsonl").write_text(
        "\n".join(json.dumps({"round": r, "accuracy": 0.5}) for r in range(2)) + "\n"
    )
    expected: dict[int, list[tuple[float, float]]] = {0: [], 1: []}
    slot = 0
    for round_id, noise in ((0, 0.1), (1, 0.03)):
        for group in (["a", "b"], ["c", "d"]):
            w, x, estimate = _write_slot(tmp_path, rng, round_id, slot, group, noise, nodes)
            error = (estimate.astype(float) - w @ x.astype(float)).reshape(BATCH, DIM + TAIL)
            expected[round_id].append(
                (float(np.mean(error[:, :DIM] ** 2)), float(np.mean(error[:, DIM:] ** 2)))
            )
            slot += 1
    # a resumed run replays slot 3: the last entry wins
    w, x, estimate = _write_slot(tmp_path, rng, 1, 3, ["c", "d"], 0.03, nodes)
    error = (estimate.astype(float) - w @ x.astype(float)).reshape(BATCH, DIM + TAIL)
    expected[1][1] = (float(np.mean(error[:, :DIM] ** 2)), float(np.mean(error[:, DIM:] ** 2)))
    # a slot whose user vector is missing (remote node) is left out
    MixupLog.receiver(tmp_path).append(
        {
            "round": 1,
            "slot": 9,
            "users": ["z"],
            "weights": [1.0],
            "predicted_mse": 1.0,
            "batch": BATCH,
            "dim": DIM,
        },
        np.zeros(BATCH * (DIM + TAIL)),
    )
    result = score_run(tmp_path)
    assert len(result["slots"]) == 4
    for round_id, pairs in expected.items():
        scored = result["rounds"][str(round_id)]
        payload = 10 * math.log10(np.mean([p for p, _ in pairs]))
        label = 10 * math.log10(np.mean([t for _, t in pairs]))
        assert scored["measured_mixup_mse_db"] == pytest.approx(payload)
        assert scored["measured_label_mse_db"] == pytest.approx(label)
    # noise 0.1 -> about -20 dB, 0.03 -> about -30 dB; the prediction sits beside it
    assert -21.5 < result["rounds"]["0"]["measured_mixup_mse_db"] < -18.5
    assert result["rounds"]["1"]["predicted_mixup_mse_db"] == pytest.approx(20 * math.log10(0.03))
    assert json.loads((tmp_path / RESULT_FILE).read_text())["overall"]["slots"] == 4
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["measured_mixup_mse_db"] for m in lines] == pytest.approx(
        [result["rounds"][str(r)]["measured_mixup_mse_db"] for r in (0, 1)]
    )
    assert plot(result, tmp_path / "plots" / "mixup_error.png").read_bytes()[:4] == b"\x89PNG"

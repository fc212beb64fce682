"""The privacy invariant on a live system: a node never sends its samples or features
over the digital link.

A real run (orchestrator in this process, two real node processes, CurveZMQ, radios on
the simulated medium, feature mode so gradients go down and evaluation reports come
up) with a recording :class:`~orchestrator.link.OrchestratorLink` that keeps every
frame a node sends, as received after decryption and before any validation. Each frame
is then checked independently of the link's own validation:

* it decodes as a message a node may send (``messages.node_sendable_types``), and the
  link rejected nothing;
* its raw msgpack holds no binary blob, no array encoding, no list longer than the class
  count and no long string; no frame is anywhere near payload-sized;
* no 16-byte window of the node's private samples (raw pixels, their raw-mode payload
  encoding, their initial features; as float32 or float64, little or big endian) occurs
  in any frame, and no two consecutive floats of a message equal two consecutive values
  of a private sample (a planted leak shows both detectors work);
* the only data-derived content is the deliberate disclosure: label counts equal to the
  users' label histograms, and scalar evaluation results.

(The nodes' radios are the analog path: their ``simnet://`` calls carry waveforms to the
simulated air, not over the orchestrator link, and are out of scope here.)
"""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
import torch

from learning.framing import frame_reals
from orchestrator import experiment as ex
from orchestrator import messages as m
from orchestrator.config import resolve_experiment
from orchestrator.link import OrchestratorLink
from orchestrator.main_job import run_experiment
from orchestrator.rundir import RunDirectory


class RecordingLink(OrchestratorLink):
    """An orchestrator link that keeps a copy of every frame received from a node."""

    instances: list[RecordingLink] = []

    def __init__(self, *args, **kwargs) -> None:
        self.frames: list[tuple[str, bytes]] = []  # (routing id, message frame)
        RecordingLink.instances.append(self)
        super().__init__(*args, **kwargs)

    def _on_frames(self, frames) -> None:
        parts = [frame.bytes for frame in frames]
        self.frames.append((parts[0].decode(errors="replace"), b"".join(parts[1:])))
        super()._on_frames(frames)


def _walk(value, path="body"):
    """Yield (path, leaf) for every leaf of a decoded msgpack value; containers too."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(key, f"{path}.<key>")
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


def _windows(vectors: list[np.ndarray], width: int = 16) -> set[bytes]:
    """Every aligned ``width``-byte window of the vectors in 4 encodings."""
    out: set[bytes] = set()
    for vector in vectors:
        for dtype in ("<f4", ">f4", "<f8", ">f8"):
            data = np.ascontiguousarray(vector, dtype=dtype).tobytes()
            step = np.dtype(dtype).itemsize
            out.update(data[i : i + width] for i in range(0, len(data) - width + 1, step))
    return out


def _pairs(vectors: list[np.ndarray]) -> set[tuple[float, float]]:
    """Consecutive value pairs of the vectors (as float32 values)."""
    out: set[tuple[float, float]] = set()
    for vector in vectors:
        v = np.asarray(vector, dtype=np.float32).astype(float)
        out.update(zip(v[:-1].tolist(), v[1:].tolist(), strict=True))
    return out


def _leak(frame: bytes, windows: set[bytes], pairs: set[tuple[float, float]]) -> str | None:
    """Why ``frame`` leaks private values, or None."""
    for start in range(len(frame) - 15):
        if frame[start : start + 16] in windows:
            return f"sample bytes at offset {start}"
    floats = [
        float(np.float32(leaf))
        for _, leaf in _walk(msgpack.unpackb(frame, raw=False)["body"])
        if isinstance(leaf, float)
    ]
    for pair in zip(floats[:-1], floats[1:], strict=True):
        if pair in pairs:
            return f"sample values {pair}"
    return None


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("privacy")
    config = resolve_experiment(
        {
            "experiment": {"name": "privacy", "seed": 5, "rounds": 1, "out_dir": str(base)},
            "users": {"count": 4, "group_size": 2, "node_processes": 2},
            "model": {"mode": "features", "batch_size": 32},
            "attacks": {"enabled": []},
            # frequent heartbeats, so even a fast one-round run has nodes send some
            "link": {"heartbeat_s": 0.05},
        }
    )
    run = RunDirectory.create(base, "privacy", config.to_toml())
    RecordingLink.instances.clear()
    summary = run_experiment(config, run, False, progress=False, link_class=RecordingLink)
    (link,) = RecordingLink.instances
    return {"config": config, "link": link, "summary": summary, "run": run}


def test_every_node_frame_is_a_node_message_without_payload(recorded_run):
    config, link = recorded_run["config"], recorded_run["link"]
    assert recorded_run["summary"]["rounds"] == 1
    data = ex.load_experiment_data(config)
    n_classes = data.train.n_classes
    sendable = set(m.node_sendable_types())
    n_reals = frame_reals(32, config.model.feature_dim, n_classes)
    payload_bytes = 4 * n_reals  # one user's slot payload as float32
    seen: dict[str, int] = {}
    assert link.frames, "nothing recorded"
    for routing_id, frame in link.frames:
        assert routing_id in ("node0", "node1")
        message = m.decode(frame, sender_role="node")  # raises if not a node message
        assert message.sender == routing_id and message.type in sendable
        seen[message.type] = seen.get(message.type, 0) + 1
        assert len(frame) < min(1024, payload_bytes / 8), (message.type, len(frame))
        raw = msgpack.unpackb(frame, raw=False)
        for path, leaf in _walk(raw["body"]):
            assert not isinstance(leaf, bytes | bytearray), f"{message.type} {path}: binary"
            if isinstance(leaf, dict):
                assert not {"dtype", "shape", "data"} <= set(leaf), f"{path}: array"
            if isinstance(leaf, list):
                assert len(leaf) <= n_classes, f"{message.type} {path}: {len(leaf)} entries"
            if isinstance(leaf, str):
                assert len(leaf) <= 64, f"{message.type} {path}: long string"
    # the run exercised every kind of node traffic, and the link rejected nothing
    assert {"hello", "heartbeat", "ack", "label_report", "eval_report"} <= set(seen)
    assert seen["ack"] > 50 and link.counters.snapshot()["rejects"] == {}


def test_no_private_sample_value_leaves_a_node(recorded_run):
    config, link = recorded_run["config"], recorded_run["link"]
    data = ex.load_experiment_data(config)
    method = ex.build_method(config, data)
    encoder = method.build_user_encoder().eval()  # the users' initial encoder
    hosted = ex.node_users(config)
    index = {u: i for i, u in enumerate(ex.user_ids(config))}
    by_node = {}
    for routing_id, frame in link.frames:
        by_node.setdefault(routing_id, []).append(frame)
    assert set(by_node) == set(hosted)
    for node_id, users in hosted.items():
        private = [data.user_data(index[u]) for u in users]
        x = torch.cat([d.x for d in private])
        with torch.no_grad():
            features = encoder(x)
        rows = [r.numpy().ravel() for r in x] + [r.numpy() for r in features]
        rows += [r.numpy() for r in method.codec.encode(x)]  # raw-mode payloads
        windows, pairs = _windows(rows), _pairs(rows)
        frames = by_node[node_id]
        for frame in frames:
            assert _leak(frame, windows, pairs) is None, node_id
        # planted leaks (a row smuggled as a blob, two values as per-user losses) are found
        blob = msgpack.packb({"body": {"x": rows[5].astype("<f4").tobytes()}})
        losses = {users[0]: float(rows[-1][3]), users[1]: float(rows[-1][4])}
        body = {"round_id": 0, "loss": losses, "correct": {}, "count": {u: 1 for u in users}}
        planted = m.encode(m.Message("eval_report", body, 1, node_id, 0.0))
        assert _leak(blob, windows, pairs) and _leak(planted, windows, pairs)
        # the deliberate, bounded disclosure: label counts, exactly the histograms
        reports = [m.decode(f).body for f in frames if m.decode(f).type == "label_report"]
        assert len(reports) == 1
        for user, d in zip(users, private, strict=True):
            expected = np.bincount(d.y.numpy(), minlength=data.train.n_classes).tolist()
            assert reports[0]["counts"][user] == expected
        for f in frames:
            message = m.decode(f)
            if message.type == "eval_report":
                assert set(message.body["count"]) == set(users)
                assert all(n == len(data.test) for n in message.body["count"].values())

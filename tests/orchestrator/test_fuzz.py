"""Fuzz a real orchestrator ROUTER with malformed, oversized, replayed, spoofed and
unauthenticated messages: all are rejected and counted by reason, none reaches the
application, and a good node is still served afterwards."""

from __future__ import annotations

import collections
import time

import msgpack
import numpy as np
import pytest
import zmq

from orchestrator import messages as m
from orchestrator.keys import create_keys, load_node_keys
from orchestrator.link import LinkConfig, NodeLink, OrchestratorLink
from tests.orchestrator.test_link import Responder

CONFIG = LinkConfig(heartbeat_s=0.2, liveness_s=60.0, request_timeout_s=1.0, max_bytes=4096)


def _wire(msg_type="heartbeat", body=None, seq=1, sender="node1", ts=None, **over) -> bytes:
    obj = {
        "v": m.PROTOCOL_VERSION,
        "type": msg_type,
        "seq": seq,
        "sender": sender,
        "ts": time.time() if ts is None else ts,
        "re": None,
        "body": {} if body is None else body,
    }
    obj.update(over)
    return msgpack.packb(obj, use_bin_type=True)


def _random_object(rng: np.random.Generator, depth: int = 0):
    kind = rng.integers(0, 7 if depth < 3 else 5)
    if kind == 0:
        return int(rng.integers(-(2**40), 2**40))
    if kind == 1:
        return float(rng.normal())
    if kind == 2:
        return "".join(rng.choice(list("abcdefghijk_"), size=rng.integers(0, 12)))
    if kind == 3:
        return rng.bytes(int(rng.integers(0, 16)))
    if kind == 4:
        return None
    if kind == 5:
        return [_random_object(rng, depth + 1) for _ in range(rng.integers(0, 4))]
    keys = ["v", "type", "seq", "sender", "ts", "re", "body", "round_id", "user_ids", "x"]
    return {str(rng.choice(keys)): _random_object(rng, depth + 1) for _ in range(rng.integers(4))}


def fuzz_frames(rng: np.random.Generator, n: int, hello_seq: int) -> list[tuple[list[bytes], str]]:
    """``n`` bad frames (payload frames after the routing id) and the reason each earns."""
    transmit = {
        "round_id": 1,
        "slot_id": 0,
        "user_ids": ["a"],
        "tx_scale": m.encode_array(np.ones(1, complex)),
        "weights": m.encode_array(np.ones(1)),
    }
    report = {"round_id": 1, "loss": {"a": 0.1}, "correct": {"a": 1}, "count": {"a": 2}}
    bad_bodies = [
        ("eval_report", {**report, "count": {"a": -1}}),
        ("eval_report", {**report, "secret": 1}),
        ("eval_report", {"round_id": 1}),
        ("eval_report", {**report, "loss": {"a": m.encode_array(np.ones(64))}}),
        ("label_report", {"round_id": 1, "counts": {"a": [1.5]}}),
        ("hello", {"node_id": "node1", "user_ids": ["a", "a"]}),
    ]
    frames = []
    for i in range(n):
        kind = i % 13
        seq = hello_seq + 1 + i
        if kind == 0:
            data = rng.bytes(int(rng.integers(1, 300)))
        elif kind == 1:
            full = _wire("eval_report", report, seq=seq)
            data = full[: int(rng.integers(1, len(full)))]
        elif kind == 2:
            data = msgpack.packb(_random_object(rng), use_bin_type=True)
        elif kind == 3:
            data = _wire(seq=seq, v=int(rng.integers(2, 100)))
        elif kind == 4:
            data = _wire(seq=str(seq)) if rng.random() < 0.5 else _wire(seq=seq, sender=7)
        elif kind == 5:
            data = _wire("launch_" + str(i), seq=seq)
        elif kind == 6:
            data = _wire("transmit", transmit, seq=seq)  # orchestrator-only type
        elif kind == 7:
            msg_type, body = bad_bodies[int(rng.integers(len(bad_bodies)))]
            data = _wire(msg_type, body, seq=seq)
        elif kind == 8:
            data = _wire("ack", {"note": "x" * 200}, seq=seq) + rng.bytes(CONFIG.max_bytes)
        elif kind == 9:  # replayed: a sequence number below the guard's reorder window
            # (within it, a number never seen is a legitimate late arrival, not a replay)
            below = hello_seq - m.ReplayGuard().reorder_window
            frames.append(([_wire(seq=below - int(rng.integers(0, 10**6)))], "replay"))
            continue
        elif kind == 10:  # stale: fresh sequence number, old timestamp
            frames.append(([_wire(seq=seq, ts=time.time() - 1000.0)], "stale"))
            continue
        elif kind == 11:  # node1's connection speaking for node0
            frames.append(([_wire(seq=seq, sender="node0")], "spoofed"))
            continue
        else:
            frames.append(([_wire(seq=seq), b"extra"], "frames"))
            continue
        try:
            m.decode(data, sender_role="node", max_bytes=CONFIG.max_bytes)
        except m.ProtocolError as exc:
            frames.append(([data], exc.reason))
        else:  # pragma: no cover - the generator only makes invalid frames
            raise AssertionError(f"fuzz case {kind} produced a valid message")
    return frames


def run_fuzz(tmp_path, n_messages: int, n_unauthenticated: int, seed: int) -> None:
    keys_dir = tmp_path / "keys"
    create_keys(keys_dir, 3)
    rng = np.random.default_rng(seed)
    with OrchestratorLink(keys_dir=keys_dir, config=CONFIG) as orch, Responder(orch) as app:
        ctx = zmq.Context()
        sockets = []
        try:

            def dealer(node_id, keys, server_key=orch.server_public_key):
                sock = ctx.socket(zmq.DEALER)
                sock.linger = 0
                sock.identity = node_id.encode()
                if keys is not None:
                    sock.curve_publickey, sock.curve_secretkey = keys
                    sock.curve_serverkey = server_key
                sock.connect(orch.address)
                sockets.append(sock)
                return sock

            # an authenticated, joined node that then sends only garbage
            fuzzer = dealer("node1", load_node_keys(keys_dir, "node1"))
            hello_seq = m.SequenceCounter().next()
            hello = {"node_id": "node1", "user_ids": ["a"]}
            fuzzer.send(m.encode(m.Message("hello", hello, hello_seq, "node1", time.time())))
            assert fuzzer.poll(5000), "no welcome for the fuzzing node"
            assert m.decode(fuzzer.recv()).type == "welcome"
            # an authenticated node that never joined
            lurker = dealer("node2", load_node_keys(keys_dir, "node2"))
            cases = fuzz_frames(rng, n_messages, hello_seq)
            expected = collections.Counter(reason for _, reason in cases)
            for i in range(100):
                lurker.send(_wire(seq=hello_seq + i, sender="node2"))
            expected["not_joined"] += 100
            for parts, _ in cases:
                fuzzer.send_multipart(parts)
            # clients without a known key or without encryption
            for i in range(n_unauthenticated):
                rogue = zmq.curve_keypair() if i % 3 else None
                sock = dealer(f"rogue{i}", rogue)
                for _ in range(3):
                    sock.send(_wire(seq=i, sender=f"rogue{i}"), zmq.NOBLOCK)

            deadline = time.monotonic() + 60.0
            while time.monotonic() < deadline:
                rejects = orch.counters.snapshot()["rejects"]
                done = sum(rejects.get(r, 0) for r in expected) >= sum(expected.values())
                if done and rejects.get("unauthenticated", 0) >= n_unauthenticated:
                    break
                time.sleep(0.05)
            rejects = collections.Counter(orch.counters.snapshot()["rejects"])
            assert rejects.pop("unauthenticated", 0) >= n_unauthenticated
            assert rejects == expected
            assert sum(expected.values()) >= n_messages
        finally:
            for sock in sockets:
                sock.close(linger=0)
            ctx.term()

        # the orchestrator still serves a good node
        with NodeLink("node0", orch.address, keys_dir=keys_dir, config=CONFIG) as good:
            good.join(["u0"])
            report = {"round_id": 2, "loss": {"u0": 0.2}, "correct": {"u0": 3}, "count": {"u0": 4}}
            assert good.request("orchestrator", "eval_report", report).type == "ack"
        assert [msg.sender for msg in app.messages] == ["node0"]  # no fuzz reached the app


def test_fuzz_10k_messages_all_rejected_and_counted(tmp_path):
    run_fuzz(tmp_path, n_messages=10_000, n_unauthenticated=12, seed=1)


@pytest.mark.slow
def test_fuzz_100k_messages(tmp_path):
    run_fuzz(tmp_path, n_messages=100_000, n_unauthenticated=60, seed=2)

"""ROUTER/DEALER link over real ZeroMQ sockets: requests, retries, CurveZMQ, liveness."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from orchestrator.keys import create_keys, load_node_keys
from orchestrator.link import (
    LinkConfig,
    LinkTimeout,
    NodeLink,
    OrchestratorLink,
    PeerDead,
    RemoteError,
)

REPO = Path(__file__).resolve().parents[2]
FAST = LinkConfig(heartbeat_s=0.1, liveness_s=1.0, request_timeout_s=0.5, retries=2)


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("keys")
    create_keys(directory, 3)
    return directory


@pytest.fixture
def orch(keys_dir):
    link = OrchestratorLink(keys_dir=keys_dir, config=FAST)
    yield link
    link.close()


def wait_event(link, kind: str, timeout_s: float = 5.0):
    """The next event of ``kind`` (other kinds are skipped), or None at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        event = link.recv(timeout_s=0.05)
        if event is not None and event.kind == kind:
            return event
    return None


class Responder(threading.Thread):
    """Application thread: answers each "message" event with ``answer(link, msg)``."""

    def __init__(self, link, answer=None) -> None:
        super().__init__(daemon=True)
        self.link, self.answer = link, answer or (lambda link, msg: link.reply(msg))
        self.messages: list = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            event = self.link.recv(timeout_s=0.05)
            if event is not None and event.kind == "message":
                self.messages.append(event.message)
                self.answer(self.link, event.message)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join(timeout=5)


def test_join_requests_both_ways_and_counters(orch, keys_dir):
    with NodeLink("node0", orch.address, keys_dir=keys_dir, config=FAST) as node:
        welcome = node.join(["u0", "u1"], radio="sim://lab/u0")
        assert welcome.type == "welcome" and welcome.body["liveness_s"] == FAST.liveness_s
        joined = wait_event(orch, "joined")
        assert joined.peer == "node0" and joined.message.body["user_ids"] == ["u0", "u1"]
        assert orch.nodes()["node0"].user_ids == ("u0", "u1") and orch.alive_nodes() == ["node0"]
        with Responder(node) as responder:
            grad = np.array([0.5 + 0.5j, 1.0], dtype=np.complex64)
            body = {
                "round_id": 1,
                "slot_id": 0,
                "user_ids": ["u0", "u1"],
                "weights": np.array([0.5, 0.5]),
                "arrays": {"grad": grad},
            }
            reply = orch.request("node0", "feedback", body)
            assert reply.type == "ack" and reply.sender == "node0"
            got = responder.messages[0]
            np.testing.assert_array_equal(got.body["arrays"]["grad"], grad)
        with Responder(orch) as responder:
            report = {"round_id": 1, "loss": {"u0": 0.3}, "correct": {"u0": 9}, "count": {"u0": 10}}
            assert node.request("orchestrator", "eval_report", report).type == "ack"
            assert responder.messages[0].body["count"] == {"u0": 10}
        time.sleep(0.3)  # a few heartbeats
        o, n = orch.counters.snapshot(), node.counters.snapshot()
        assert o["sent_by_type"]["feedback"] == 1 == n["received_by_type"]["feedback"]
        assert n["sent_by_type"]["eval_report"] == 1 == o["received_by_type"]["eval_report"]
        assert o["sent_by_type"]["heartbeat"] >= 1 and n["sent_by_type"]["heartbeat"] >= 1
        assert o["rejects"] == {} and n["rejects"] == {}
        assert o["sent_bytes"] > 0 and n["received_bytes"] > 0


def test_errors_timeouts_and_idempotent_retries(orch, keys_dir):
    with NodeLink("node0", orch.address, keys_dir=keys_dir, config=FAST) as node:
        node.join(["u0"])

        def answer(link, msg):
            if msg.type == "eval_request":
                link.reply(msg, "error", {"reason": "no_data", "detail": "empty"})
            elif msg.type == "send_pilots":
                time.sleep(0.8)  # slower than one attempt: the request is re-sent meanwhile
                link.reply(msg)
            # "shutdown" gets no answer

        with Responder(node, answer) as responder:
            with pytest.raises(RemoteError) as info:
                orch.request("node0", "eval_request", {"round_id": 1, "user_ids": ["u0"]})
            assert info.value.reason == "no_data"
            pilots = {"round_id": 1, "slot_id": 0, "user_ids": ["u0"], "pilot_ids": [3]}
            assert orch.request("node0", "send_pilots", pilots, timeout_s=0.3, retries=5)
            with pytest.raises(LinkTimeout):
                orch.request("node0", "shutdown", {}, timeout_s=0.2, retries=2)
            types = [msg.type for msg in responder.messages]
        # each request reached the application exactly once despite the re-sends
        assert types == ["eval_request", "send_pilots", "shutdown"]
        assert node.counters.snapshot()["duplicates"] >= 3
    with pytest.raises(PeerDead):
        orch.request("nobody", "shutdown", {})


def test_request_many_waits_for_all_and_counts_link_vs_serving_time(orch, keys_dir):
    """Concurrent requests to two nodes: each result in call order (a reply, a refusal,
    an unknown peer), the replies carry the peers' serving time, and the counters split
    the caller's blocked time into the peers' serving time and the link's share."""
    with (
        NodeLink("node0", orch.address, keys_dir=keys_dir, config=FAST) as node0,
        NodeLink("node1", orch.address, keys_dir=keys_dir, config=FAST) as node1,
    ):
        node0.join(["u0"])
        node1.join(["u1"])

        node1_has_its_request = threading.Event()
        overlapped: list[bool] = []

        def slow(link, msg):
            # sent one after the other, node1's request would wait for this reply
            overlapped.append(node1_has_its_request.wait(timeout=10.0))
            time.sleep(0.2)
            link.reply(msg)

        def refuse(link, msg):
            node1_has_its_request.set()
            link.reply(msg, "error", {"reason": "busy", "detail": "try later"})

        stop = {"user_ids": ["u0"]}
        with Responder(node0, slow), Responder(node1, refuse):
            started = time.monotonic()
            results = orch.request_many(
                [
                    ("node0", "stop_transmit", stop),
                    ("node1", "stop_transmit", {"user_ids": ["u1"]}),
                    ("nobody", "stop_transmit", stop),
                ]
            )
            blocked = time.monotonic() - started
        reply, refused, unknown = results
        assert reply.type == "ack" and 0.2 <= reply.body["served_s"] < blocked
        assert isinstance(refused, RemoteError) and refused.reason == "busy"
        assert isinstance(unknown, PeerDead)
        assert overlapped == [True]  # both requests were out at once
        counters = orch.counters.snapshot()
        assert counters["requests"] == 3
        assert counters["served_seconds"] == pytest.approx(reply.body["served_s"])
        assert 0 <= counters["request_seconds"] - counters["served_seconds"] < blocked - 0.2
        answered = node0.counters.snapshot()
        assert answered["answered_by_type"] == {"stop_transmit": 1}
        assert answered["answer_seconds_by_type"]["stop_transmit"] == reply.body["served_s"]


def test_unknown_key_plaintext_and_spoofed_identity_cannot_join(orch, keys_dir, tmp_path):
    create_keys(tmp_path, 1)  # a "node0" key pair the orchestrator does not know
    rogue_keys = load_node_keys(tmp_path, "node0")
    server_key = orch.server_public_key
    impostors = [
        NodeLink("node0", orch.address, node_keys=rogue_keys, server_public_key=server_key),
        NodeLink("node0", orch.address),  # no encryption at all
        # a known key (node1) claiming another node's identity
        NodeLink("node0", orch.address, node_keys=load_node_keys(keys_dir, "node1"),
                 server_public_key=server_key),
    ]  # fmt: skip
    try:
        for impostor in impostors:
            with pytest.raises(LinkTimeout):
                impostor.join(["u0"], timeout_s=0.3, retries=1)
    finally:
        for impostor in impostors:
            impostor.close()
    rejects = orch.counters.snapshot()["rejects"]
    assert rejects.get("unauthenticated", 0) >= 2 and rejects.get("spoofed", 0) >= 1
    assert wait_event(orch, "joined", timeout_s=0.3) is None
    assert orch.nodes() == {}


def _start_node_process(address: str, keys_dir: Path, node_id: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.orchestrator.node_process", address, str(keys_dir),
         node_id, f"{node_id}-u0", f"{node_id}-u1"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_killed_node_process_is_detected_by_heartbeat(orch, keys_dir):
    procs = [_start_node_process(orch.address, keys_dir, f"node{i}") for i in (1, 2)]
    try:
        joined = {wait_event(orch, "joined", timeout_s=20.0).peer for _ in procs}
        assert joined == {"node1", "node2"}
        time.sleep(3 * FAST.heartbeat_s)
        assert orch.alive_nodes() == ["node1", "node2"]  # heartbeats keep them alive

        killed_at = time.monotonic()
        os.kill(procs[0].pid, signal.SIGKILL)
        dead = wait_event(orch, "dead", timeout_s=10.0)
        detected_after = time.monotonic() - killed_at
        assert dead is not None and dead.peer == "node1"
        # liveness 1 s; generous slack for a loaded 2-core machine
        assert detected_after < FAST.liveness_s + 4.0
        assert orch.alive_nodes() == ["node2"]
        with pytest.raises(PeerDead):
            orch.request("node1", "shutdown", {})
        # the survivor is still served and shuts down cleanly
        assert orch.request("node2", "shutdown", {"reason": "test"}).type == "ack"
        assert procs[1].wait(timeout=10) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            proc.stdout.close()
            proc.stderr.close()


def test_node_detects_dead_orchestrator(keys_dir):
    orch = OrchestratorLink(keys_dir=keys_dir, config=FAST)
    with NodeLink("node0", orch.address, keys_dir=keys_dir, config=FAST) as node:
        node.join(["u0"])
        assert node.joined
        orch.close()
        dead = wait_event(node, "dead", timeout_s=10.0)
        assert dead is not None and dead.peer == "orchestrator" and not node.joined
        with pytest.raises(PeerDead):
            node.request("orchestrator", "eval_report",
                         {"round_id": 0, "loss": {}, "correct": {}, "count": {}})  # fmt: skip


def test_plaintext_link_and_node_restart_rejoins():
    with OrchestratorLink(config=FAST) as orch:
        assert orch.server_public_key is None
        first = NodeLink("nodeA", orch.address, config=FAST)
        first.join(["a"])
        assert wait_event(orch, "joined").peer == "nodeA"
        first.close()
        assert wait_event(orch, "dead", timeout_s=10.0).peer == "nodeA"
        with NodeLink("nodeA", orch.address, config=FAST) as second:  # restarted process
            second.join(["a", "b"])
            assert wait_event(orch, "joined").message.body["user_ids"] == ["a", "b"]
            assert orch.nodes()["nodeA"].alive


def test_bad_arguments():
    with pytest.raises(ValueError):
        LinkConfig(heartbeat_s=1.0, liveness_s=0.5)
    with pytest.raises(ValueError):
        LinkConfig(request_timeout_s=float("nan"))
    with pytest.raises(ValueError):
        LinkConfig(retries=-1)
    with pytest.raises(ValueError):
        NodeLink("bad id!", "tcp://127.0.0.1:1")
    with pytest.raises(ValueError):
        NodeLink("node0", "tcp://127.0.0.1:1", node_keys=(b"x" * 40, b"y" * 40))
    with OrchestratorLink(config=FAST) as orch:
        from orchestrator.messages import ProtocolError

        with pytest.raises(ProtocolError):  # orchestrators do not send node messages
            orch.send("x", "eval_report", {"round_id": 0, "loss": {}, "correct": {}, "count": {}})
        with pytest.raises(ValueError):
            orch.reply(None, "transmit")

"""Hardening of the run and its processes (issue 16): invalid files exit 2 naming the
field and write nothing, run names stay inside ``--out``, user lists never travel on a
command line, nodes die with their orchestrator, link rejections are reported, and a
resumed run's counters continue where the checkpoint left them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading

import pytest
import tomli_w

from tests.orchestrator.test_main_job import (  # noqa: F401 - airmix_runs is a fixture
    ROOT,
    airmix_command,
    airmix_runs,
    node_pids,
    wait_until,
    write_experiment,
)


def _files_under(path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _cli(argv: list[str]) -> int:
    from orchestrator.cli import main

    return main(argv)


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        # only the data can refute these: digits leaves 1,078 training samples for users
        ({"users": {"count": 5000, "group_size": 2}}, "users.count: must be <= 1078"),
        ({"users": {"count": 10**9, "group_size": 2}}, "users.count: must be <= 1078"),
        ({"experiment": {"name": "bad\x00name"}}, "experiment.name: must not contain control"),
        ({"data": {"root": "/tmp/\x00x"}}, "data.root: must not contain control"),
        ({"experiment": {"name": "../../escaped"}}, "experiment.name: must be a plain name"),
        ({"experiment": {"name": "a/b"}}, "experiment.name: must be a plain name"),
        ({"experiment": {"name": ".."}}, "experiment.name: must be a plain name"),
        ({"experiment": {"name": ""}}, "experiment.name: must be a plain name"),
        ({"link": {"endpoint": "tcp://203.0.113.7:5555"}}, "link.endpoint: cannot listen"),
        ({"link": {"endpoint": "bogus://x"}}, "link.endpoint: cannot listen"),
    ],
    ids=[
        "count-over-data",
        "count-huge",
        "nul-in-name",
        "nul-in-root",
        "traversal",
        "slash",
        "dotdot",
        "empty",
        "unbindable",
        "bad-transport",
    ],
)
def test_values_only_data_or_os_refute_exit_2_and_write_nothing(
    tmp_path, capsys, sections, expected
):
    out = tmp_path / "a" / "b" / "runs"
    experiment = write_experiment(tmp_path / "bad.toml", out, **sections)
    assert _cli(["run", str(experiment), "--out", str(out), "--quiet"]) == 2
    assert expected in capsys.readouterr().err
    assert _files_under(tmp_path) == ["bad.toml"]


def test_out_dir_under_a_file_exits_2_and_writes_nothing(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    experiment = write_experiment(tmp_path / "bad.toml", blocker / "runs")
    assert _cli(["run", str(experiment), "--quiet"]) == 2
    assert "experiment.out_dir: cannot create" in capsys.readouterr().err
    assert _files_under(tmp_path) == ["bad.toml", "file"]


def test_run_directory_refuses_a_name_that_escapes_out(tmp_path):
    from orchestrator.rundir import RunDirectory

    with pytest.raises(ValueError, match="outside"):
        RunDirectory.create(tmp_path / "out", "../../escaped", "")
    assert _files_under(tmp_path) == []


def test_non_utf8_experiment_file_exits_2_through_the_real_cli(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'[experiment]\nname = "caf\xe9"\n')
    result = subprocess.run(
        [*airmix_command(), "run", str(bad), "--out", str(tmp_path / "runs")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "<file>:" in result.stderr and "UTF-8" in result.stderr
    assert "Traceback" not in result.stderr
    assert _files_under(tmp_path) == ["bad.toml"]


def test_non_utf8_sweep_and_base_files_exit_2(tmp_path, capsys):
    sweep = tmp_path / "bad_sweep.toml"
    sweep.write_bytes(b'[sweep]\nname = "x\xff"\n[sweep.grid]\n"users.count" = [4]\n')
    assert _cli(["sweep", str(sweep), "--out", str(tmp_path / "out")]) == 2
    assert "UTF-8" in capsys.readouterr().err
    (tmp_path / "base.toml").write_bytes(b'[experiment]\nname = "\xff"\n')
    sweep.write_text(
        tomli_w.dumps({"sweep": {"name": "s", "base": "base.toml", "grid": {"users.count": [4]}}})
    )
    assert _cli(["sweep", str(sweep), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "sweep.base" in err and "UTF-8" in err
    assert _files_under(tmp_path) == ["bad_sweep.toml", "base.toml"]


def test_sweep_point_the_data_refutes_exits_2_and_writes_nothing(tmp_path, capsys):
    sweep = tmp_path / "s.toml"
    sweep.write_text(
        tomli_w.dumps(
            {
                "sweep": {"name": "s", "grid": {"users.count": [4, 5000]}},
                "experiment": {"rounds": 1},
            }
        )
    )
    assert _cli(["sweep", str(sweep), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "users.count: must be <= 1078" in err and "users.count=5000" in err
    assert _files_under(tmp_path) == ["s.toml"]


def test_node_command_line_carries_no_user_list(tmp_path):
    """The node's arguments name a file; the users and their radios are in it."""
    from orchestrator.main_job import node_arguments

    users = [f"u{i:05d}" for i in range(20_000)]
    uris = {u: f"simnet://127.0.0.1:1/{u}" for u in users}
    arguments = node_arguments(tmp_path, "node0", "tcp://127.0.0.1:1", None, users, uris, None)
    assert sum(len(a) for a in arguments) < 1000
    assert not any("u00001" in a for a in arguments)
    from orchestrator.node import read_radios

    relative = arguments[arguments.index("--radios-file") + 1]
    assert read_radios(tmp_path, relative) == uris


# ------------------------------------------------------------------ link counters


def test_heartbeats_are_counted_apart_from_the_traffic_they_would_make_timing_dependent():
    from orchestrator.link import TIMING_DEPENDENT, LinkCounters

    counters = LinkCounters("orchestrator")
    counters.on_sent("transmit", 100)
    counters.on_received(40, "ack")
    counters.on_sent("heartbeat", 30)
    counters.on_received(30, "heartbeat")
    snap = counters.snapshot()
    assert (snap["sent_bytes"], snap["received_bytes"]) == (100, 40)
    assert (snap["sent_messages"], snap["received_messages"]) == (1, 1)
    assert (snap["heartbeat_messages"], snap["heartbeat_bytes"]) == (2, 60)
    assert snap["sent_by_type"] == {"transmit": 1, "heartbeat": 1}
    assert {"heartbeat_messages", "heartbeat_bytes", "request_seconds"} <= set(TIMING_DEPENDENT)


def test_counters_restore_a_snapshot_exactly_and_keep_counting():
    from orchestrator.link import LinkCounters

    first = LinkCounters("orchestrator")
    first.on_sent("transmit", 100)
    first.on_reject("decode")
    first.on_requests(2, 0.5, 0.25)
    first.on_answered("eval_report", 0.1)
    saved = first.snapshot()
    second = LinkCounters("orchestrator")
    second.on_sent("hello", 7)  # a resumed process's own start-up traffic is replaced
    second.restore(saved)
    assert second.snapshot() == saved
    second.on_sent("transmit", 1)
    assert second.snapshot()["sent_bytes"] == 101
    assert second.snapshot()["rejects"] == {"decode": 1}


def test_rejections_are_logged_at_warning_level_rate_limited(caplog):
    import logging

    from orchestrator.link import LinkCounters

    counters = LinkCounters("orchestrator")
    with caplog.at_level(logging.WARNING, logger="orchestrator.link"):
        for _ in range(500):
            counters.on_reject("unauthenticated")
        counters.on_reject("oversize")
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 2  # one per cause within the interval, not 501
    assert "orchestrator" in lines[0] and "unauthenticated" in lines[0]
    assert "oversize" in lines[1]
    assert counters.snapshot()["rejects"] == {"unauthenticated": 500, "oversize": 1}


# ------------------------------------------------------------- processes and runs


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("joined", [False, True], ids=["before-join", "after-join"])
def test_nodes_exit_within_5_s_of_a_sigkilled_orchestrator(tmp_path, airmix_runs, joined):  # noqa: F811
    """SIGKILL the orchestrator as soon as its nodes exist (still starting, not joined)
    or once round 0 is done (joined and serving): every node is gone within 5 s, and a
    node that had started logged one line, no traceback."""
    out = tmp_path / "runs"
    experiment = write_experiment(tmp_path / "tiny.toml", out, rounds=50)
    run = airmix_runs(str(experiment), "--out", str(out), out_dir=out)
    nodes = wait_until(lambda: len(node_pids(out)) == 2 and node_pids(out), 120, "the nodes")
    if joined:
        run_dir = wait_until(run.run_dir, 120, "the run directory")
        metrics = run_dir / "metrics.jsonl"
        wait_until(lambda: metrics.exists() and metrics.read_text().strip(), 120, "round 0")
        assert set(node_pids(out).values()) == set(nodes.values())
    run.kill()
    wait_until(lambda: not set(nodes.values()) & set(node_pids(out).values()), 5, "the nodes")
    for log_file in out.glob("*/logs/node*.log"):
        text = log_file.read_text()
        assert "Traceback" not in text, text
        if joined:
            assert "is gone; exiting" in text, text


def test_rejections_of_a_hostile_client_reach_the_summary_the_metrics_and_the_log(
    tmp_path,
    airmix_runs,  # noqa: F811
):
    """Garbage bytes and a client with the wrong CURVE keys knock on the orchestrator's
    port during a run: the summary counts them by cause for each end, the metrics carry
    them per round and the log warns (rate-limited: a few lines, not one per frame)."""
    import zmq

    out = tmp_path / "runs"
    port = _free_port()
    experiment = write_experiment(
        tmp_path / "tiny.toml",
        out,
        rounds=1,
        link={"endpoint": f"tcp://127.0.0.1:{port}"},
    )
    run = airmix_runs(str(experiment), "--out", str(out), out_dir=out)
    stop = threading.Event()
    knocks = [0]

    def knock() -> None:
        context = zmq.Context()
        public, secret = zmq.curve_keypair()
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
                    raw.sendall(os.urandom(64) + b"\xff" * 64)
            except OSError:
                pass
            dealer = context.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.curve_publickey, dealer.curve_secretkey = public, secret
            dealer.curve_serverkey = zmq.curve_keypair()[0]  # not the orchestrator's key
            dealer.connect(f"tcp://127.0.0.1:{port}")
            dealer.send(b"let me in")
            stop.wait(0.2)
            dealer.close()
            knocks[0] += 1
        context.term()

    knocker = threading.Thread(target=knock, daemon=True)
    knocker.start()
    try:
        code = run.wait()
    finally:
        stop.set()
        knocker.join(timeout=10)
    assert code == 0, run.output
    run_dir = run.run_dir()
    summary = json.loads((run_dir / "summary.json").read_text())
    rejects = summary["link"]["rejects"]
    assert rejects["orchestrator"].get("unauthenticated", 0) > 0, (rejects, knocks)
    assert set(rejects) == {"orchestrator", "node0", "node1"}
    assert all(isinstance(v, dict) for v in rejects.values())
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum(metrics[-1]["link_rejects"].values()) > 0
    warnings = [line for line in run.stderr.splitlines() if "rejected a frame" in line]
    assert warnings and "unauthenticated" in warnings[0]
    assert len(warnings) < rejects["orchestrator"]["unauthenticated"] or len(warnings) <= 5

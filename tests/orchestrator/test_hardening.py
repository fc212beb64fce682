"""Hardening of the run and its processes (issue 16): invalid files exit 2 naming the
field and write nothing, run names stay inside ``--out``, user lists never travel on a
command line, nodes die with their orchestrator, link rejections are reported, and a
resumed run's counters continue where the checkpoint left them."""

from __future__ import annotations

import subprocess

import pytest
import tomli_w

from tests.orchestrator.test_main_job import ROOT, airmix_command, write_experiment


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

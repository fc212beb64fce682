"""The main job end to end through the ``airmix run`` command (real processes, real
ZeroMQ with CurveZMQ, radios on the simulated medium or on virtual Plutos).

Reproducibility contract checked here: two runs of the same experiment file give the
same metrics line for line, except the fields in :data:`VARYING`, which measure wall
time. Digital-link traffic is counted without the timer-driven heartbeats, and a resumed
run's counters continue from its checkpoint, so it is compared too.

The helpers (:class:`AirmixRun`, :func:`write_experiment`, ...) are shared with
``test_faults.py``.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tomli_w

ROOT = Path(__file__).resolve().parents[2]
#: metric fields that legitimately differ between runs of the same experiment
VARYING = frozenset({"seconds", "messaging_seconds", "time_split", "slots_per_second"})
RUN_TIMEOUT_S = 300.0


def airmix_command() -> list[str]:
    script = Path(sys.executable).with_name("airmix")
    return [str(script)] if script.exists() else [sys.executable, "-m", "orchestrator.cli"]


def write_experiment(
    path: Path,
    out_dir: Path,
    *,
    rounds: int = 3,
    seed: int = 3,
    radio: str = "sim",
    attacks: tuple[str, ...] = (),
    batch_size: int = 32,
    **sections: dict,
) -> Path:
    """A tiny experiment: 4 users on 2 node processes, groups of 2, digits, raw mode."""
    experiment = {
        "experiment": {"name": "tiny", "seed": seed, "rounds": rounds, "out_dir": str(out_dir)},
        "users": {"count": 4, "group_size": 2, "node_processes": 2},
        "model": {"batch_size": batch_size},
        "channel": {"radio": radio},
        "attacks": {"enabled": list(attacks)},
    }
    for section, fields in sections.items():
        experiment.setdefault(section, {}).update(fields)
    path.write_text(tomli_w.dumps(experiment))
    return path


def processes_mentioning(text: str) -> dict[int, str]:
    """pid -> command line of every process whose command line contains ``text``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found[int(entry.name)] = cmdline
    return found


def node_pids(out_dir: Path) -> dict[str, int]:
    """node id -> pid of the live node processes of runs under ``out_dir``."""
    pids = {}
    for pid, cmdline in processes_mentioning(str(out_dir)).items():
        words = cmdline.split()
        if "orchestrator.node" in words and "--node-id" in words:
            pids[words[words.index("--node-id") + 1]] = pid
    return pids


def wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class AirmixRun:
    """``airmix run ARGS`` as a subprocess; stdout lines are collected with arrival times."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [*airmix_command(), "run", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[tuple[float, str]] = []
        self.stderr = ""
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def _read_stderr(self) -> None:
        self.stderr = self.process.stderr.read()

    def wait(self, timeout_s: float = RUN_TIMEOUT_S) -> int:
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"airmix run did not finish in {timeout_s} s:\n{self.output}"
            ) from None
        for reader in self._readers:
            reader.join(timeout=10)
        return code

    def kill(self) -> None:
        """SIGKILL the orchestrator (``airmix run``) process, nothing else."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines) + "\n" + self.stderr

    def run_dir(self) -> Path | None:
        for _, line in self.lines:
            if line.startswith("airmix: ") and " -> " in line:
                return Path(line.rsplit(" -> ", 1)[1])
        return None


def kill_all(run: AirmixRun, out_dir: Path | str) -> None:
    """SIGKILL ``run`` if still running and every process started for runs in ``out_dir``."""
    if run.process.poll() is None:
        run.process.kill()
        run.process.wait(timeout=30)
    for pid in processes_mentioning(str(out_dir)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def airmix_runs() -> Iterator[Callable[..., AirmixRun]]:
    """Start ``airmix run`` subprocesses; afterwards every one of them and every node
    process they started (found by the run's out dir in its command line) is killed."""
    started: list[tuple[AirmixRun, str]] = []

    def start(*args: str, out_dir: Path) -> AirmixRun:
        run = AirmixRun(*args)
        started.append((run, str(out_dir)))
        return run

    yield start
    for run, out_dir in started:
        kill_all(run, out_dir)


def read_metrics(run_dir: Path) -> list[dict]:
    text = (run_dir / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line]


def comparable(metrics: list[dict]) -> list[dict]:
    """Metrics without the fields that legitimately vary between identical runs."""
    return [{k: v for k, v in row.items() if k not in VARYING} for row in metrics]


def finished_run(run: AirmixRun) -> Path:
    """Wait for a run to end successfully; returns its run directory."""
    code = run.wait()
    assert code == 0, run.output
    run_dir = run.run_dir()
    assert run_dir is not None and (run_dir / "DONE").exists(), run.output
    return run_dir


# ------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """One uninterrupted 3-round run of the tiny experiment (with label inference)."""
    base = tmp_path_factory.mktemp("reference")
    out = base / "runs"
    # the ideal time base: its fresh medium per round makes a resumed run identical to an
    # uninterrupted one (stream/tdd keep one medium, acquisition once: equal within noise;
    # tests/orchestrator/test_tdd_stream_runs.py runs them)
    experiment = write_experiment(
        base / "tiny.toml", out, attacks=("label_inference",), channel={"time_base": "ideal"}
    )
    run = AirmixRun(str(experiment))
    try:
        run_dir = finished_run(run)
        wait_until(lambda: not node_pids(out), 30, "the reference run's nodes to exit")
    finally:
        kill_all(run, out)
    return {"experiment": experiment, "run_dir": run_dir, "output": run.output}


# --------------------------------------------------------------------------- tests


def check_eavesdropper(run_dir: Path, summary: dict, output: str) -> dict:
    """The passive eavesdropper (on by default on sim and virtual-pluto) recorded every
    slot of the last round over the receiver's window: its frame lands where the
    receiver's did (``target_delay`` = window - frame - n_fft), and its view was scored
    next to the server's. Returns ``summary["privacy"]["eavesdropper"]``."""
    from orchestrator import experiment as ex
    from orchestrator.checkpoints import from_state
    from orchestrator.config import load_experiment
    from orchestrator.rundir import RunDirectory
    from phy.eavesdropper import eavesdrop_frame
    from phy.waveform import frame_length

    eve = summary["privacy"]["eavesdropper"]
    state = RunDirectory.open_existing(run_dir).load_checkpoint()  # weights_only=True
    captures = from_state(state).eavesdropped
    assert eve["slots"] == len(captures) == summary_slots(run_dir) > 0
    assert 0 < eve["frames_found"] <= eve["slots"]
    assert eve["frames_found_fraction"] == eve["frames_found"] / eve["slots"]
    config = load_experiment(run_dir / "config.toml")
    assert eve["snr_db"] == config.attacks.eavesdropper_snr_db == config.channel.snr_db
    ofdm = ex.ofdm_config(config)
    data = ex.load_experiment_data(config)
    n_reals = ex.build_method(config, data).payload_reals
    starts = []
    for capture in captures:
        target = capture.samples.size - frame_length(n_reals, ofdm) - ofdm.n_fft
        try:
            starts.append(eavesdrop_frame(capture.samples, n_reals, ofdm).start - target)
        except ValueError:
            continue
    assert len(starts) == eve["frames_found"]
    assert np.max(np.abs(starts)) < 1.0, starts
    assert "eavesdropper found the frame in" in output
    return eve


def summary_slots(run_dir: Path) -> int:
    """Slots of the last (recorded) round."""
    return read_metrics(run_dir)[-1]["slots"]


def test_run_writes_a_complete_run_directory(reference):
    run_dir = reference["run_dir"]
    config = (run_dir / "config.toml").read_text()
    assert "[experiment]" in config and 'radio = "sim"' in config and "rounds = 3" in config
    metrics = read_metrics(run_dir)
    assert [m["round"] for m in metrics] == [0, 1, 2]
    for row in metrics:
        assert row["slots"] > 0 and row["round_channel_uses"] > 0
        assert row["alive_users"] == 4 and row["regroupings"] == 0
        assert sorted(u for group in row["groups"] for u in group) == [
            "u000",
            "u001",
            "u002",
            "u003",
        ]
    uses = [m["channel_uses"] for m in metrics]
    assert uses == sorted(uses) and uses[-1] == sum(m["round_channel_uses"] for m in metrics)
    summary = json.loads((run_dir / "summary.json").read_text())
    final = summary["headline"]["final_accuracy"]
    assert final == metrics[-1]["accuracy"]
    assert final > 0.3, f"digits has 10 classes (chance 0.1); got {final}"
    assert summary["rounds"] == 3
    assert "exact_set_accuracy" in summary["privacy"]["attacks"]["label_inference"]
    eve = check_eavesdropper(run_dir, summary, reference["output"])
    scored = eve["attacks"]["label_inference"]  # on the eavesdropper's view, with chance
    assert {"exact_set_accuracy", "exact_set_accuracy_chance"} <= set(scored)
    headline = summary["headline"]["eavesdropper_label_inference_exact_set_accuracy"]
    assert headline == scored["exact_set_accuracy"]
    for plot in ("training.png", "privacy.png"):
        data = (run_dir / "plots" / plot).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000
    assert (run_dir / "checkpoint.pt").stat().st_size > 0
    logs = sorted(p.name for p in (run_dir / "logs").iterdir())
    assert logs == ["node0.log", "node0.timing.json", "node1.log", "node1.timing.json"]
    timing = json.loads((run_dir / "logs" / "node0.timing.json").read_text())
    assert timing["handled"]["transmit"] > 0 and timing["handler_seconds"]["transmit"] > 0
    assert f"run directory: {run_dir}" in reference["output"]


def test_invalid_experiment_exits_2_and_writes_nothing(tmp_path):
    out = tmp_path / "runs"
    experiment = write_experiment(tmp_path / "bad.toml", out, channel={"radio": "plutto"})
    result = subprocess.run(
        [*airmix_command(), "run", str(experiment)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "channel.radio: 'plutto' is not one of ['inventory', 'sim', 'virtual-pluto']" in (
        result.stderr
    )
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"users": {"count": 0}}, "users.count: must be >= 1, got 0"),
        ({"model": {"batchsize": 8}}, "model.batchsize: unknown field; allowed: ["),
        ({"users": {"group_size": 8}}, "users.group_size: must be <= users.count (4), got 8"),
        ({"users": {"grouping": "best"}}, "users.grouping: 'best' is not one of ["),
        ({"link": {"curve": "yes"}}, "link.curve: expected bool, got str 'yes'"),
    ],
)
def test_invalid_fields_are_named_and_nothing_is_written(tmp_path, capsys, sections, expected):
    """Same command in-process (the CLI's main returns the exit code)."""
    from orchestrator.cli import main

    out = tmp_path / "runs"
    experiment = write_experiment(tmp_path / "bad.toml", out, **sections)
    assert main(["run", str(experiment)]) == 2
    assert expected in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]
    assert main(["run", "--resume", str(tmp_path)]) == 2  # not a run directory
    assert "not an airmix run directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def kill_mid_round(run: AirmixRun, run_dir: Path, round_id: int, out: Path) -> set[int]:
    """SIGKILL the orchestrator once node0 has put two slots of ``round_id`` on the air
    (so rounds before it are checkpointed); returns the pids of the orphaned nodes."""
    audit = run_dir / "audit" / "node0.jsonl"

    def in_round() -> bool:
        lines = audit.read_text().splitlines() if audit.exists() else []
        return sum(json.loads(line)["round"] == round_id for line in lines) >= 2

    wait_until(lambda: in_round() or run.process.poll() is not None, 120, f"round {round_id}")
    assert run.process.poll() is None, f"the run ended before round {round_id}:\n{run.output}"
    orphans = set(node_pids(out).values())
    run.kill()
    assert orphans and not (run_dir / "DONE").exists()
    return orphans


def assert_resume_matches_uninterrupted(
    airmix_runs, experiment: Path, out: Path, killed: Path
) -> None:
    """Run ``experiment`` to the end into ``out``; run it again into ``killed``, kill it
    mid-round 2, resume it: its metrics equal the uninterrupted run's line for line
    (apart from :data:`VARYING`)."""
    reference_dir = finished_run(airmix_runs(str(experiment), out_dir=out))
    first = airmix_runs(str(experiment), "--out", str(killed), out_dir=killed)
    run_dir = wait_until(first.run_dir, 120, "the run directory")
    kill_mid_round(first, run_dir, 2, killed)
    assert finished_run(airmix_runs("--resume", str(run_dir), out_dir=killed)) == run_dir
    assert comparable(read_metrics(run_dir)) == comparable(read_metrics(reference_dir))


def test_resume_after_mid_round_kill_matches_uninterrupted_run(reference, tmp_path, airmix_runs):
    """SIGKILL the orchestrator mid-round 2 (round 1 is checkpointed), resume: the final
    metrics equal the uninterrupted reference run's, round by round. Rounds 0-1 come
    from an independent process with the same seed, so this also checks reproducibility
    across processes (the explicit same-seed check is the slow test below)."""
    out = tmp_path / "runs"
    first = airmix_runs(str(reference["experiment"]), "--out", str(out), out_dir=out)
    run_dir = wait_until(first.run_dir, 120, "the run directory")
    orphans = kill_mid_round(first, run_dir, 2, out)
    assert [m["round"] for m in read_metrics(run_dir)] == [0, 1]

    # resume at once: the orphaned nodes are idle and must exit by themselves
    resumed = airmix_runs("--resume", str(run_dir), out_dir=out)
    assert finished_run(resumed) == run_dir
    assert f"resuming {run_dir} at round 2" in resumed.output
    metrics, uninterrupted = read_metrics(run_dir), read_metrics(reference["run_dir"])
    assert [m["round"] for m in metrics] == [0, 1, 2]
    assert comparable(metrics) == comparable(uninterrupted)
    summary = json.loads((run_dir / "summary.json").read_text())
    expected = json.loads((reference["run_dir"] / "summary.json").read_text())
    for key in ("final_accuracy", "channel_uses", "label_inference_exact_set_accuracy"):
        assert summary["headline"][key] == expected["headline"][key]
    # every cumulative link counter continued from the checkpoint: the summary's link
    # block equals the uninterrupted run's apart from what it marks timing-dependent
    timing = set(summary["link"]["timing_dependent"])
    assert {"heartbeat_messages", "request_seconds"} <= timing
    link, expected_link = summary["link"], expected["link"]
    assert {k: v for k, v in link.items() if k not in timing} == {
        k: v for k, v in expected_link.items() if k not in timing
    }
    assert link["sent_bytes"] > 0 and link["requests"] > 0
    # the orphans noticed the orchestrator was gone (heartbeat silence) and exited
    wait_until(lambda: not orphans & set(node_pids(out).values()), 30, "the orphans to exit")


@pytest.mark.slow
def test_same_seed_gives_identical_metrics(reference, tmp_path, airmix_runs):
    out = tmp_path / "runs"
    run = airmix_runs("--quiet", str(reference["experiment"]), "--out", str(out), out_dir=out)
    code = run.wait()
    assert code == 0, run.output
    (run_dir,) = out.iterdir()
    again, first = read_metrics(run_dir), read_metrics(reference["run_dir"])
    assert comparable(again) == comparable(first)
    assert {k for k in first[0] if k not in VARYING} >= {"accuracy", "loss", "channel_uses"}
    # the varying fields are present and positive (so excluding them hides no absence)
    for row in again:
        for key in VARYING:
            value = row[key]
            if isinstance(value, dict):  # time_split: seconds per part, adding up to the round
                assert value and all(part >= 0 for part in value.values()), (key, value)
                assert sum(value.values()) > 0, (key, value)
            else:
                assert value > 0, (key, value)


@pytest.mark.slow
def test_resume_when_metrics_are_ahead_of_the_checkpoint(reference, tmp_path, airmix_runs):
    """Kill as round 0's metrics line appears, drop the checkpoint (the state of a kill
    between the metrics line and the first checkpoint, a window too short to hit
    reliably): the resumed run starts over without a duplicate round 0 line, then it is
    killed mid-round 1 and resumed again; the end equals the uninterrupted run."""
    out = tmp_path / "runs"
    first = airmix_runs(str(reference["experiment"]), "--out", str(out), out_dir=out)
    run_dir = wait_until(first.run_dir, 120, "the run directory")
    metrics = run_dir / "metrics.jsonl"
    wait_until(lambda: metrics.exists() and metrics.read_text().count("\n") >= 1, 120, "round 0")
    first.kill()
    wait_until(lambda: not node_pids(out), 60, "the nodes to exit after the orchestrator died")
    (run_dir / "checkpoint.pt").unlink(missing_ok=True)

    second = airmix_runs("--resume", str(run_dir), out_dir=out)
    kill_mid_round(second, run_dir, 1, out)
    assert "from the start (no checkpoint yet)" in second.output
    assert [m["round"] for m in read_metrics(run_dir)] == [0]

    third = airmix_runs("--resume", str(run_dir), out_dir=out)
    assert finished_run(third) == run_dir
    assert f"resuming {run_dir} at round 1" in third.output
    assert comparable(read_metrics(run_dir)) == comparable(read_metrics(reference["run_dir"]))


def test_virtual_pluto_back_end_runs_an_experiment(tmp_path, airmix_runs):
    """Users and receiver are virtual PlutoSDRs (libiio network protocol, pyadi-iio)."""
    out = tmp_path / "runs"
    # the ideal time base (cyclic loop, constant latency) keeps the air deterministic on a
    # loaded machine; the stream and tdd time bases have their own run tests
    experiment = write_experiment(
        tmp_path / "vp.toml", out, rounds=1, radio="virtual-pluto", channel={"time_base": "ideal"}
    )
    run = airmix_runs(str(experiment), out_dir=out)
    run_dir = finished_run(run)
    metrics = read_metrics(run_dir)
    assert [m["round"] for m in metrics] == [0]
    assert all(m["slots"] > 0 and m["alive_users"] == 4 for m in metrics)
    assert metrics[-1]["accuracy"] > 0.3
    # the closed loop works through libiio: every frame found, and the mixup error the
    # receiver measured (estimate vs the users' true weighted sum) is what the power
    # policy predicted at 20 dB, not merely "some learning happened"
    for m in metrics:
        assert m["missed_slots"] == 0
        measured, predicted = m["measured_mixup_mse_db"], m["predicted_mixup_mse_db"]
        assert measured < -12.0 and abs(measured - predicted) < 3.0, (measured, predicted)
    assert 'radio = "virtual-pluto"' in (run_dir / "config.toml").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    eve = check_eavesdropper(run_dir, summary, run.output)  # the lab's medium, in-process
    assert eve["attacks"] == {}  # this experiment runs no attack


def test_lab_inventory_back_end_runs_an_experiment(tmp_path, airmix_runs):
    """``channel.radio = "inventory"``: the radios come from a lab inventory file, exactly
    as lab Plutos would; here the inventory lists virtual Plutos (the only radios CI has)."""
    from hardware.virtual_pluto import VirtualPlutoLab

    out = tmp_path / "runs"
    with VirtualPlutoLab(5, seed=7, channel_model="awgn", medium_name=None, timing="ideal") as lab:
        entries = [{"name": "rx0", "uri": lab.uris[0], "role": "receiver"}]
        entries += [
            {"name": f"user{k}", "uri": uri, "role": "user"} for k, uri in enumerate(lab.uris[1:])
        ]
        inventory = tmp_path / "lab.toml"
        inventory.write_text(tomli_w.dumps({"radio": entries}))
        experiment = write_experiment(
            tmp_path / "lab-run.toml",
            out,
            rounds=1,
            radio="inventory",
            # ideal: this bench (60 dB path loss, 0 dB RX gain) puts the frames near one
            # ADC step, too weak for the stream time base's short bursts and probes;
            # tests/orchestrator/test_tdd_stream_runs.py runs the lab-real time bases
            channel={"inventory": str(inventory), "time_base": "ideal"},
        )
        run_dir = finished_run(airmix_runs(str(experiment), out_dir=out))
    metrics = read_metrics(run_dir)
    assert metrics[-1]["slots"] > 0 and metrics[-1]["alive_users"] == 4
    assert metrics[-1]["accuracy"] > 0.2


def test_remote_nodes_named_in_the_file_join_and_the_run_finishes(tmp_path, airmix_runs):
    """``users.remote_nodes``: the orchestrator spawns no node, prints the command for each
    named node and waits; the nodes are started the way an operator would start them on
    their own machines (``airmix node ...``, here as separate local processes)."""
    out = tmp_path / "runs"
    with socket.socket() as probe:  # a free port for the orchestrator's endpoint
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    experiment = write_experiment(
        tmp_path / "remote.toml",
        out,
        rounds=1,
        users={"remote_nodes": ["alpha", "beta"]},
        link={"endpoint": f"tcp://127.0.0.1:{port}"},
    )
    run = airmix_runs(str(experiment), out_dir=out)
    prefix = "start remote node "
    wait_until(lambda: sum(line.startswith(prefix) for _, line in run.lines) == 2, 60, "commands")
    commands = [line.split(": ", 1)[1] for _, line in run.lines if line.startswith(prefix)]
    assert all(f"--address tcp://127.0.0.1:{port}" in c for c in commands)
    nodes = [
        subprocess.Popen(
            [*airmix_command(), *shlex.split(c)[1:]],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for c in commands
    ]
    try:
        run_dir = finished_run(run)
        assert all(node.wait(timeout=60) == 0 for node in nodes)  # told to shut down
    finally:
        for node in nodes:
            node.kill()
    metrics = read_metrics(run_dir)
    assert metrics[-1]["alive_users"] == 4 and metrics[-1]["slots"] > 0


@pytest.mark.slow
def test_feature_mode_resume_matches_uninterrupted_run(tmp_path, airmix_runs):
    """Feature mode: the nodes' encoders and optimisers are restored from their per-round
    checkpoints, so a run killed mid-round 2 still ends like an uninterrupted one."""
    out = tmp_path / "runs"
    experiment = write_experiment(
        tmp_path / "features.toml",
        out,
        model={"mode": "features"},
        channel={"time_base": "ideal"},  # identical resume: see the reference fixture
    )
    assert_resume_matches_uninterrupted(airmix_runs, experiment, out, tmp_path / "killed")

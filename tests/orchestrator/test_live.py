"""The live view: snapshot reading, the recorder's spectrum and constellation, and the
real server (uvicorn in its own process) answering the page, bad paths and bad
WebSocket messages. The browser test is ``test_live_browser.py``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from orchestrator.live.recorder import LiveRecorder, constellation, link_state_of, spectrum_db
from orchestrator.live.server import MAX_FRAME_BYTES, MAX_MESSAGE_BYTES
from orchestrator.live.snapshot import read_snapshot
from phy.estimation import LinkEstimate

WAIT_S = 20.0


def make_run(path: Path, rounds: int = 2) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.toml").write_text(
        '[experiment]\nname = "t"\nrounds = 5\n[channel]\nradio = "sim"\n[model]\nmode = "raw"\n'
    )
    for r in range(rounds):
        append_round(path, r)
    return path


def append_round(path: Path, r: int) -> None:
    row = {"round": r, "accuracy": 0.5 + 0.1 * r, "loss": float("nan"), "channel_uses": 100 * r}
    row["groups"] = [["u0", "u1"], ["u2", "u3"]]
    with open(path / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps(row) + "\n")


def test_snapshot_skips_partial_lines_and_non_finite_values(tmp_path):
    run = make_run(tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write('{"round": 2, "accur')  # a line being written
    snap = read_snapshot(run)
    assert [r["round"] for r in snap["rounds"]] == [0, 1]
    assert snap["rounds"][0]["loss"] is None  # NaN is not JSON
    assert snap["groups"] == [["u0", "u1"], ["u2", "u3"]]
    assert snap["run"] == {
        "name": "t",
        "directory": "run",
        "rounds_planned": 5,
        "radio": "sim",
        "method": "raw",
        "status": "running",
    }
    json.dumps(snap, allow_nan=False)  # strict JSON


def test_snapshot_pairs_attack_figures_with_chance_and_never_reads_audit(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "audit").mkdir()
    (run / "audit" / "node0.json").write_text('{"secret_indices": [1234567]}')
    summary = {
        "headline": {"final_accuracy": 0.9},
        "privacy": {
            "attacks": {"model_inversion": {"task_accuracy": 0.7, "task_accuracy_chance": 0.25}},
            "eavesdropper": {
                "attacks": {"label_inference": {"exact_set_accuracy": 0.2, "n": 3}},
            },
        },
    }
    (run / "summary.json").write_text(json.dumps(summary))
    snap = read_snapshot(run)
    assert snap["run"]["status"] == "finished"
    assert snap["privacy"] == [
        {
            "view": "server",
            "attack": "model_inversion",
            "figure": "task_accuracy",
            "value": 0.7,
            "chance": 0.25,
        }
    ]  # a figure without a chance level is not shown as success
    assert "1234567" not in json.dumps(snap)


def test_recorder_spectrum_constellation_and_link_history(tmp_path):
    fs = 1e6
    n = np.arange(4096)
    tone = np.exp(2j * np.pi * 125e3 * n / fs) + 1e-3 * np.random.default_rng(0).normal(size=n.size)
    spectrum = spectrum_db(tone, fs)
    peak = spectrum["freq_hz"][int(np.argmax(spectrum["psd_db"]))]
    assert abs(peak - 125e3) <= fs / 256
    assert np.max(spectrum["psd_db"]) - np.median(spectrum["psd_db"]) > 30
    points = constellation(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert points == {"i": [1.0, 3.0], "q": [2.0, 4.0]}

    recorder = LiveRecorder(tmp_path)
    for r in range(3):
        estimate = LinkEstimate(
            user=0, delay_samples=1.5, cfo_hz=100.0 + r, sro=0.0, gain=1j, snr_db=20.0
        )
        recorder.record_link_state(r, {"u0": link_state_of(estimate, {"underflows": r})})
    recorder.truncate_after(1)  # a resumed run re-records round 2
    recorder.record_link_state(2, {"u0": link_state_of(estimate, {"underflows": 7})})
    recorder.record_slot(2, 9, tone, fs, np.ones(8), ["u0"])
    make_run(tmp_path, rounds=0)
    snap = read_snapshot(tmp_path)
    state = snap["link_state"]
    assert state["rounds"] == [0, 1, 2]
    assert state["history"]["u0"]["cfo_hz"] == [100.0, 101.0, 102.0]
    assert state["history"]["u0"]["underflows"] == [0, 1, 7]
    assert state["latest"]["u0"]["gain_phase_rad"] == pytest.approx(np.pi / 2)
    assert snap["last_slot"]["round"] == 2 and snap["last_slot"]["group"] == ["u0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def served_run(tmp_path):
    run = make_run(tmp_path / "run")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.live", str(run), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/api/snapshot")
        yield run, port
    finally:
        process.terminate()
        process.wait(timeout=10)


def http_error(url: str, method: str = "GET") -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    return caught.value.code, json.loads(caught.value.read())


def test_server_page_assets_and_clear_http_errors(served_run):
    _, port = served_run
    base = f"http://127.0.0.1:{port}"
    page = urllib.request.urlopen(base + "/", timeout=5).read().decode()
    for panel in ("panel-accuracy", "panel-links", "panel-spectrum", "panel-privacy"):
        assert f'id="{panel}"' in page
    script = urllib.request.urlopen(base + "/static/plotly.min.js", timeout=5).read()
    assert len(script) > 1_000_000  # the installed plotly bundle, not fetched
    assert http_error(base + "/etc/passwd") == (404, {"error": "unknown path /etc/passwd"})
    assert http_error(base + "/static/../../x")[0] == 404
    code, body = http_error(base + "/api/snapshot", method="POST")
    assert code == 405 and "read-only" in body["error"]


def test_websocket_pushes_updates_and_answers_bad_messages(served_run):
    run, port = served_run
    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=WAIT_S) as ws:
        first = json.loads(ws.recv(timeout=WAIT_S))
        assert first["type"] == "snapshot" and len(first["data"]["rounds"]) == 2
        append_round(run, 2)  # the run finishes a round: an update arrives by itself
        update = json.loads(ws.recv(timeout=WAIT_S))
        assert [r["round"] for r in update["data"]["rounds"]] == [0, 1, 2]
        ws.send("not json")
        assert json.loads(ws.recv(timeout=WAIT_S)) == {
            "type": "error",
            "error": "message is not JSON",
        }
        ws.send('{"type": "delete_run"}')
        assert "unknown message type" in json.loads(ws.recv(timeout=WAIT_S))["error"]
        ws.send(b"\x00\x01")
        assert "binary" in json.loads(ws.recv(timeout=WAIT_S))["error"]
        ws.send('{"type": "ping"}')  # still open after bad messages
        assert json.loads(ws.recv(timeout=WAIT_S)) == {"type": "pong"}
        ws.send(json.dumps({"type": "ping", "pad": "x" * MAX_MESSAGE_BYTES}))
        assert "over" in json.loads(ws.recv(timeout=WAIT_S))["error"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=WAIT_S)
        assert closed.value.rcvd.code == 1009
    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=WAIT_S) as ws:
        ws.recv(timeout=WAIT_S)
        ws.send("x" * (MAX_FRAME_BYTES + 1))  # refused by the server's frame limit
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=WAIT_S)
        assert closed.value.rcvd.code == 1009
    # the server still serves after all that
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/api/snapshot", timeout=5).status == 200


def test_view_command_refuses_missing_directory(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.live", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "no run directory" in result.stderr

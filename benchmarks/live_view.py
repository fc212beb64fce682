"""Benchmark of the live view (orchestrator.live): how soon a round's update reaches the
page after the run writes it (issue target: within a second of the round's end).

A real view server (``python -m orchestrator.live``, uvicorn in its own process) serves a
run directory; a WebSocket client (the page's protocol) is connected while this script
appends metrics lines the way ``airmix run`` does (one per round, with the live records
written just before). Latency = time from the append to the snapshot holding that round
arriving at the client. Prints per-update latency statistics, their ratio to the 1 s
target, the snapshot size, and ends with one JSON line.

Run: ``.venv/bin/python benchmarks/live_view.py [--updates 40]``.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from websockets.sync.client import connect  # noqa: E402

from orchestrator.live.recorder import LiveRecorder, link_state_of  # noqa: E402
from phy.estimation import LinkEstimate  # noqa: E402

TARGET_S = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def append_round(run: Path, recorder: LiveRecorder, r: int, users: int) -> None:
    rng = np.random.default_rng(r)
    states = {
        f"user{k}": link_state_of(
            LinkEstimate(k, rng.normal(), rng.normal(scale=50), 0.0, complex(rng.normal()), 20.0)
        )
        for k in range(users)
    }
    recorder.record_link_state(r, states)
    recorder.record_slot(
        r,
        0,
        rng.normal(size=4096) + 1j * rng.normal(size=4096),
        1e6,
        rng.normal(size=2048),
        list(states)[:4],
    )
    row = {
        "round": r,
        "accuracy": 0.5,
        "loss": 1.0,
        "channel_uses": 100 * r,
        "groups": [list(states)[i : i + 4] for i in range(0, users, 4)],
    }
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--interval", type=float, default=0.3, help="seconds between rounds")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        (run / "config.toml").write_text('[experiment]\nname = "bench"\n')
        recorder = LiveRecorder(run)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.live", str(run), "--port", str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/snapshot", timeout=2)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            latencies, sizes = [], []
            with connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
                ws.recv(timeout=10)
                for r in range(args.updates):
                    time.sleep(args.interval)
                    append_round(run, recorder, r, args.users)
                    written = time.monotonic()
                    while True:
                        message = ws.recv(timeout=30)
                        data = json.loads(message)["data"]
                        if data["rounds"] and data["rounds"][-1]["round"] == r:
                            latencies.append(time.monotonic() - written)
                            sizes.append(len(message))
                            break
        finally:
            server.terminate()
            server.wait(timeout=10)

    lat = np.array(latencies)
    print(f"live view update latency over {lat.size} rounds ({args.users} users):")
    for name, value in (
        ("median", np.median(lat)),
        ("p95", np.percentile(lat, 95)),
        ("max", lat.max()),
    ):
        print(f"  {name:6s} {value * 1e3:7.1f} ms   ({value / TARGET_S:.3f} of the 1 s target)")
    print(f"  snapshot size at the end: {sizes[-1] / 1e3:.1f} kB")
    print(
        json.dumps(
            {
                "update_latency_median_seconds": round(float(np.median(lat)), 4),
                "update_latency_max_seconds": round(float(lat.max()), 4),
                "update_latency_max_over_target": round(float(lat.max() / TARGET_S), 4),
                "snapshot_bytes": sizes[-1],
            }
        )
    )


if __name__ == "__main__":
    main()

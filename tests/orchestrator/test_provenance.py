"""Provenance: installed versions, code commit, libiio, experiment hash, radio identity."""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

import iio
import numpy as np
import torch
import zmq

from orchestrator import provenance

REPO = Path(__file__).resolve().parents[2]


def test_provenance_names_the_installed_versions_and_the_code(tmp_path):
    experiment = tmp_path / "config.toml"
    experiment.write_text("[experiment]\nseed = 3\n")
    record = provenance.write(tmp_path, experiment_file=experiment, argv=["airmix", "run"])
    assert json.loads((tmp_path / provenance.PROVENANCE_FILE).read_text()) == record
    packages = record["packages"]
    assert packages["torch"] == torch.__version__
    assert packages["numpy"] == np.__version__
    assert packages["pyzmq"] == zmq.__version__
    assert packages["pylibiio"] == metadata.version("pylibiio")
    assert packages["pyadi-iio"] == metadata.version("pyadi-iio")
    major, minor, _ = iio.version
    assert record["libiio"].startswith(f"{major}.{minor}")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert record["code"]["commit"] == head and isinstance(record["code"]["dirty"], bool)
    status = subprocess.run(
        ["git", "status", "--porcelain", "-z", "-uno"], cwd=REPO, capture_output=True, text=True
    ).stdout
    listed = {entry[3:] for entry in status.split("\0") if len(entry) > 3}
    assert set(record["code"]["changed"]) <= listed  # paths whole, not cut
    assert record["experiment"]["sha256"] == hashlib.sha256(experiment.read_bytes()).hexdigest()
    assert record["command"]["argv"] == ["airmix", "run"]
    assert record["machine"]["cpu_count"] >= 1 and record["machine"]["os"]
    assert record["python"].count(".") == 2
    # a resumed run keeps its first record and lists the resumption
    again = provenance.write(tmp_path, experiment_file=experiment)
    assert again["written"] == record["written"] and len(again["resumed"]) == 1
    assert provenance.version_key(again) == provenance.version_key(record)
    changed = dict(record, packages={**packages, "torch": "0.0"})
    assert provenance.version_key(changed) != provenance.version_key(record)


def test_radio_identity_from_the_back_end():
    from hardware.virtual_pluto import VirtualPlutoLab

    with VirtualPlutoLab(1, seed=3, channel_model="awgn", medium_name=None) as lab:
        identity = provenance.radio_identity(lab.uris[0], "user u000")
    assert identity["backend"] == "ip" and "error" not in identity
    assert "PlutoSDR" in identity["hw_model"] and identity["hw_serial"]
    assert identity["fw_version"] and int(identity["xo_correction"]) > 0
    sim = provenance.radio_identity("sim://medium/user0", "user u000")
    assert sim["model"] == "simulated" and sim["uri"] == "sim://medium/user0"
    gone = provenance.radio_identity("ip:127.0.0.1:1", "receiver", timeout_ms=500)
    assert "error" in gone

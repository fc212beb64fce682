"""The wall clock through virtual Plutos and the unmodified client stack: a real-time
virtual Pluto says so in its context, PlutoRadio drains its RX stream in the background
(no overflow while the host computes, contiguous reads, the air's index followed), and
the lab-day rehearsal (``airmix virtual-pluto --realtime`` processes listed in an
inventory, one receiver and four users, node processes) completes on both time bases
(``-m slow``: a minute per time base of wall-clock air)."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hardware.virtual_pluto import VirtualPlutoLab
from radio.base import RadioConfig, stream_lead_of
from radio.pluto import PlutoRadio

ROOT = Path(__file__).resolve().parents[2]


def _config() -> RadioConfig:
    return RadioConfig(915e6, 1e6, tx_attenuation_db=0.0, rx_gain_db=0.0, rx_buffer_size=16384)


def test_a_radio_knows_its_clock_from_the_context():
    with VirtualPlutoLab(1, seed=1, medium_name=None) as lab:
        radio = PlutoRadio(lab.uris[0], config=_config())
        try:
            assert radio.realtime is False  # the deterministic medium waits for it
            assert radio.rx_stream_head() is None
        finally:
            radio.close()
    with VirtualPlutoLab(1, seed=1, medium_name=None, realtime=True) as lab:
        radio = PlutoRadio(lab.uris[0], config=_config())
        try:
            assert radio.realtime is True  # like a real Pluto: no attribute, wall clock
        finally:
            radio.close()


def test_the_background_drain_keeps_the_rx_stream_whole_while_the_host_computes():
    with VirtualPlutoLab(1, seed=1, medium_name=None, realtime=True) as lab:
        radio = PlutoRadio(lab.uris[0], config=_config())
        try:
            first = radio.read_stream(1000)  # starts the drain
            time.sleep(0.1)
            radio.clear_status()  # the stale buffers found at the start
            time.sleep(0.4)  # 400 ms: the kernel's four 16 ms buffers would overflow
            assert not radio.status()["rx_overflow"]
            head = radio.rx_stream_head()
            assert head >= 400_000  # the air's index now, read or not
            rest = radio.read_stream(300_000)  # contiguous with the first read
            assert first.dtype == rest.dtype == np.complex64 and rest.size == 300_000
            assert radio.rx_stream_head() >= head
        finally:
            radio.close()


def test_the_stream_lead_of_a_uri_is_its_backends():
    assert stream_lead_of("ip:127.0.0.1:30431") == PlutoRadio.stream_lead
    assert stream_lead_of("sim://lab/u0") > 0
    with pytest.raises(ValueError, match="scheme must be one of"):
        stream_lead_of("bogus:0")


def _free_ports(n: int) -> int:
    """A base port with ``n`` free ports after it (best effort)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + n < 65000:
            return base
    raise RuntimeError("no free ports")


@pytest.mark.slow
@pytest.mark.parametrize("time_base", ["stream", "tdd"])
def test_lab_day_rehearsal_on_real_time_virtual_plutos(tmp_path, time_base):
    base = _free_ports(5)
    cmd = [sys.executable, "-m", "orchestrator.cli", "virtual-pluto", "--radios", "5"]
    cmd += ["--realtime", "--base-port", str(base), "--sync-period-s", "0.1"]
    lab = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(5):  # the radios are up once their URIs are printed
            assert "ip:127.0.0.1" in lab.stdout.readline()
        inventory = tmp_path / "inventory.toml"
        rows = [("rx0", "receiver")] + [(f"user{k}", "user") for k in range(1, 5)]
        inventory.write_text(
            "".join(
                f'[[radio]]\nname = "{name}"\nuri = "ip:127.0.0.1:{base + k}"\nrole = "{role}"\n\n'
                for k, (name, role) in enumerate(rows)
            )
        )
        experiment = tmp_path / "rehearsal.toml"
        experiment.write_text(
            f'[experiment]\nname = "rehearsal"\nseed = 0\nrounds = 3\nout_dir = "{tmp_path}"\n'
            '[data]\ndataset = "digits"\n'
            "[users]\ncount = 4\ngroup_size = 4\nnode_processes = 2\n"
            '[model]\nmode = "raw"\nlearning_rate = 0.003\n'
            f'[channel]\nradio = "inventory"\ntime_base = "{time_base}"\n'
            f'inventory = "{inventory}"\nsync_period_s = 0.1\n'
            "[attacks]\nenabled = []\neavesdropper = false\n"
        )
        run = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "run", str(experiment), "--quiet"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert run.returncode == 0, run.stderr[-2000:]
        missed = run.stderr.count("missed")
        assert missed <= 2, run.stderr[-2000:]  # of 27 slots
        summary = json.loads(next(tmp_path.glob("rehearsal-*/summary.json")).read_text())
        assert summary["headline"]["final_accuracy"] > 0.5  # 3 rounds: well above chance (0.1)
    finally:
        lab.terminate()
        lab.wait(timeout=10)

"""PlutoRadio over adi.Pluto against virtual Plutos (the real libiio/pyadi-iio path)."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from hardware.virtual_pluto import VirtualPluto, VirtualPlutoLab
from phy.medium import SharedMedium
from radio import open_radio
from radio.base import (
    RadioConfig,
    RadioConfigError,
    RadioDisconnected,
    RadioTimeout,
    TransmitClippingError,
)
from radio.pluto import PlutoRadio

CFG = RadioConfig(
    center_hz=915e6, sample_rate_hz=1e6, tx_attenuation_db=0.0, rx_gain_db=40.0,
    rx_buffer_size=4096,
)  # fmt: skip


@pytest.fixture
def lab():
    with VirtualPlutoLab(2, seed=11, channel_model="awgn", medium_name=None) as running:
        yield running


def test_configure_reads_back_what_the_device_applied(lab):
    with PlutoRadio(lab.uris[0], config=CFG) as radio:
        assert radio.config == CFG
        radio.configure(CFG.replace(tx_attenuation_db=10.3, rx_gain_db=20.7))
        assert radio.config.tx_attenuation_db == 10.25  # 0.25 dB steps, as on the AD9361
        assert radio.config.rx_gain_db == 20.0  # integer dB
        with pytest.raises(RadioConfigError):
            radio.configure(CFG.replace(center_hz=5e9))  # stock AD9363 tops out at 3.8 GHz
        with pytest.raises(RadioConfigError):
            radio.configure(CFG.replace(rx_gain_db=80))


def test_transmit_scaling_and_clipping(lab):
    medium = lab.medium
    medium.set_link("pluto0", "pluto1", gain=1.0, path_loss_db=40.0)
    with PlutoRadio(lab.uris[0], config=CFG) as tx, open_radio(lab.uris[1], config=CFG) as rx:
        with pytest.raises(TransmitClippingError):
            tx.transmit(np.full(64, 1.2 + 0j))
        n = 4096
        tone = 0.5 * np.exp(2j * np.pi * 100 * np.arange(n) / n)
        tx.transmit(tone, cyclic=True)
        rx.receive(8192)  # past the start latency
        y = rx.receive(8192)
        assert y.dtype == np.complex64 and y.shape == (8192,)
        # 0.5 FS - 40 dB path loss + 40 dB gain = 0.5 FS at the receiver
        assert np.sqrt(np.mean(np.abs(y) ** 2)) == pytest.approx(0.5, rel=0.02)
        tx.stop_transmit()
        assert np.sqrt(np.mean(np.abs(rx.receive(8192)) ** 2)) < 0.01


def test_receive_is_fresh_not_stale(lab):
    with PlutoRadio(lab.uris[1], config=CFG, kernel_buffers=4) as rx:
        rx.receive(4096)
        lab.medium.advance(1.0)  # a second passes: the kernel would hold 4 stale buffers
        t_before = lab.medium.now_s
        rx.receive(4096)
        # the stale buffers were dropped: the samples come from the buffer being filled at
        # the call, which completes within one buffer time (4 stale buffers would have
        # been returned without advancing the clock at all)
        assert t_before < lab.medium.now_s <= t_before + 4096 / 1e6 * 1.001


def test_open_by_serial_and_disconnect_reconnect():
    medium = SharedMedium(seed=5, channel_model="awgn")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    radio_srv = VirtualPluto(medium, "r0", port=port).start()
    try:
        radio = PlutoRadio(f"serial:{radio_srv.model.serial}", config=CFG,
                           search_uris=[radio_srv.uri])  # fmt: skip
        assert radio.serial == radio_srv.model.serial
        radio_srv.stop()
        with pytest.raises(RadioDisconnected):
            radio.receive(1024)
        radio_srv.server.start()  # same port
        radio.reconnect()
        assert radio.receive(1024).shape == (1024,)
        assert radio_srv.model.state.rx_gain_db == 40  # config re-applied
        radio.close()
        radio.close()
        with pytest.raises(RadioDisconnected):
            radio.receive(10)
    finally:
        radio_srv.stop()
    with pytest.raises(RadioDisconnected):
        PlutoRadio("serial:00112233445566", search_uris=[])


def test_timeout_maps_to_radio_timeout(lab):
    """A server that stops answering mid-session: libiio times out -> RadioTimeout."""
    radio_srv = lab.radios[0]
    with PlutoRadio(lab.uris[0], config=CFG, timeout_ms=300) as radio:
        with radio_srv.model.lock:  # the device model is stuck: attribute reads block
            with pytest.raises((RadioTimeout, RadioDisconnected)):
                radio.configure(CFG.replace(center_hz=916e6))


def test_bad_uri():
    with pytest.raises(RadioConfigError):
        PlutoRadio("tcp:1.2.3.4")

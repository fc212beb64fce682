"""Hardware-in-the-loop suite: the same radio checks on virtual Plutos (default) and on
real ones named by ``AIRMIX_PLUTO_URIS`` (comma-separated, first = transmitter, second =
receiver; run with ``-m hardware``; wiring in hardware/LAB_GUIDE.md)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

from radio.base import RadioConfig
from radio.pluto import PlutoRadio

LO_HZ = 915e6
FS_HZ = 1e6
MAX_PPM = 25.0  # per radio (stock Pluto TCXO)
CFG = RadioConfig(
    center_hz=LO_HZ, sample_rate_hz=FS_HZ, tx_attenuation_db=10.0, rx_gain_db=30.0,
    rx_buffer_size=16384,
)  # fmt: skip


@pytest.fixture(params=["virtual", pytest.param("real", marks=pytest.mark.hardware)])
def hil_pair(request) -> Iterator[tuple[PlutoRadio, PlutoRadio]]:
    """(transmitter, receiver) PlutoRadios: virtual Plutos on an AWGN medium with a
    60 dB link (like a cable with attenuators), or the real radios of AIRMIX_PLUTO_URIS."""
    if request.param == "real":
        uris = [u.strip() for u in os.environ.get("AIRMIX_PLUTO_URIS", "").split(",") if u.strip()]
        if len(uris) < 2:
            pytest.skip("set AIRMIX_PLUTO_URIS=uri_tx,uri_rx to run on real Plutos")
        radios = [PlutoRadio(u, config=CFG) for u in uris[:2]]
        try:
            yield radios[0], radios[1]
        finally:
            for radio in radios:
                radio.close()
        return
    from hardware.virtual_pluto import VirtualPlutoLab

    with VirtualPlutoLab(2, seed=21, channel_model="awgn", medium_name=None) as lab:
        lab.medium.set_link("pluto0", "pluto1", path_loss_db=60.0)
        radios = [PlutoRadio(u, config=CFG) for u in lab.uris]
        try:
            yield radios[0], radios[1]
        finally:
            for radio in radios:
                radio.close()


def test_config_round_trip(hil_pair):
    for radio in hil_pair:
        radio.configure(CFG.replace(center_hz=916e6, tx_attenuation_db=20.5))
        assert radio.config.center_hz == 916e6 and radio.config.tx_attenuation_db == 20.5
        radio.configure(CFG)
        assert radio.config == CFG


def test_tone_link_and_stop(hil_pair):
    tx, rx = hil_pair
    n = 16384
    f_tone = 125e3
    tone = 0.5 * np.exp(2j * np.pi * f_tone * np.arange(n) / FS_HZ)
    tx.transmit(tone, cyclic=True)
    try:
        rx.receive(n)
        y = rx.receive(n)
    finally:
        tx.stop_transmit()
    spectrum = np.abs(np.fft.fftshift(np.fft.fft(y * np.hanning(n)))) ** 2
    freqs = np.fft.fftshift(np.fft.fftfreq(n, 1 / FS_HZ))
    peak = int(np.argmax(spectrum))
    max_cfo = 2 * MAX_PPM * 1e-6 * LO_HZ
    assert abs(freqs[peak] - f_tone) <= max_cfo + FS_HZ / n
    signal = spectrum[max(0, peak - 8) : peak + 9].sum()
    noise = (spectrum.sum() - signal) / (n - 17) * 17
    assert 10 * np.log10(signal / noise) > 20.0
    quiet = rx.receive(n)
    assert np.mean(np.abs(quiet) ** 2) < np.mean(np.abs(y) ** 2) / 100

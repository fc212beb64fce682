"""pyadi-iio-style checks of the virtual Pluto's data paths, as pyadi-iio's own
``test/dma_tests.py`` exercises a Pluto: DDS tones on the air, the AD9361 digital
loopback with the real bit alignment, the FPGA RX->TX loopback, a TX->RX cable, and the
cores' sticky status flags through ``reg_read``/``reg_write``."""

from __future__ import annotations

import time

import adi
import numpy as np
import pytest
import torch  # noqa: F401  warm-up: the medium imports it on a first receive (~4 s)

from hardware.virtual_pluto import VirtualPlutoLab

FS = 4_000_000
LO = 1_000_000_000


def _pluto(uri: str, gain_mode: str = "manual") -> adi.Pluto:
    sdr = adi.Pluto(uri)
    sdr.sample_rate = FS
    sdr.rx_lo = LO
    sdr.tx_lo = LO
    sdr.gain_control_mode_chan0 = gain_mode
    if gain_mode == "manual":
        sdr.rx_hardwaregain_chan0 = 30
    sdr.tx_hardwaregain_chan0 = -10
    sdr.rx_buffer_size = 2**14
    return sdr


def _spectrum_peak(x: np.ndarray) -> tuple[float, float, float]:
    """(peak frequency Hz, peak power dB, its height over the median bin dB)."""
    window = np.hanning(x.size)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft(x * window))) ** 2
    freqs = np.fft.fftshift(np.fft.fftfreq(x.size, 1 / FS))
    k = int(np.argmax(spectrum))
    peak_db = 10 * np.log10(spectrum[k])
    return float(freqs[k]), float(peak_db), float(peak_db - 10 * np.log10(np.median(spectrum)))


@pytest.fixture
def lab3():
    with VirtualPlutoLab(3, seed=5, channel_model="awgn", medium_name=None) as running:
        yield running


def test_dds_tone_goes_on_the_air_and_stops(lab3):
    tx, rx = _pluto(lab3.uris[0]), _pluto(lab3.uris[1])
    tx.dds_single_tone(250_000, 0.5)  # no DMA buffer: the DDS drives the DAC
    for _ in range(3):
        x = rx.rx()
    freq, power_db, height_db = _spectrum_peak(x)
    assert abs(freq - 250_000) <= 2 * 25e-6 * LO + FS / x.size  # two +-25 ppm oscillators
    assert height_db >= 20.0
    tx.disable_dds()
    for _ in range(3):
        y = rx.rx()
    assert _spectrum_peak(y)[1] < power_db - 20.0
    del tx, rx


def test_dds_registers_read_back_quantised_like_the_core(lab3):
    sdr = _pluto(lab3.uris[0])
    sdr.dds_single_tone(1_000_000, 0.9)
    freqs = [int(f) for f in sdr.dds_frequencies]
    # the 16-bit phase increment: f = reg * fs / 0xFFFF, within one step of the request
    assert abs(freqs[0] - 1_000_000) <= FS / 0xFFFF
    assert [int(p) for p in sdr.dds_phases] == [90000, 0, 0, 0]  # I_F1, I_F2, Q_F1, Q_F2
    assert [float(s) for s in sdr.dds_scales][0] == pytest.approx(0.9, abs=1 / 2**14)
    del sdr


def test_digital_loopback_returns_the_dac_words_shifted_to_12_bits(lab3):
    """pyadi-iio's dma_loopback: a ramp d << 4 on I and -(d << 4) - 1 on Q comes back as
    d and -d - 1, sample-contiguous."""
    sdr = _pluto(lab3.uris[0])
    sdr.loopback = 1
    d = np.arange(2**11, dtype=np.int16)
    ramp = (d << 4) + 1j * (-(d << 4) - 1)
    sdr.tx_cyclic_buffer = True
    sdr.tx_enabled_channels = [0]
    sdr.rx_enabled_channels = [0]
    sdr.rx_buffer_size = 2 * d.size
    sdr.tx(ramp)
    for _ in range(5):
        data = sdr.rx()
    start = int(np.flatnonzero(data.real == 0)[0])
    got = data[start : start + d.size]
    assert got.size == d.size
    np.testing.assert_array_equal(got.real, d)
    np.testing.assert_array_equal(got.imag, -d.astype(np.int64) - 1)
    sdr.tx_destroy_buffer()
    sdr.loopback = 0
    del sdr


def test_digital_loopback_of_a_dds_tone_and_of_zeros(lab3):
    sdr = _pluto(lab3.uris[0])
    sdr.loopback = 1
    sdr.dds_single_tone(1_000_000, 1.0)
    data = sdr.rx()
    freq, power_db, _ = _spectrum_peak(data)
    assert abs(freq - 1_000_000) <= FS / data.size
    sdr.disable_dds()  # the DAC sends zeros: the loopback returns exact zeros
    assert np.sum(np.abs(sdr.rx())) == 0
    sdr.loopback = 0
    del sdr


def test_fpga_loopback_retransmits_what_the_radio_receives(lab3):
    """loopback = 2 (``ad9361_bist_loopback``: FPGA RX->TX): pluto1 relays pluto0's tone
    to pluto2, which cannot hear pluto0 directly."""
    lab3.medium.set_link("pluto0", "pluto2", path_loss_db=300.0)
    src, relay, far = (_pluto(uri) for uri in lab3.uris)
    src.dds_single_tone(300_000, 0.5)
    for _ in range(2):
        x = far.rx()
    assert _spectrum_peak(x)[2] < 20.0  # nothing heard yet
    relay.loopback = 2
    for _ in range(3):
        relay.rx()  # what the relay's ADC sees goes out of its DAC
        y = far.rx()
    freq, _, height_db = _spectrum_peak(y)
    assert height_db >= 20.0
    assert abs(freq - 300_000) <= 4 * 25e-6 * LO + FS / y.size
    del src, relay, far


def test_cable_loopback_hears_its_own_tx(lab3):
    """pyadi-iio's dds_loopback set-up: a cable from TX to RX of the same Pluto."""
    lab3.medium.set_link("pluto0", "pluto0", path_loss_db=30.0)
    sdr = _pluto(lab3.uris[0], gain_mode="slow_attack")
    sdr.dds_single_tone(1_000_000, 1.0)
    for _ in range(10):
        data = sdr.rx()
    freq, peak_db, height_db = _spectrum_peak(data)
    assert abs(freq - 1_000_000) <= FS / data.size  # one oscillator: no CFO
    assert height_db >= 20.0
    del sdr


def test_status_flags_through_reg_read_and_reg_write(lab3):
    """pyadi-iio's verify_overflow/underflow bookkeeping on the cores' 0x80000088."""
    sdr = _pluto(lab3.uris[0])
    model = lab3.radios[0].model
    sdr._rxadc.reg_write(0x80000088, 0x6)
    assert sdr._rxadc.reg_read(0x80000088) & 4 == 0
    model.raise_overflow()
    model.raise_underflow()
    v = sdr._rxadc.reg_read(0x80000088)
    assert v & 4
    sdr._rxadc.reg_write(0x80000088, v)  # clear, as the test does
    assert sdr._rxadc.reg_read(0x80000088) & 4 == 0
    u = sdr._txdac.reg_read(0x80000088)
    assert u & 1
    sdr._txdac.reg_write(0x80000088, u)
    assert sdr._txdac.reg_read(0x80000088) & 1 == 0
    del sdr


def test_overflow_on_the_real_time_medium_sets_the_adc_flag():
    """A reader more kernel buffers behind than the Pluto holds loses samples: the
    real-time medium drops them and the ADC core's bit 2 reads set (pyadi-iio's
    verify_overflow bookkeeping)."""
    with VirtualPlutoLab(1, seed=2, realtime=True, medium_name=None) as lab:
        sdr = adi.Pluto(lab.uris[0])
        sdr.sample_rate = 2_500_000
        sdr.rx_buffer_size = 4096  # 1.6 ms a buffer; 4 kernel buffers hold 6.6 ms
        sdr._rxadc.reg_write(0x80000088, 0x6)
        sdr.rx()  # starts the stream; nobody reads after this
        deadline = time.monotonic() + 5.0
        flagged = False
        while not flagged and time.monotonic() < deadline:
            time.sleep(0.02)
            flagged = bool(sdr._rxadc.reg_read(0x80000088) & 4)
        assert flagged
        assert lab.radios[0].port.overflows > 0
        del sdr

"""Virtual Plutos through the unmodified client stack: libiio tools, adi.Pluto, faults."""

from __future__ import annotations

import gc
import socket

import adi
import numpy as np
import pytest

from hardware.virtual_pluto import AGC_UPDATE_S
from tests.hardware.conftest import run_tool


def _tone_bin(x: np.ndarray) -> int:
    spectrum = np.abs(np.fft.fft(x))
    return int(np.argmax(spectrum))


def _configure(sdr: adi.Pluto, lo: int = 915_000_000) -> None:
    sdr.sample_rate = 1_000_000
    sdr.rx_lo = lo
    sdr.tx_lo = lo
    sdr.rx_rf_bandwidth = 1_000_000
    sdr.tx_rf_bandwidth = 1_000_000
    sdr.gain_control_mode_chan0 = "manual"
    sdr.rx_hardwaregain_chan0 = 40
    sdr.tx_hardwaregain_chan0 = 0


def test_adi_pluto_properties_round_trip(lab):
    sdr = adi.Pluto(lab.uris[0])
    sdr.sample_rate = 750_000  # below 2.083 MS/s: pyadi-iio loads the FIR (decimate by 4)
    assert sdr.sample_rate == 750_000
    rates = sdr._get_iio_dev_attr_str("rx_path_rates")
    assert rates.endswith("RXSAMP:750000")
    assert sdr._get_iio_dev_attr_str("filter_fir_config") == "FIR Rx: 128,4 Tx: 128,4"
    sdr.rx_lo = 2_400_000_000
    sdr.tx_lo = 2_410_000_000
    sdr.rx_rf_bandwidth = 5_000_000
    sdr.gain_control_mode_chan0 = "manual"
    sdr.rx_hardwaregain_chan0 = -3
    sdr.tx_hardwaregain_chan0 = -20.3  # the driver keeps 0.25 dB steps
    assert (sdr.rx_lo, sdr.tx_lo, sdr.rx_rf_bandwidth) == (2_400_000_000, 2_410_000_000, 5e6)
    assert sdr.rx_hardwaregain_chan0 == -3
    assert sdr.tx_hardwaregain_chan0 == -20.25
    port = lab.radios[0].port
    assert (port.lo_hz, port.sample_rate_hz, port.rx_gain_db) == (2.41e9, 750_000, -3)
    assert port.tx_attenuation_db == 20.25
    del sdr


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("rx_lo", 100_000_000),  # below the AD9363's 325 MHz
        ("tx_lo", 4_000_000_000),
        ("rx_rf_bandwidth", 30_000_000),  # AD9363: 20 MHz max
        ("tx_hardwaregain_chan0", 3),
        ("tx_hardwaregain_chan0", -90),
        ("rx_hardwaregain_chan0", 75),
    ],
)
def test_out_of_range_writes_raise_and_leave_state(lab, prop, value):
    sdr = adi.Pluto(lab.uris[0])
    sdr.gain_control_mode_chan0 = "manual"
    before = getattr(sdr, prop)
    with pytest.raises(OSError):
        setattr(sdr, prop, value)
    assert getattr(sdr, prop) == before
    del sdr


def test_cyclic_tx_is_received_by_another_pluto(lab):
    tx, rx = adi.Pluto(lab.uris[0]), adi.Pluto(lab.uris[1])
    for sdr in (tx, rx):
        _configure(sdr)
    n = 4096
    tone = 0.5 * np.exp(2j * np.pi * 64 * np.arange(n) / n) * 2**15
    tx.tx_cyclic_buffer = True
    tx.tx(tone)
    rx.rx_buffer_size = n
    rx.rx()  # first buffer may start before the transmitter's start latency
    x = rx.rx()
    assert np.abs(x.real).max() <= 2048 and np.abs(x.imag).max() <= 2048
    # CFO of two +-25 ppm oscillators at 915 MHz is < 46 kHz: the tone stays within
    # 64 +- 190 bins of 244 Hz
    cfo_hz = lab.medium.link_truth("pluto0", "pluto1").cfo_hz
    expected = round((64 * 1e6 / n + cfo_hz) / (1e6 / n)) % n
    assert abs(_tone_bin(x) - expected) <= 1
    # 0.5 FS, 0 dB attenuation, 60 dB path loss, 40 dB gain: 0.05 FS = 102 codes
    assert np.sqrt(np.mean(np.abs(x) ** 2)) == pytest.approx(102.4, rel=0.1)
    tx.tx_destroy_buffer()
    gc.collect()
    rx.rx()
    x = rx.rx()
    assert np.sqrt(np.mean(np.abs(x) ** 2)) < 5  # only noise and quantization left
    del tx, rx


def test_kernel_buffer_count_and_agc(lab):
    sdr = adi.Pluto(lab.uris[1])
    sdr._rxadc.set_kernel_buffers_count(2)
    sdr.rx_buffer_size = 1024
    sdr.rx()
    port = lab.radios[1].port
    assert port.kernel_buffers == 2 and port.rx_buffer_size == 1024
    with pytest.raises(OSError):  # busy while the buffer is open, as on the device
        sdr._rxadc.set_kernel_buffers_count(3)
    sdr.gain_control_mode_chan0 = "slow_attack"
    start = sdr.rx_hardwaregain_chan0
    for _ in range(3):
        sdr.rx()
    # only noise at -100 dBFS, below the device tree's outer low threshold: the slow
    # AGC raises the gain by its 2 dB step once per 1 ms update, up to the maximum
    updates = max(1, round(1024 / sdr.sample_rate / AGC_UPDATE_S))
    assert sdr.rx_hardwaregain_chan0 == min(71, start + 3 * 2 * updates)
    del sdr


def test_xo_correction_cancels_the_oscillator_error(lab):
    radio = lab.radios[0]
    sdr = adi.Pluto(lab.uris[0])
    actual_xo = round(40e6 * (1 + radio.oscillator_ppm * 1e-6))
    sdr._set_iio_dev_attr_str("xo_correction", actual_xo)
    assert abs(radio.port.ppm) < 0.03  # 1 Hz of 40 MHz
    del sdr


def test_iio_readdev_and_writedev(lab):
    uri_tx, uri_rx = lab.uris
    for uri in lab.uris:
        sdr = adi.Pluto(uri)
        _configure(sdr)
        del sdr
    n = 4096
    tone = 0.5 * np.exp(2j * np.pi * 128 * np.arange(n) / n) * 2**15
    words = np.empty(2 * n, "<i2")
    words[0::2], words[1::2] = tone.real, tone.imag
    wrote = run_tool(
        "iio_writedev", "-u", uri_tx, "-b", str(n), "-s", str(n),
        "cf-ad9361-dds-core-lpc", "voltage0", "voltage1", stdin=words.tobytes(),
    )  # fmt: skip
    assert wrote.returncode == 0, wrote.stderr
    read = run_tool(
        "iio_readdev", "-u", uri_rx, "-b", str(n), "-s", str(2 * n),
        "cf-ad9361-lpc", "voltage0", "voltage1",
    )  # fmt: skip
    assert read.returncode == 0, read.stderr
    data = np.frombuffer(read.stdout, "<i2")
    assert data.size == 4 * n
    assert data.min() >= -2048 and data.max() <= 2047
    x = (data[0::2] + 1j * data[1::2]).astype(np.complex64)
    assert np.max(np.abs(x)) > 50  # the one-shot tone went through the medium


def _raw_lines(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        return sock.recv(4096)


def test_faults_leave_the_server_serving(lab):
    radio = lab.radios[0]
    port = radio.server.port
    # a client opens an RX buffer, asks for a large read and vanishes mid-stream
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"OPEN cf-ad9361-lpc 65536 00000003\r\nREADBUF cf-ad9361-lpc 262144\r\n")
    assert sock.recv(3).startswith(b"0\n")
    sock.close()
    # garbage, binary noise and an overlong line
    assert _raw_lines(port, b"\xff\xfe\x00garbage\r\n").startswith(b"-22\n")
    assert _raw_lines(port, b"A" * 20000 + b"\r\n").startswith(b"-22\n")
    # out-of-range and malformed writes
    assert _raw_lines(port, b"WRITE ad9361-phy OUTPUT altvoltage0 frequency 2\r\n9\x00") == (
        b"-22\n"
    )
    assert _raw_lines(port, b"SET cf-ad9361-lpc BUFFERS_COUNT 0\r\n") == b"-22\n"
    # the server still serves libiio clients, and the device state is intact
    result = run_tool("iio_attr", "-u", radio.uri, "-c", "ad9361-phy", "RX_LO", "frequency")
    assert result.returncode == 0 and result.stdout.strip() == b"2400000000"
    sdr = adi.Pluto(radio.uri)
    sdr.rx_buffer_size = 1024
    assert sdr.rx().size == 1024
    del sdr

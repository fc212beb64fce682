"""Tests of phy.medium: determinism, superposition, impairments measured from captured
signals against the genie truth, transmit modes, kernel-buffer streaming, gains and
noise, coupling, registry and input validation."""

import math
import threading

import numpy as np
import pytest
from scipy.signal import correlate

from phy.impairments import FarrowInterpolator
from phy.medium import (
    NoTddEngineError,
    SharedMedium,
    StreamTooLateError,
    get_medium,
    register_medium,
    unregister_medium,
)

FS = 1e6


def _zc(n=127, root=5):
    k = np.arange(n)
    return 0.5 * np.exp(-1j * np.pi * root * k * (k + 1) / n)


def _pilot(n=128, band=0.3, seed=0):
    """A band-limited random pilot (|f| < band cycles/sample), peak 0.5 per I/Q."""
    rng = np.random.default_rng(seed)
    spectrum = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    spectrum[np.abs(np.fft.fftfreq(n)) >= band] = 0
    x = np.fft.ifft(spectrum)
    return 0.5 * x / max(np.max(np.abs(x.real)), np.max(np.abs(x.imag)))


def _peak(y, ref):
    """Fractional lag (samples) where ref best matches y: correlation peak refined on a
    1/1000-sample grid by band-limited interpolation of the (band-limited) correlation."""
    c = correlate(y, ref, mode="valid")
    i = int(np.argmax(np.abs(c)))
    fine = i + np.linspace(-1.0, 1.0, 2001)
    return fine[int(np.argmax(np.abs(FarrowInterpolator(c)(fine))))]


def _derotate(y, start_s, fs_rx, truth):
    t = start_s + np.arange(y.size) / fs_rx
    return y * np.exp(-1j * (2 * np.pi * truth.cfo_hz * t + truth.phase_rad))


def _pair(seed=0, **medium_kw):
    kw = {"channel_model": "awgn", "noise_dbfs": -200.0, "timing": "ideal"} | medium_kw
    m = SharedMedium(rng=seed, **kw)
    tx, rx = m.add_radio("tx"), m.add_radio("rx")
    m.set_link("tx", "rx", path_loss_db=20.0)
    return m, tx, rx


def test_seed_reproduces_everything():
    def run(seed):
        m = SharedMedium(rng=seed)
        a, b = m.add_radio("a"), m.add_radio("b")
        a.transmit(_zc(), cyclic=True)
        return b.receive(5000), m.link_truth("a", "b"), a.ppm, b.latency_s

    first, second, other = run(11), run(11), run(12)
    np.testing.assert_array_equal(first[0], second[0])
    assert first[1:] == second[1:]
    assert not np.array_equal(first[0], other[0])
    assert first[2] != other[2]


def test_default_draws_within_ranges():
    m = SharedMedium(rng=3)
    ports = [m.add_radio(f"r{i}") for i in range(20)]
    assert all(-25 <= p.ppm <= 25 for p in ports) and len({p.ppm for p in ports}) == 20
    assert all(0 <= p.latency_s <= 2e-3 for p in ports)
    ref = SharedMedium(rng=3, shared_reference=True)
    a, b = ref.add_radio("a"), ref.add_radio("b")
    assert a.ppm == b.ppm and ref.link_truth("a", "b").cfo_hz == pytest.approx(0.0)


def test_superposition_is_linear():
    rng = np.random.default_rng(0)
    xa = 0.3 * np.exp(2j * np.pi * rng.random(3000))
    xb = 0.3 * np.exp(2j * np.pi * rng.random(2000))

    def capture(send_a, send_b):
        m = SharedMedium(rng=5, noise_dbfs=-200.0)  # Rayleigh links, same draws each time
        a, b, r = m.add_radio("a"), m.add_radio("b"), m.add_radio("r")
        for name in "ab":
            m.set_link(name, "r", path_loss_db=30.0)  # far below clipping
        if send_a:
            a.transmit(xa, cyclic=True)
        if send_b:
            b.transmit(xb, cyclic=False)
        return r.capture(1e-3, 6000)

    both, only_a, only_b = capture(True, True), capture(True, False), capture(False, True)
    assert np.mean(np.abs(only_a) ** 2) > 1e-4 and np.mean(np.abs(only_b) ** 2) > 1e-4
    diff = both - only_a - only_b
    lsb = 1 / 2048
    assert np.max(np.abs(diff.real)) <= 1.5 * lsb and np.max(np.abs(diff.imag)) <= 1.5 * lsb


def test_cfo_matches_truth():
    m, tx, rx = _pair(seed=1)
    tx.transmit(np.full(1000, 0.5 + 0j), cyclic=True)
    truth = m.link_truth("tx", "rx")
    assert truth.cfo_hz == pytest.approx(915e6 * (tx.ppm - rx.ppm) * 1e-6, rel=1e-6)
    y = rx.capture(0.01, 20000)
    measured = np.angle(np.sum(y[1:] * np.conj(y[:-1]))) * rx.actual_sample_rate_hz / (2 * np.pi)
    assert measured == pytest.approx(truth.cfo_hz, abs=2.0)
    # what is left after removing the true CFO and LO phase is a constant real amplitude
    residual = np.mean(_derotate(y, 0.01, rx.actual_sample_rate_hz, truth))
    assert np.angle(residual) == pytest.approx(0.0, abs=0.01)
    assert np.abs(residual) == pytest.approx(0.5 * abs(truth.gain), rel=0.01)


def test_latency_and_sro_match_truth():
    m, tx, rx = _pair(seed=2, ppm_range=25.0)
    m.set_link("tx", "rx", delay_s=3.3e-6)
    ref = _pilot()
    period = np.zeros(2000, complex)
    period[: ref.size] = ref
    m.advance(0.5)
    tx.transmit(period, cyclic=True)
    truth = m.link_truth("tx", "rx")
    assert truth.start_s == pytest.approx(0.5 + tx.latency_s)
    fs_rx = rx.actual_sample_rate_hz
    # first pilot: arrival time = start + delay
    start = truth.start_s - 1e-3
    y = _derotate(rx.capture(start, 2500), start, fs_rx, truth)  # one pilot in view
    arrival = start + _peak(y, ref) / fs_rx
    assert arrival == pytest.approx(truth.start_s + truth.delay_s, abs=0.05 / FS)
    # pilot number k arrives at start + delay + k * 2000 / fs_tx: drift gives the SRO
    k = 1000
    t_k = truth.start_s + truth.delay_s + k * 2000 / tx.actual_sample_rate_hz
    y = _derotate(rx.capture(t_k - 1e-3, 2500), t_k - 1e-3, fs_rx, truth)
    arrival_k = t_k - 1e-3 + _peak(y, ref) / fs_rx
    elapsed_rx_samples = (arrival_k - arrival) * fs_rx
    sro_ppm = (k * 2000 / elapsed_rx_samples - 1) * 1e6
    assert sro_ppm == pytest.approx(truth.sro_ppm, abs=0.1)
    assert truth.sro_ppm == pytest.approx(tx.ppm - rx.ppm, abs=1e-3)


def test_cyclic_and_one_shot():
    m, tx, rx = _pair(seed=4)
    tx.latency_s = 0.0
    tx.transmit(np.full(1000, 0.5 + 0j), cyclic=False)
    power = lambda t: np.mean(np.abs(rx.capture(t, 200)) ** 2)  # noqa: E731
    assert power(0.2e-3) > 1e-3 and power(1.5e-3) == 0.0  # one buffer of 1 ms, then silence
    m.advance(5e-3)
    tx.transmit(np.full(1000, 0.5 + 0j), cyclic=True)
    assert power(5.2e-3) > 1e-3 and power(50e-3) > 1e-3  # repeats
    m.advance(95e-3)
    tx.stop_transmit()
    assert power(99e-3) > 1e-3 and power(101e-3) == 0.0
    assert tx.transmission.end_s == pytest.approx(0.1)


def test_stale_buffers_then_fresh_and_overflow_count():
    m, tx, rx = _pair(seed=6)
    rx.rx_buffer_size, rx.kernel_buffers = 1000, 4
    tx.transmit(_zc(), cyclic=True)
    fs = rx.actual_sample_rate_hz
    first = rx.receive(1000)
    np.testing.assert_array_equal(first, rx.capture(0.0, 1000))
    assert m.now_s == pytest.approx(1000 / fs)
    m.advance(2000 / fs)  # 3 buffers filled, 1 read: 2 stale held, nothing lost
    assert rx.held_buffers() == 2 and rx.overflows == 0
    np.testing.assert_array_equal(rx.receive(1000), rx.capture(1000 / fs, 1000))  # stale
    m.advance(10_000 / fs)  # 13 filled, 2 read: keep 4 newest, drop 7
    assert rx.held_buffers() == 4 and rx.overflows == 7
    np.testing.assert_array_equal(rx.receive(1000), rx.capture(9000 / fs, 1000))
    assert rx.flush() == 3
    fresh = rx.receive(1000)  # waits for the buffer being filled
    np.testing.assert_array_equal(fresh, rx.capture(13_000 / fs, 1000))
    assert m.now_s == pytest.approx(14_000 / fs)


def test_retune_draws_new_lo_phase():
    m, tx, rx = _pair(seed=7)
    tx.transmit(np.full(500, 0.5 + 0j), cyclic=True)
    before = m.link_truth("tx", "rx").phase_rad
    y0 = rx.capture(0.01, 2000)
    rx.lo_hz = rx.lo_hz  # same frequency, new synthesizer lock: new phase
    after = m.link_truth("tx", "rx")
    assert after.phase_rad != before
    y1 = rx.capture(0.01, 2000)
    measured = np.angle(np.mean(y1 * np.conj(y0)))
    assert np.angle(np.exp(1j * (measured - (after.phase_rad - before)))) == pytest.approx(
        0.0, abs=0.01
    )


def test_clipping_at_full_scale_and_quantized_output():
    m, tx, rx = _pair(seed=8)
    m.set_link("tx", "rx", path_loss_db=0.0)
    tx.tx_attenuation_db, rx.rx_gain_db = 0.0, 20.0
    tx.transmit(np.full(100, 0.7 + 0.7j), cyclic=True)
    y = rx.capture(0.01, 1000)
    parts = np.concatenate([y.real, y.imag])
    assert np.max(np.abs(parts)) <= 1.0 and np.mean(np.abs(parts) >= 2047 / 2048) > 0.4
    np.testing.assert_array_equal(parts * 2048, np.round(parts * 2048))


def test_gains_scale_the_signal():
    m, tx, rx = _pair(seed=9)
    tx.transmit(np.full(100, 0.5 + 0j), cyclic=True)
    g0 = m.link_truth("tx", "rx").gain
    p0 = np.mean(np.abs(rx.capture(0.01, 4000)) ** 2)
    tx.tx_attenuation_db += 6.0
    rx.rx_gain_db += 3.0
    g1 = m.link_truth("tx", "rx").gain
    assert abs(g1 / g0) == pytest.approx(10 ** (-3 / 20))
    p1 = np.mean(np.abs(rx.capture(0.01, 4000)) ** 2)
    assert 10 * np.log10(p1 / p0) == pytest.approx(-3.0, abs=0.05)


@pytest.mark.parametrize("snr_db", [5.0, 20.0])
def test_snr_helper_gives_measured_snr(snr_db):
    m = SharedMedium(rng=10, channel_model="rayleigh", noise_dbfs=-100.0)
    tx, rx = m.add_radio("tx"), m.add_radio("rx", rx_gain_db=50.0)
    x = np.full(1000, 0.5 + 0j)
    m.set_link_snr("tx", "rx", snr_db, signal_power=0.25)
    tx.transmit(x, cyclic=True)
    truth = m.link_truth("tx", "rx")
    y = _derotate(rx.capture(0.01, 100_000), 0.01, rx.actual_sample_rate_hz, truth)
    signal = np.mean(y)
    measured = 10 * np.log10(np.abs(signal) ** 2 / np.var(y))
    assert measured == pytest.approx(snr_db, abs=0.3)
    assert np.var(y) == pytest.approx(m.noise_power("rx"), rel=0.05)


def test_noise_power_follows_rx_gain_and_is_counter_based():
    m = SharedMedium(rng=11, noise_dbfs=-90.0)
    rx = m.add_radio("rx", rx_gain_db=40.0)
    y = rx.capture(0.0, 50_000)
    assert 10 * np.log10(np.mean(np.abs(y) ** 2)) == pytest.approx(-50.0, abs=0.2)
    # pure: the same window twice is identical; overlapping windows agree sample by sample
    np.testing.assert_array_equal(y, rx.capture(0.0, 50_000))
    np.testing.assert_array_equal(y[100:], rx.capture(100 / rx.actual_sample_rate_hz, 49_900))
    rx.rx_gain_db = 50.0
    y = rx.capture(0.0, 50_000)
    assert 10 * np.log10(np.mean(np.abs(y) ** 2)) == pytest.approx(-40.0, abs=0.2)


def test_coupling_needs_lo_within_rx_bandwidth():
    m, tx, rx = _pair(seed=12)
    tx.transmit(np.full(100, 0.5 + 0j), cyclic=True)
    assert np.mean(np.abs(rx.capture(0.01, 1000)) ** 2) > 1e-3
    tx.lo_hz = 915e6 + 0.4e6  # within +-0.5 MHz of a 1 MHz bandwidth
    assert m.link_truth("tx", "rx").coupled
    tx.lo_hz = 2.4e9
    assert not m.link_truth("tx", "rx").coupled
    assert np.all(rx.capture(0.01, 1000) == 0)
    assert np.all(tx.capture(0.01, 1000) == 0)  # no self-link by default


def test_positions_give_path_loss_and_delay():
    m = SharedMedium(rng=13, channel_model="awgn")
    m.add_radio("a", position=(0.0, 0.0, 0.0))
    m.add_radio("b", position=(30.0, 40.0))
    truth = m.link_truth("a", "b")
    assert truth.delay_s == pytest.approx(50.0 / 299_792_458.0)
    assert truth.path_loss_db == pytest.approx(20 * np.log10(4 * np.pi * 50 * 915e6 / 299_792_458))


def test_redraw_fading_changes_unpinned_links_only():
    m = SharedMedium(rng=14)
    for name in "abc":
        m.add_radio(name)
    m.set_link("a", "c", gain=0.5j)
    before_ab, before_ac = m.link_truth("a", "b").fading, m.link_truth("a", "c").fading
    m.redraw_fading()
    assert m.link_truth("a", "b").fading != before_ab
    assert m.link_truth("a", "c").fading == before_ac == 0.5j


def test_concurrent_readers():
    m = SharedMedium(rng=15)
    ports = [m.add_radio(f"r{i}", rx_buffer_size=4096) for i in range(3)]
    ports[0].transmit(_zc(), cyclic=True)
    errors = []

    def reader(port):
        try:
            for _ in range(10):
                assert port.receive(4096).shape == (4096,)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=reader, args=(p,)) for p in ports[1:]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_realtime_receive_returns_requested_samples():
    m = SharedMedium(rng=16, realtime=True)
    rx = m.add_radio("rx", rx_buffer_size=1000)
    assert rx.receive(500).shape == (500,)
    with pytest.raises(RuntimeError):
        m.advance(1.0)


def test_registry():
    m = register_medium("test-medium-registry", SharedMedium(rng=0))
    assert get_medium("test-medium-registry") is m
    unregister_medium("test-medium-registry")
    with pytest.raises(KeyError):
        get_medium("test-medium-registry")
    with pytest.raises(ValueError):
        register_medium("a/b", m)


def test_bad_input_raises():
    m, tx, rx = _pair()
    with pytest.raises(ValueError):
        tx.transmit(np.array([np.nan + 0j]))
    with pytest.raises(ValueError):
        tx.transmit(np.ones((2, 2)))
    with pytest.raises(ValueError):
        tx.transmit(np.ones(0))
    with pytest.raises(ValueError):
        rx.capture(np.nan, 10)
    with pytest.raises(ValueError):
        rx.receive(-1)
    with pytest.raises(ValueError):
        tx.tx_attenuation_db = -1.0
    with pytest.raises(ValueError):
        rx.sample_rate_hz = 0.0
    with pytest.raises(ValueError):
        rx.kernel_buffers = 0
    with pytest.raises(ValueError):
        m.add_radio("tx")
    with pytest.raises(KeyError):
        m.set_link("tx", "nobody", path_loss_db=3.0)
    with pytest.raises(ValueError):
        m.set_link("tx", "rx", delay_s=-1.0)
    with pytest.raises(ValueError):
        m.advance(-1.0)
    with pytest.raises(ValueError):
        SharedMedium(latency_range_s=(2e-3, 1e-3))
    with pytest.raises(ValueError):
        SharedMedium(channel_model="nope")


def test_restarted_rx_stream_continues_on_the_same_sample_grid():
    """Restarting the stream where the clock stopped must not slip a sample to float
    rounding (regression: ceil(now * fs) jumped one sample for some oscillator errors)."""
    for ppm in np.linspace(-25.0, 25.0, 41):
        medium = SharedMedium(rng=0)
        port = medium.add_radio("rx", ppm=float(ppm), rx_buffer_size=1000)
        port.receive(4000)
        fs = port.actual_sample_rate_hz
        end_index = round(medium.now_s * fs)
        port.rx_buffer_size = 1000  # restarts the stream
        port.receive(1000)
        assert round(port._stream_t0 * fs) == end_index


def test_passive_radio_changes_no_draw_of_the_others():
    """An eavesdropper added after the others (even one heard through set_link before
    any render) leaves every other radio's samples, link draws and redraws unchanged."""

    def run(with_eve: bool):
        m = SharedMedium(rng=5, channel_model="rayleigh")
        a, b, rx = m.add_radio("a"), m.add_radio("b"), m.add_radio("rx")
        if with_eve:
            m.add_radio("eve", passive=True)
            m.set_link("a", "eve", path_loss_db=55.0)  # its links exist before any render
        a.transmit(_zc(), cyclic=True)
        b.transmit(_zc(root=7), cyclic=True)
        first = rx.receive(3000)
        m.redraw_fading()
        second = rx.receive(3000)
        links = [m.link_truth(t, r).fading for t, r in (("a", "rx"), ("b", "rx"), ("rx", "a"))]
        return first, second, links, m

    base, base2, base_links, _ = run(False)
    first, second, links, m = run(True)
    np.testing.assert_array_equal(first, base)
    np.testing.assert_array_equal(second, base2)
    assert links == base_links
    eve = m.port("eve")
    assert eve.passive and not m.port("a").passive
    with pytest.raises(RuntimeError, match="passive"):
        eve.transmit(_zc())
    assert ("eve", "rx") not in m._links  # a passive radio has no outgoing link
    # its own fading: independent of the receiver's links, redrawn by redraw_fading
    assert m.link_truth("b", "eve").fading not in links
    assert np.any(np.abs(eve.capture(m.now_s - 0.003, 3000)) > 0)


def test_stream_time_places_the_last_read_for_another_capture():
    """An eavesdropper with the receiver's oscillator and link (noise-free) captures the
    receiver's last read, sample for sample, up to their LO phase difference."""
    m = SharedMedium(rng=2, channel_model="rayleigh", noise_dbfs=-300.0)
    tx, rx = m.add_radio("tx"), m.add_radio("rx", rx_gain_db=0.0)
    assert rx.stream_position is None
    with pytest.raises(RuntimeError, match="no RX stream"):
        rx.stream_time_s(0)
    eve = m.add_radio("eve", passive=True, ppm=rx.ppm, rx_gain_db=0.0)
    m.set_link("tx", "rx", path_loss_db=0.0)
    m.set_link("tx", "eve", gain=m.link_truth("tx", "rx").fading, path_loss_db=0.0)
    tx.transmit(_pilot(400), cyclic=True)
    rx.receive(1000)
    m.advance(0.0123)
    y = rx.receive(2500)
    assert rx.stream_position == 3500  # stale kernel buffers: the stream went on from 1000
    end = rx.stream_position
    z = eve.capture(rx.stream_time_s(end - 2500), 2500)
    ratio = z / y
    strong = np.abs(y) > 0.3 * np.abs(y).max()
    expected = np.exp(1j * (rx.lo_phase_rad - eve.lo_phase_rad))
    np.testing.assert_allclose(ratio[strong], expected, atol=1e-2)  # 12-bit ADCs
    shifted = eve.capture(rx.stream_time_s(end - 2501), 2500)  # one sample off: no match
    assert np.max(np.abs(shifted / y - expected)[strong]) > 0.1


# ------------------------------------------------------------- realistic buffer timing
def test_realistic_timing_jitters_every_push_and_ideal_does_not():
    starts = {}
    for timing in ("realistic", "ideal"):
        m, tx, _ = _pair(timing=timing)
        lat = []
        for _ in range(20):
            lat.append(tx.transmit(_zc(), cyclic=True).latency_s)
        starts[timing] = np.ptp(lat)
    assert starts["ideal"] == 0.0
    assert 0.3e-3 < starts["realistic"] <= 1e-3  # U(0, 1 ms) per push


def test_stream_plays_back_to_back_at_placed_indices():
    m, tx, rx = _pair(timing="realistic")
    tx.start_stream(block=1024, buffers=2)
    rx.receive(10)
    first = tx.earliest_index()
    assert first >= 2048
    burst = _pilot(128, seed=1)
    tx.place(burst, first + 5000)
    tx.place(burst, first + 9000)
    with pytest.raises(StreamTooLateError, match="earliest placeable"):
        tx.place(burst, 0)
    y = rx.receive(40000)  # RX stream samples 10 .. 40009
    fs_rx = rx.actual_sample_rate_hz
    y = _derotate(y, rx.stream_time_s(10), fs_rx, m.link_truth("tx", "rx"))
    for index in (first + 5000, first + 9000):
        expected = (tx.stream_index_time_s(index) - rx.stream_time_s(10)) * fs_rx
        lo = int(expected) - 200
        assert lo + _peak(y[lo : lo + 600], burst) == pytest.approx(expected, abs=0.05)
    assert not tx.tx_underflow


def test_feeder_stall_underflows_shifts_and_sets_the_sticky_flag():
    m, tx, rx = _pair(timing="realistic")
    tx.start_stream(block=1024, buffers=2)
    rx.receive(10)
    idx = tx.earliest_index() + 100
    before = tx.stream_index_time_s(idx + 3000)
    assert tx.stall_feeder(0.0) == 0.0  # a zero stall: the queue never runs dry
    gap = tx.stall_feeder(0.01)
    assert gap > 0.01 - 2048 / FS
    assert tx.stream_index_time_s(idx + 3000) == pytest.approx(before + gap)
    assert not tx.tx_underflow  # rises only once the queue has run dry
    rx.discard(40000)
    assert tx.tx_underflow
    tx.clear_tx_underflow()
    assert not tx.tx_underflow


def test_stream_that_cannot_be_fed_is_refused():
    m, tx, _ = _pair(max_stream_rate_hz=4e6)
    tx.sample_rate_hz = 10e6
    with pytest.raises(RuntimeError, match="cannot be fed"):
        tx.start_stream()


def test_rx_overflow_drops_samples_and_sets_the_flag():
    m, _, rx = _pair()
    rx.receive(100)
    assert not rx.rx_overflow
    m.advance(10 * rx.rx_buffer_size / FS)
    assert rx.rx_overflow and rx.overflows > 0
    rx.clear_rx_overflow()
    assert not rx.rx_overflow


def test_tdd_buffers_start_on_the_shared_pulse_on_each_radio_clock():
    m, tx, rx = _pair(timing="realistic", sync_period_s=0.01)
    burst = _pilot(256, seed=2)
    tr = tx.arm_transmit(burst)
    y = rx.arm_receive(2000)
    truth = m.link_truth("tx", "rx")
    y = _derotate(y, 0.01, rx.actual_sample_rate_hz, truth)
    assert tr.start_s == pytest.approx(0.01, abs=1.5 / FS)  # first pulse after arming
    lag = _peak(y, burst)
    # both start on the same pulse: the lag is below one sample (clock-edge alignment)
    assert abs(lag) < 1.0 + 1e-3
    assert truth.start_s == tr.start_s
    # on-demand pulses, and a radio without the engine refuses
    m2, tx2, rx2 = _pair(timing="realistic")
    tr2 = tx2.arm_transmit(burst)
    assert math.isinf(tr2.start_s)
    with pytest.raises(RuntimeError, match="no sync pulse"):
        rx2.arm_receive(100)
    t = m2.pulse(5e-3)  # after the armed buffer reached the DMA (push latency <= 3 ms)
    assert tr2.start_s == pytest.approx(t, abs=1.0 / FS)
    old = m2.add_radio("old", tdd_engine=False)
    with pytest.raises(NoTddEngineError, match="v0.39"):
        old.arm_transmit(burst)


def test_pushed_stream_plays_back_to_back_until_a_late_push_underflows():
    m, tx, rx = _pair(timing="realistic")
    a = tx.push(_pilot(1000, seed=3))
    b = tx.push(_pilot(1000, seed=4))
    assert b.start_s == pytest.approx(a.start_s + 1000 / tx.actual_sample_rate_hz)
    assert tx.queued_s() > 0.001
    m.advance(0.05)  # the host pauses: the queue runs dry
    c = tx.push(_pilot(1000, seed=5))
    assert c.start_s > b.end_s + 0.04  # after the zeros, when the push arrived
    assert tx.tx_underflow


def test_the_sum_does_not_depend_on_which_user_pushed_first():
    """Node processes push a slot's transmissions in whatever order they run: the received
    samples must be bit-identical for every order (float sums in another order differ in
    the last bits, and the run's metrics with them)."""
    rng = np.random.default_rng(1)
    signals = {name: 0.1 * np.exp(2j * np.pi * rng.random(4000)) for name in "abcdef"}

    def capture(order: str) -> np.ndarray:
        m = SharedMedium(rng=7, noise_dbfs=-200.0)
        ports = {name: m.add_radio(name) for name in "abcdef"}
        r = m.add_radio("r")
        for name in ports:  # near full scale: last-bit differences reach the ADC steps
            m.set_link(name, "r", gain=np.exp(1j * ord(name)), path_loss_db=0.0)
        for name in order:
            ports[name].transmit(signals[name], cyclic=True)
        return r.capture(1e-3, 400_000)  # long: an ADC step flips for few samples

    first = capture("abcdef")
    for order in ("fedcba", "cafebd", "bdface"):
        assert np.array_equal(capture(order), first), order


def test_transmit_at_plays_where_a_push_at_that_time_would_and_cuts_nothing():
    pilot = _pilot(400, seed=3)
    pushed, tx, rx = _pair(seed=6)
    pushed.advance(0.05)
    tx.transmit(pilot, cyclic=True)  # pushed at 50 ms, stopped at 60 ms
    pushed.advance(0.01)
    tx.stop_transmit()
    want = rx.capture(0.049, 12000)

    planned, tx, rx = _pair(seed=6)  # the same draws; the clock stays at 0
    tx.transmit_at(np.full(100, 0.5 + 0j), 0.01)  # once: 100 us from 10 ms + latency
    tx.transmit_at(pilot, 0.05, 0.06)  # later, and kept: nothing is cut
    tx.transmit_at(np.full(100, 0.5 + 0j), 0.07)
    np.testing.assert_array_equal(rx.capture(0.049, 12000), want)
    power = lambda t: np.mean(np.abs(rx.capture(t, 50)) ** 2)  # noqa: E731
    latency = tx.transmission.latency_s
    assert power(0.01 + latency + 20e-6) > 1e-3 and power(0.07 + latency + 20e-6) > 1e-3
    assert power(0.0102 + latency) == 0.0  # the first buffer played once
    assert planned.now_s == 0.0  # scheduling moves no clock

    with pytest.raises(ValueError, match="overlaps"):  # one buffer at a time per radio
        tx.transmit_at(pilot, 0.055, 0.058)
    planned.advance(0.1)
    with pytest.raises(ValueError, match="before the clock"):
        tx.transmit_at(pilot, 0.09)
    realtime = SharedMedium(rng=0, realtime=True)
    with pytest.raises(RuntimeError, match="deterministic clock"):
        realtime.add_radio("tx").transmit_at(pilot, 1.0)


def test_render_jobs_pickle_and_give_the_capture_anywhere():
    import pickle

    m, tx, rx = _pair(seed=8, noise_dbfs=-60.0)
    tx.transmit(_pilot(300, seed=1), cyclic=True)
    m.advance(0.01)
    rx.capture(0.005, 100)  # builds the transmission's interpolator here
    jobs = m.render_jobs([("rx", 0.002, 5000), ("rx", 0.0071, 3000)])
    assert jobs[0].heard[0][0]._interp is not None
    shipped = pickle.loads(pickle.dumps(jobs))  # as a planned wave ships them to a worker
    assert shipped[0].heard[0][0]._interp is None  # the interpolator is rebuilt there
    for job, start, n in zip(shipped, (0.002, 0.0071), (5000, 3000), strict=True):
        np.testing.assert_array_equal(job.render(), rx.capture(start, n))

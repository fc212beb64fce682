"""Tests of phy.impairments: each impairment against its closed form, interpolation
accuracy on band-limited signals, quantization, and input validation."""

import numpy as np
import pytest

from phy import impairments as imp


def _multitone(rng, n_tones=64, band=0.4):
    """A random band-limited signal x(t) (t in samples) with |f| < band cycles/sample."""
    f = rng.uniform(-band, band, n_tones)
    a = (rng.standard_normal(n_tones) + 1j * rng.standard_normal(n_tones)) / np.sqrt(n_tones)
    return lambda t: (a[None, :] * np.exp(2j * np.pi * np.outer(t, f))).sum(axis=1)


def _err_db(y, ref):
    return 10 * np.log10(np.mean(np.abs(y - ref) ** 2) / np.mean(np.abs(ref) ** 2))


def test_cfo_matches_formula_and_continues_across_blocks():
    x = np.ones(1000, np.complex64)
    y = imp.apply_cfo(x, 1234.5, 1e5, phase_rad=0.3)
    k = np.arange(1000)
    np.testing.assert_allclose(y, np.exp(1j * (2 * np.pi * 1234.5 * k / 1e5 + 0.3)), atol=1e-6)
    assert y.dtype == np.complex64
    whole = imp.apply_cfo(x.astype(complex), -777.0, 1e5)
    parts = np.concatenate(
        [imp.apply_cfo(x[:400], -777.0, 1e5), imp.apply_cfo(x[400:], -777.0, 1e5, start_index=400)]
    )
    np.testing.assert_allclose(parts, whole, atol=1e-6)


def test_phase_offset_and_gain():
    x = np.array([1 + 0j, 1j, -2.0])
    np.testing.assert_allclose(imp.apply_phase_offset(x, np.pi / 2), 1j * x, atol=1e-12)
    np.testing.assert_allclose(imp.apply_gain_db(x, -6.0), x * 10 ** (-6 / 20), rtol=1e-12)


def test_wiener_phase_increment_variance_and_seed():
    phi = imp.wiener_phase(200_000, 1000.0, 1e6, rng=3)
    assert phi[0] == 0.0
    var = np.var(np.diff(phi))
    assert var == pytest.approx(2 * np.pi * 1000.0 / 1e6, rel=0.02)
    np.testing.assert_array_equal(phi, imp.wiener_phase(200_000, 1000.0, 1e6, rng=3))
    y = imp.apply_phase_noise(np.ones(10, np.complex64), 1000.0, 1e6, rng=3)
    np.testing.assert_allclose(np.abs(y), 1.0, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_farrow_interpolation_better_than_minus_50_db(dtype):
    rng = np.random.default_rng(1)
    sig = _multitone(rng)
    x = sig(np.arange(3000)).astype(dtype)
    interp = imp.FarrowInterpolator(x)
    pos = np.linspace(500, 2500, 4001) + 0.123
    assert _err_db(interp(pos), sig(pos)) < -55
    assert interp(pos).dtype == dtype
    # the slice-based run() agrees with __call__ (slowly drifting fraction)
    m = np.arange(1500)
    run = interp.run(700, 0.25, 3e-4, m.size)
    np.testing.assert_allclose(run, interp(700 + m + 0.25 + 3e-4 * m), atol=1e-4)


@pytest.mark.parametrize("cycles", [0.3, 0.44, 0.45])
def test_farrow_interpolation_holds_at_the_edge_of_a_cfo_rotated_band(cycles):
    # an OFDM frame pre-rotated by a 45 kHz CFO reaches 0.45 of the 1 MS/s rate; the
    # earlier 20-tap design was -19 dB off at 0.44 (each user's band edge distorted)
    tone = lambda t: np.exp(2j * np.pi * cycles * t)  # noqa: E731
    interp = imp.FarrowInterpolator(tone(np.arange(3000)))
    pos = np.linspace(1000, 2000, 2001) + 0.37
    assert _err_db(interp(pos), tone(pos)) < -50


def test_farrow_cyclic_is_periodic_band_limited():
    rng = np.random.default_rng(2)
    n = 512
    bins = rng.integers(-200, 200, 40)
    amp = rng.standard_normal(40) + 1j * rng.standard_normal(40)
    sig = lambda t: (amp[None, :] * np.exp(2j * np.pi * np.outer(t, bins / n))).sum(axis=1)  # noqa: E731
    interp = imp.FarrowInterpolator(sig(np.arange(n)), cyclic=True)
    pos = np.linspace(-5000, 90000, 9001) + 0.37
    assert _err_db(interp(pos), sig(pos)) < -55
    run = interp.run(80000, 0.1, 1e-6, 70000)  # crosses the unrolled table wrap
    m = np.arange(70000)
    assert _err_db(run, sig(80000 + m + 0.1 + 1e-6 * m)) < -55


def test_timing_offset_integer_exact_and_fractional_accurate():
    rng = np.random.default_rng(4)
    sig = _multitone(rng)
    x = sig(np.arange(2000))
    y = imp.apply_timing_offset(x, 5)
    np.testing.assert_array_equal(y[5:], x[:-5])
    assert np.all(y[:5] == 0)
    y = imp.apply_timing_offset(x, 2.4)
    k = np.arange(100, 1900)
    assert _err_db(y[k], sig(k - 2.4)) < -55


def test_sample_rate_offset_resamples():
    rng = np.random.default_rng(5)
    sig = _multitone(rng)
    x = sig(np.arange(5000))
    y = imp.apply_sample_rate_offset(x, 40.0, delay_samples=1.5)
    m = np.arange(100, 4800)
    assert _err_db(y[m], sig(m * (1 + 40e-6) - 1.5)) < -55


def test_quantize_levels_and_clipping():
    x = np.array([0.0, 1 / 2048 * 0.6, 2.0 - 0.5j, -3.0 + 1j, 0.25], np.complex64)
    q = imp.adc_quantize(x)
    np.testing.assert_allclose(q.real, [0, 1 / 2048, 2047 / 2048, -1.0, 0.25])
    np.testing.assert_allclose(q.imag, [0, 0, -0.5, 2047 / 2048, 0])
    assert q.dtype == np.complex64
    q8 = imp.dac_quantize(np.array([0.3 + 0.3j]), bits=8)
    assert np.allclose(q8 * 128, np.round(q8 * 128))


def test_awgn_power():
    y = imp.add_awgn(np.zeros(100_000, np.complex64), 0.01, rng=7)
    assert np.mean(np.abs(y) ** 2) == pytest.approx(0.01, rel=0.03)
    assert y.dtype == np.complex64


@pytest.mark.parametrize(
    "call",
    [
        lambda: imp.apply_cfo(np.array([np.nan + 0j]), 1.0, 1.0),
        lambda: imp.apply_cfo(np.ones((2, 2)), 1.0, 1.0),
        lambda: imp.apply_cfo(np.ones(2), 1.0, -1.0),
        lambda: imp.add_awgn(np.ones(2), -1.0, rng=0),
        lambda: imp.quantize(np.ones(2), bits=1),
        lambda: imp.quantize(np.ones(2), full_scale=0.0),
        lambda: imp.wiener_phase(10, -1.0, 1e6, rng=0),
        lambda: imp.apply_timing_offset(np.ones(4), np.nan),
        lambda: imp.FarrowInterpolator(np.ones(0)),
        lambda: imp.FarrowInterpolator(np.ones(8), taps=7),
        lambda: imp.apply_sample_rate_offset(np.ones(4), 2e5),
    ],
)
def test_bad_input_raises(call):
    with pytest.raises(ValueError):
        call()

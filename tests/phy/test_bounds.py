"""phy.bounds: the CRBs match the textbook forms, and the link estimator does not beat
them (an unbiased estimator cannot; one that does means the bound is for another
observation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from phy.bounds import cfo_crb_pilot_hz, delay_crb_pilot_samples, pilot_block_starts
from phy.estimation import PILOT_REPS, estimate_user_link, pilot_blocks
from phy.rng import make_rng
from phy.sync import cfo_crb_hz
from phy.waveform import OfdmConfig, render_blocks

C = OfdmConfig()
CAPTURE = 16384


def test_bounds_reduce_to_the_textbook_forms():
    # contiguous samples: the pilot-block CFO bound is the tone bound over those samples
    n = C.n_fft
    snr = 10.0
    rho = snr * C.used_bins.size / n
    contiguous = np.arange(0, 10 * n, n, dtype=float)  # 10 blocks back to back
    assert cfo_crb_pilot_hz(snr, contiguous, C) == pytest.approx(
        cfo_crb_hz(rho, 10 * n, C.sample_rate_hz)
    )
    # one block, symmetric used bins: 1 / sqrt(2 snr sum w_k^2), as in tests/phy/test_sync
    w = 2 * np.pi * C.used_bins / n
    assert delay_crb_pilot_samples(snr, 1, C) == pytest.approx(
        1 / math.sqrt(2 * snr * np.sum((w - w.mean()) ** 2))
    )
    assert delay_crb_pilot_samples(snr, 4, C) == pytest.approx(
        delay_crb_pilot_samples(snr, 1, C) / 2
    )
    assert math.isinf(cfo_crb_pilot_hz(snr, np.array([]), C))
    with pytest.raises(ValueError):
        cfo_crb_pilot_hz(-1.0, contiguous, C)


def test_block_starts_follow_the_pilot_layout():
    period = C.preamble_len - C.n_long * C.n_fft + PILOT_REPS * C.n_fft
    starts = pilot_block_starts(CAPTURE, 700.25, C)
    assert starts[0] == pytest.approx(700.25 + C.long_start)
    assert np.all(np.diff(starts)[: PILOT_REPS - 1] == C.n_fft)
    assert starts[PILOT_REPS] - starts[0] == pytest.approx(period)
    assert starts[-1] + C.n_fft + 1 < CAPTURE and starts.size < 4 * PILOT_REPS


def _capture(rng, delay: float, cfo_hz: float, snr_subcarrier: float) -> np.ndarray:
    """One user's cyclic pilot from ``delay`` on, CFO, random phase, AWGN such that the
    per-subcarrier SNR of the unit-gain pilot is ``snr_subcarrier``."""
    i = int(math.floor(delay))
    periods = CAPTURE // 4000 + 2
    y = render_blocks(pilot_blocks(0, C) * periods, C, np.full(2 * periods, delay - i))
    x = np.zeros(CAPTURE, complex)
    x[i:] = y[: CAPTURE - i]
    idx = np.arange(CAPTURE)
    x *= np.exp(2j * np.pi * (cfo_hz / C.sample_rate_hz * idx + rng.uniform()))
    noise_power = C.amplitude**2 / (snr_subcarrier * C.used_bins.size / C.n_fft)
    return x + math.sqrt(noise_power / 2) * (
        rng.standard_normal(CAPTURE) + 1j * rng.standard_normal(CAPTURE)
    )


@pytest.mark.parametrize("snr_db", [5.0, 20.0])
def test_link_estimator_error_is_not_clearly_below_its_bound(snr_db):
    """RMS of the per-draw error over its bound, with a 95% interval from the chi-square
    law of a mean of squares: the interval's upper end must reach 1."""
    rng = make_rng(11)
    snr = 10 ** (snr_db / 10)
    draws = 40
    z_cfo, z_delay = [], []
    for _ in range(draws):
        delay, cfo = rng.uniform(500, 1500), rng.uniform(-20e3, 20e3)
        estimate = estimate_user_link(_capture(rng, delay, cfo, snr), 0, C)
        starts = pilot_block_starts(CAPTURE, delay, C)
        z_cfo.append((estimate.cfo_hz - cfo) / cfo_crb_pilot_hz(snr, starts, C))
        z_delay.append(
            (estimate.delay_samples - delay) / delay_crb_pilot_samples(snr, starts.size, C)
        )

    for z in (np.array(z_cfo), np.array(z_delay)):
        ratio = math.sqrt(np.mean(z**2))
        # n mean(z^2) / E[z^2] ~ chi2(n): the largest ratio consistent with the draws
        upper = ratio * math.sqrt(draws / stats.chi2.ppf(0.025, draws))
        assert upper >= 1.0, f"error {ratio:.2f} x CRB (95% upper {upper:.2f}): beats its bound"
        assert ratio < 3.0  # and the estimator is near-efficient, not merely above it

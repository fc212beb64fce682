"""Cramér-Rao bounds for what the link estimator actually observes.

:func:`phy.estimation.estimate_user_link` sees one user's cyclic pilot
(:func:`phy.estimation.pilot_blocks`: a short preamble, then ``reps`` long ZC blocks of
``n_fft`` samples, each behind a cyclic prefix) from the user's start latency
``delay`` to the end of the capture. It uses only the long blocks that lie wholly inside
the capture. The bounds below are computed for exactly those blocks
(:func:`pilot_block_starts`) and the user's received per-subcarrier SNR, not for a
generic tone of the capture's length:

* CFO: a complex exponential of unknown amplitude and phase observed on the samples
  ``t`` of the used blocks with per-sample SNR ``rho``:
  ``std(f) >= fs / (2 pi) / sqrt(2 rho sum_t (t - mean t)^2)``;
* timing: the delay moves the phase of subcarrier ``k`` by ``-2 pi k tau / n_fft``; with
  an unknown common complex gain and per-subcarrier SNR ``snr`` in each of ``N`` blocks:
  ``std(tau) >= 1 / sqrt(2 snr N sum_k (w_k - mean w)^2)``, ``w_k = 2 pi k / n_fft``.

SNR conventions (as :func:`radio.ota_session.medium_truth` and
:class:`phy.estimation.LinkEstimate`): ``snr_subcarrier`` is the per-subcarrier SNR of a
unit-power symbol sent with unit scaling; the per-sample SNR of the time-domain frame is
``snr_subcarrier * n_used / n_fft``.
"""

from __future__ import annotations

import math

import numpy as np

from phy.estimation import PILOT_REPS
from phy.waveform import OfdmConfig

__all__ = ["cfo_crb_pilot_hz", "delay_crb_pilot_samples", "pilot_block_starts"]


def _check_snr(snr_subcarrier: float) -> None:
    if not (math.isfinite(snr_subcarrier) and snr_subcarrier > 0):
        raise ValueError(f"snr_subcarrier must be positive, got {snr_subcarrier}")


def pilot_block_starts(
    capture_len: int, delay_samples: float, config: OfdmConfig, reps: int = PILOT_REPS
) -> np.ndarray:
    """Capture indices (float ``(n_blocks,)``) where the long pilot blocks the estimator
    uses start: period ``p`` block ``b`` at ``delay + p * period + long_start + b n_fft``,
    kept when ``[start, start + n_fft + 1]`` lies inside ``[1, capture_len)``."""
    if capture_len < 1:
        raise ValueError(f"capture_len must be >= 1, got {capture_len}")
    n = config.n_fft
    period = config.preamble_len - config.n_long * n + reps * n
    n_periods = int(max(capture_len - delay_samples, 0) // period) + 1
    m = (np.arange(n_periods)[:, None] * period + config.long_start + n * np.arange(reps)).ravel()
    starts = delay_samples + m
    return starts[(starts >= 1) & (starts + n + 1 < capture_len)].astype(float)


def cfo_crb_pilot_hz(snr_subcarrier: float, block_starts: np.ndarray, config: OfdmConfig) -> float:
    """Cramér-Rao bound (standard deviation, Hz) of the CFO from the long blocks starting
    at ``block_starts`` (see the module docstring); inf with fewer than one block."""
    _check_snr(snr_subcarrier)
    starts = np.asarray(block_starts, float)
    if starts.size == 0:
        return math.inf
    n = config.n_fft
    t = (starts[:, None] + np.arange(n)).ravel()
    rho = snr_subcarrier * config.used_bins.size / n
    spread = float(np.sum((t - t.mean()) ** 2))
    return config.sample_rate_hz / (2 * math.pi) / math.sqrt(2 * rho * spread)


def delay_crb_pilot_samples(snr_subcarrier: float, n_blocks: int, config: OfdmConfig) -> float:
    """Cramér-Rao bound (standard deviation, samples) of the delay from ``n_blocks`` long
    blocks (see the module docstring); inf for no block."""
    _check_snr(snr_subcarrier)
    if n_blocks < 1:
        return math.inf
    w = 2 * np.pi * config.used_bins / config.n_fft
    spread = float(np.sum((w - w.mean()) ** 2))
    return 1.0 / math.sqrt(2 * snr_subcarrier * n_blocks * spread)

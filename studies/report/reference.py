"""Closed-form references the report compares runs with.

``closed_form_mse``: ``E_h[MSE]`` of a :mod:`phy.power` policy over i.i.d. draws of the
run's fading model, with the run's group sizes and mixing weights, unit power limits and
``noise_var = 10**(-snr_db/10)`` relative to a unit-gain full-power user (the medium's
SNR convention; the MSE is invariant to a common scaling of gains and noise).
"""

from __future__ import annotations

import inspect
import math

import numpy as np

REFERENCE_DRAWS = 20000


def closed_form_mse(
    policy: str,
    group_sizes: dict[int, int],
    snr_db: float,
    fading: str = "rayleigh",
    mixing: str = "equal",
    draws: int = REFERENCE_DRAWS,
    seed: int = 0,
) -> float:
    """``E_h[MSE]`` (linear, per complex symbol) of ``policy`` for groups of the given
    sizes (group size -> count, averaged weighted by count) at ``snr_db``."""
    from learning.mixup import make_policy
    from phy.channel import make_channel_model
    from phy.power import get_power_policy

    function = get_power_policy(policy)
    takes_rng = "rng" in inspect.signature(function).parameters
    mixer = make_policy(mixing)
    rng = np.random.default_rng(seed)
    total, weight = 0.0, 0
    for k, count in sorted(group_sizes.items()):
        h = make_channel_model(fading).generate((draws, k), rng)
        w = np.stack([mixer.draw(k, rng) for _ in range(draws)])
        kwargs = {"rng": rng} if takes_rng else {}
        mse = np.asarray(function(h, w, 1.0, 10 ** (-snr_db / 10), **kwargs).mse)
        total += count * float(np.mean(mse))
        weight += count
    return total / weight if weight else math.nan


def subcarrier_snr_offset_db(sample_rate_hz: float = 1e6) -> float:
    """Per-subcarrier SNR minus ``channel.snr_db``: the medium's SNR is defined over the
    whole sampled band, while the OFDM frame puts its power on ``len(used_bins)`` of
    ``n_fft`` subcarriers, so each carries ``10 log10(n_fft / used)`` dB more SNR
    (0.9 dB for 52 of 64)."""
    from phy.waveform import OfdmConfig

    ofdm = OfdmConfig(sample_rate_hz=sample_rate_hz)
    return 10 * math.log10(ofdm.n_fft / len(ofdm.used_bins))

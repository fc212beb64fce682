"""Closed-form references the report compares runs with.

``closed_form_mse``: ``E_h[MSE]`` of a :mod:`phy.power` policy over i.i.d. draws of the
run's fading model, with the run's group sizes and mixing weights, unit power limits and
``noise_var = 10**(-snr_db/10)`` relative to a unit-gain full-power user (the medium's
SNR convention; the MSE is invariant to a common scaling of gains and noise).
"""

from __future__ import annotations

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
    mixer = make_policy(mixing)
    rng = np.random.default_rng(seed)
    total, weight = 0.0, 0
    for k, count in sorted(group_sizes.items()):
        h = make_channel_model(fading).generate((draws, k), rng)
        w = np.stack([mixer.draw(k, rng) for _ in range(draws)])
        mse = np.asarray(function(h, w, 1.0, 10 ** (-snr_db / 10), rng=rng).mse)
        total += count * float(np.mean(mse))
        weight += count
    return total / weight if weight else math.nan


def subcarrier_snr_offset_db(sample_rate_hz: float = 1e6) -> float:
    """Per-subcarrier SNR minus ``channel.snr_db``, from the one SNR convention
    (:func:`phy.link_budget.subcarrier_noise_var`): the SNR is defined per sample over
    the whole band, the frame uses ``n_used`` of ``n_fft`` subcarriers (0.9 dB for 52 of
    64)."""
    from phy.link_budget import subcarrier_noise_var
    from phy.waveform import OfdmConfig

    return -10 * math.log10(subcarrier_noise_var(0.0, OfdmConfig(sample_rate_hz=sample_rate_hz)))

"""What a time base's closed loop does to one over-the-air slot, as a model to draw
slots from (the attackers' simulated slots: :func:`learning.privacy_report.observe_groups`).

:func:`phy.ota_model.ota_mixture` plans power control on the true gains and lets every
user transmit. On the air the receiver plans on its own gain estimates and hears only the
users it detected at acquisition (:mod:`radio.time_base`, :mod:`radio.ota_session`):

* ``stream`` / ``tdd``: each user's acquisition burst (full power) is found when the
  noise-free Schmidl-Cox metric ``(rho / (1 + rho))**2`` at its per-sample SNR ``rho``
  exceeds :data:`phy.ota.ACQUISITION_THRESHOLD` (no long-capture search behind it); a
  user not found is silent (``b = 0``) for the round. Power control uses the slot's probe
  estimate ``h + e``, ``e ~ CN(0, noise_var / n)`` with ``n`` = :data:`phy.ota.PROBE_REPS`
  times the used subcarriers shared among the group's K combs (one probe; the round's
  gain track averages several, so this is the pessimistic end).
* ``ideal`` (the cyclic loop): its pilots are :data:`phy.estimation.PILOT_REPS` long
  blocks per user, searched for over the whole capture, so its gain error is negligible
  and it hears users far below the payload's noise floor: the model is ``ota_mixture``'s
  (true gains, everyone heard).

All gains are complex ``(B, K)`` (B slots of K users); ``noise_var`` is the noise variance
per unit-power subcarrier symbol (:func:`phy.link_budget.subcarrier_noise_var`).
"""

from __future__ import annotations

import numpy as np

from phy.ota import ACQUISITION_THRESHOLD, PROBE_REPS
from phy.rng import RngLike, make_rng
from phy.waveform import OfdmConfig

__all__ = ["SLOT_TIME_BASES", "acquisition_heard", "gain_observations", "receiver_gains"]

#: the time bases modelled (radio.base.TIME_BASES)
SLOT_TIME_BASES = ("stream", "tdd", "ideal")


def _check(time_base: str) -> str:
    if time_base not in SLOT_TIME_BASES:
        raise ValueError(f"unknown time base {time_base!r}; allowed: {SLOT_TIME_BASES}")
    return time_base


def acquisition_heard(
    h: np.ndarray, noise_var: float, config: OfdmConfig | None = None, p_max: float = 1.0
) -> np.ndarray:
    """Whether each user's acquisition burst (at ``|b|^2 = p_max``) through gain ``h``
    (complex, any shape) is detected: bool, the shape of ``h``."""
    cfg = config or OfdmConfig()
    if not noise_var > 0:
        return np.ones(np.shape(h), bool)
    rho = np.abs(np.asarray(h)) ** 2 * p_max * cfg.used_bins.size / (cfg.n_fft * noise_var)
    return (rho / (1.0 + rho)) ** 2 > ACQUISITION_THRESHOLD


def gain_observations(time_base: str, group_size: int, config: OfdmConfig | None = None) -> float:
    """Subcarrier observations behind the receiver's gain estimate of one user in a group
    of ``group_size`` (``inf`` for the ideal time base: exact)."""
    if _check(time_base) == "ideal":
        return float("inf")
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    cfg = config or OfdmConfig()
    return PROBE_REPS * cfg.used_bins.size / group_size


def receiver_gains(
    h: np.ndarray,
    noise_var: float,
    time_base: str,
    config: OfdmConfig | None = None,
    p_max: float = 1.0,
    rng: RngLike = None,
) -> np.ndarray:
    """The gains the receiver plans a slot on, complex ``(B, K)`` like ``h`` (true gains
    ``(B, K)``): its estimates of the users it heard, 0 for the silent ones."""
    gains = np.asarray(h, complex)
    if gains.ndim != 2:
        raise ValueError(f"h must be (B, K), got shape {gains.shape}")
    n_obs = gain_observations(time_base, gains.shape[1], config)
    if not np.isfinite(n_obs):
        return gains.copy()
    gen = make_rng(rng)
    std = np.sqrt(max(noise_var, 0.0) / n_obs / 2)
    error = std * (gen.standard_normal(gains.shape) + 1j * gen.standard_normal(gains.shape))
    heard = acquisition_heard(gains, noise_var, config, p_max)
    return np.where(heard, gains + error, 0j)

"""The link budget convention: what ``snr_db`` means everywhere in airmix.

``snr_db`` (``channel.snr_db``, ``attacks.eavesdropper_snr_db``, the ``snr_db`` of the
channel models and attacker models) is the **per-user receive SNR of a unit-gain link
at full power, per sample over the full band**: a user sending at full power (RMS
:attr:`phy.waveform.OfdmConfig.amplitude`, ``|b_k| = 1``) through a channel of gain 1
arrives ``snr_db`` above the receiver noise, both measured per complex baseband sample.

The OFDM frame puts the signal on ``n_used`` of ``n_fft`` subcarriers while the noise
fills all of them, so per unit-power subcarrier symbol (= per complex payload symbol,
the unit of :mod:`phy.power` and :mod:`phy.ota_model`) the noise variance is
:func:`subcarrier_noise_var` ``= 10**(-snr_db/10) n_used / n_fft``. Every model of a
slot (the in-process channel of :mod:`learning.channels`, the attackers' models of
:mod:`learning.privacy_report`, the eavesdropper statistics of :mod:`phy.eavesdropper`)
uses that variance, and the simulated media of a run realise the same SNR with
:func:`noise_dbfs_for` (every link at :data:`PATH_LOSS_DB`; distance-based path loss is
:func:`phy.channel.log_distance_path_loss_db`).
"""

from __future__ import annotations

import math

from phy.waveform import OfdmConfig

__all__ = ["PATH_LOSS_DB", "noise_dbfs_for", "subcarrier_noise_var"]

#: path loss of every user -> receiver link in the simulated media of a run, dB
PATH_LOSS_DB = 10.0


def _finite(snr_db: float) -> float:
    if not math.isfinite(snr_db):
        raise ValueError(f"snr_db must be finite, got {snr_db}")
    return float(snr_db)


def subcarrier_noise_var(snr_db: float, config: OfdmConfig | None = None) -> float:
    """Noise variance on a unit-power subcarrier symbol of a unit-gain link whose
    per-sample SNR at full power is ``snr_db``: ``10**(-snr_db/10) n_used / n_fft``."""
    cfg = config or OfdmConfig()
    return 10.0 ** (-_finite(snr_db) / 10.0) * cfg.used_bins.size / cfg.n_fft


def noise_dbfs_for(
    snr_db: float, config: OfdmConfig | None = None, path_loss_db: float = PATH_LOSS_DB
) -> float:
    """The medium's receiver noise (dBFS at 0 dB RX gain, see :mod:`phy.medium`) that
    puts a full-power user behind ``path_loss_db`` of unit-gain channel at ``snr_db``."""
    cfg = config or OfdmConfig()
    return 10.0 * math.log10(cfg.amplitude**2) - float(path_loss_db) - _finite(snr_db)

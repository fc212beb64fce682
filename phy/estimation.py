"""Per-user link estimation from a cyclic pilot capture.

Users are separated **by time** (one acquisition capture per user, see
:mod:`radio.ota_session`) and identified **by ZC root** (:func:`user_root`). Time
slots inside one shared cyclic buffer do not work here: radio start latencies
(up to ~2 ms = 2000 samples at 1 MS/s) scramble any slot layout shorter than that, and
code separation by root leaves -17 dB cross-talk per interferer on a 52-bin ZC, too
much for gain estimates at 30 dB SNR. A per-user capture is interference-free and,
being a continuous cyclic pilot, gives a long observation for a near-CRB CFO.

Model of user ``k``'s contribution to a capture (capture index ``i``, receiver
samples; buffer index ``m``, the user's samples)::

    r[i] = gain * exp(j 2 pi cfo_hz i / fs) * s_k(m),   i = delay + m (1 + sro)

so ``delay`` is where the user's buffer index 0 lands (fractional), ``sro`` the
sample-rate offset (receiver samples per user sample minus one), ``gain`` the complex
gain on unit-power symbols referenced to capture index 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phy.sync import delay_from_response, detect_frames
from phy.waveform import Block, OfdmConfig

__all__ = ["LinkEstimate", "estimate_user_link", "pilot_blocks", "user_root"]

#: long-block repetitions in a user pilot (a cyclic pilot period is short + CP + this)
PILOT_REPS = 60


@dataclass(frozen=True)
class LinkEstimate:
    """Plain per-user link estimate (msgpack-friendly: floats and one complex).

    Attributes:
        user: user index.
        delay_samples: capture index where the user's buffer index 0 arrives.
        cfo_hz: carrier frequency offset, Hz.
        sro: sample-rate offset (receiver samples per user sample - 1).
        gain: complex gain on unit-power symbols at capture index 0.
        snr_db: per-subcarrier SNR of a unit-power symbol sent with unit scaling, dB.
        capture_clock: receiver-sample clock of the capture start (0 if unknown).
    """

    user: int
    delay_samples: float
    cfo_hz: float
    sro: float
    gain: complex
    snr_db: float
    capture_clock: int = 0

    @property
    def noise_var(self) -> float:
        """Noise variance per subcarrier symbol implied by ``gain`` and ``snr_db``."""
        return float(abs(self.gain) ** 2 / 10 ** (self.snr_db / 10))


def user_root(user_index: int, config: OfdmConfig) -> int:
    """ZC root of user ``user_index``'s pilot: the ``user_index``-th root other than the
    frame root ``config.zc_root`` (so pilots never trigger the payload detector)."""
    roots = [r for r in range(1, 2 * config.n_used_half + 1) if r != config.zc_root]
    if isinstance(user_index, bool) or not 0 <= int(user_index) < len(roots):
        raise ValueError(f"user_index must be in [0, {len(roots)}), got {user_index}")
    return roots[int(user_index)]


def pilot_blocks(user_index: int, config: OfdmConfig, reps: int = PILOT_REPS) -> list[Block]:
    """Blocks of user ``user_index``'s cyclic pilot: short preamble, then ``reps`` long
    ZC blocks with the user's root."""
    if reps < 2:
        raise ValueError(f"reps must be >= 2, got {reps}")
    root = user_root(user_index, config)
    return [
        Block(config.short_bins, config.short_sequence(), 0, config.n_short_blocks),
        Block(config.used_bins, config.long_sequence(root), config.long_cp, reps),
    ]


def estimate_user_link(
    capture: np.ndarray,
    user_index: int,
    config: OfdmConfig,
    *,
    reps: int = PILOT_REPS,
    capture_clock: int = 0,
) -> LinkEstimate:
    """Estimate user ``user_index``'s link from a capture of its cyclic pilot
    (complex ``(n,)``; must contain the pilot's first period in full).

    Steps: detect every period (:func:`phy.sync.detect_frames`); the earliest one is
    buffer index 0. For every long block, the per-subcarrier response gives a
    fractional arrival time and a complex gain; a least-squares line through the
    arrival times gives ``delay`` and ``sro``; one through the unwrapped gain phases
    refines the CFO to near its Cramer-Rao bound; the scatter of the gains gives SNR.
    Raises ValueError when no pilot is found.
    """
    x = np.asarray(capture)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise ValueError("capture must be a finite 1-D complex array")
    root = user_root(user_index, config)
    dets = detect_frames(x, config, root=root, n_long=reps)
    if not dets:
        raise ValueError(f"no pilot of user {user_index} (ZC root {root}) in the capture")
    n = config.n_fft
    period = config.preamble_len - config.n_long * n + reps * n
    fs = config.sample_rate_hz
    nu0 = float(np.median([d.cfo_hz for d in dets])) / fs
    first = dets[0].start
    # buffer indices of every long block of every period that fits in the capture
    n_periods = int((x.size - first) // period) + 1
    m = (np.arange(n_periods)[:, None] * period + config.long_start + n * np.arange(reps)).ravel()
    approx = first + m
    ok = (approx >= 1) & (approx + n + 1 < x.size)
    m, approx = m[ok], approx[ok]
    if m.size < 2:
        raise ValueError("capture too short: fewer than two pilot blocks")
    windows = np.rint(approx).astype(int)
    idx = windows[:, None] + np.arange(n)
    corrected = x[idx] * np.exp(-2j * np.pi * nu0 * idx)
    spectrum = np.fft.fft(corrected, axis=1, norm="ortho") / config.scale
    resp = spectrum[:, config.used_bins % n] / config.long_sequence(root)
    tau, gains = delay_from_response(resp, config)
    arrival = windows + tau
    slope, intercept = np.polyfit(m, arrival, 1)
    # CFO refinement: phase of the per-block gains against arrival time
    phase = np.unwrap(np.angle(gains))
    dnu, _ = np.polyfit(arrival, phase, 1)
    dnu /= 2 * np.pi
    nu = nu0 + dnu
    aligned = gains * np.exp(-2j * np.pi * dnu * arrival)
    gain = complex(np.mean(aligned))
    # each block gain averages n_used subcarriers: var(block gain) = noise_var / n_used
    resid = np.var(aligned - gain) * resp.shape[1] if aligned.size > 2 else 0.0
    snr = abs(gain) ** 2 / max(float(resid), 1e-30)
    return LinkEstimate(
        user=int(user_index),
        delay_samples=float(intercept),
        cfo_hz=float(nu * fs),
        sro=float(slope - 1.0),
        gain=gain,
        snr_db=float(10 * np.log10(snr)),
        capture_clock=int(capture_clock),
    )

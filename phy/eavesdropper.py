r"""A passive eavesdropper on an over-the-air mixup slot: its receiver and its statistics.

Physics. Every user pre-compensates its frame for the *legitimate* receiver: the frame is
placed and fractionally delayed to land at the receiver's ``target_delay``, derotated by
the user's CFO towards the receiver, and multiplied by ``b_k`` from the power policy,
which also inverts the phase of the legitimate channel ``h_k``
(:func:`phy.ota.precompensated_payload`). An eavesdropper E elsewhere on the same air
hears user k through its own channel ``h^E_k`` (independent fading). With equal
propagation delays (the simulated medium without positions) each user's CFO
pre-rotation cancels its own oscillator, so every frame reaches E at the same time, with
the same CFO (receiver LO minus E's LO) and sample-rate offset. Per subcarrier symbol E
receives::

    y = sum_k g_k X_k + n,      g_k = h^E_k b_k  (times a phase common to all users)

where ``X_k = (x_k[2i] + j x_k[2i+1]) / sqrt 2`` are user k's symbols
(:func:`phy.waveform.payload_to_symbols`). E knows neither ``b_k`` (sent encrypted over
the digital link) nor the plan; every user sends the *same* preamble and comb pilots, so
all E can estimate is the composite gain ``G = sum_k g_k``. Equalising by it gives::

    X_hat = sum_k c_k X_k + n / G,        c_k = g_k / G,   sum_k c_k = 1

complex per-user coefficients instead of the real weights ``w_k`` the legitimate
receiver gets: each user's pair of reals is rotated and scaled differently, and where
the users' contributions cancel (``|G|`` small next to the ``|g_k|``) noise and
misalignment are amplified. With a single user (``K = 1``) ``c_1 = 1``: E demodulates
the payload as well as its SNR allows. Without fading (``awgn`` channel model) the
users' LO phases cancel in ``g_k`` as well, so E sees the users aligned, like the
receiver does (real LOS channels would still differ in propagation phase).

Receiver: :func:`eavesdrop_frame` is the best passive receiver we give E: frame
detection with CFO and composite-gain estimation from the known preamble
(:func:`phy.sync.detect_frame_arrays`), CFO removal, equalisation by the composite gain
and comb-pilot phase tracking, then the payload reals
(:func:`phy.waveform.demodulate_frames`). The mixed one-hot label tail gives no further
scale information: after composite-gain equalisation ``sum_k c_k = 1`` already, so the
tail's entries sum to the total weight 1 in expectation. E does not correct the
residual sample-rate offset (at most about 50 ppm, a phase ramp of under 0.3 rad at
the band edge at the end of a 2,000-sample frame).

Statistics (for training an attacker that knows the distribution, not the draws):
:func:`eavesdropper_gains` (``g_k`` from independent legitimate and eavesdropper
channels and the power policy), :func:`preamble_detected` (whether E would find the
frame) and :func:`eavesdropper_mixture` (what E demodulates, with the payload reals
packed into symbols exactly as the waveform packs them).

Noise convention (as :mod:`orchestrator.radios`): an SNR in dB is per sample, of a user
at full power (RMS ``OfdmConfig.amplitude``) through a unit-gain channel; a unit-power
subcarrier symbol then sees the noise :func:`subcarrier_noise_var`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from phy.link_budget import subcarrier_noise_var
from phy.medium import MediumPort
from phy.power import get_power_policy
from phy.rng import RngLike, spawn
from phy.sync import detect_frame_arrays
from phy.waveform import OfdmConfig, demodulate_frames, frame_length

__all__ = [
    "DETECTION_THRESHOLD",
    "EavesdroppedFrame",
    "eavesdrop_frame",
    "receiver_window",
    "eavesdropper_gains",
    "eavesdropper_mixture",
    "preamble_detected",
    "subcarrier_noise_var",
]

#: Schmidl-Cox threshold of :func:`phy.sync.detect_frames` (its default)
DETECTION_THRESHOLD = 0.4


@dataclass(frozen=True)
class EavesdroppedFrame:
    """What the eavesdropper demodulated from one capture.

    Attributes:
        payload: the slot's reals as E estimates them, float ``(n_reals,)``.
        start: fractional frame start in the capture, samples.
        cfo_hz: CFO estimate, Hz.
        gain: composite gain ``G`` estimate (unit-power symbols, CFO phase referenced to
            capture index 0).
        correlation: normalised long-preamble correlation of the detection, [0, 1].
    """

    payload: np.ndarray
    start: float
    cfo_hz: float
    gain: complex
    correlation: float


def eavesdrop_frame(capture: np.ndarray, n_reals: int, config: OfdmConfig) -> EavesdroppedFrame:
    """Demodulate the mixed frame in an eavesdropper's capture (complex ``(n,)``)
    carrying ``n_reals`` reals, knowing only the public frame format.

    The detection with the strongest preamble correlation among those whose whole frame
    fits in the capture is used. Raises ValueError if there is none (E missed the
    slot)."""
    x = np.asarray(capture)
    if x.ndim != 1:
        raise ValueError(f"capture must be 1-D, got shape {x.shape}")
    detections = detect_frame_arrays(x, config)
    length = frame_length(n_reals, config)
    whole = np.rint(detections.start)
    fits = np.flatnonzero((whole >= 0) & (whole + length <= x.size))
    if fits.size == 0:
        raise ValueError("the eavesdropper found no whole frame in its capture")
    i = int(fits[np.argmax(detections.correlation[fits])])
    payload = demodulate_frames(
        x,
        detections.start[i : i + 1],
        n_reals,
        config,
        cfo_hz=detections.cfo_hz[i : i + 1],
        gains=detections.gain[i : i + 1],
    )[0]
    return EavesdroppedFrame(
        payload=payload,
        start=float(detections.start[i]),
        cfo_hz=float(detections.cfo_hz[i]),
        gain=complex(detections.gain[i]),
        correlation=float(detections.correlation[i]),
    )


def receiver_window(receiver: MediumPort, n_samples: int, block: int) -> float | None:
    """Medium time (seconds) where an eavesdropper's window of ``n_samples`` covering the
    air of ``receiver``'s last slot starts; None if the receiver read nothing yet.

    The receiver's last read decides: its RX stream (a slot window is the start of the
    last read, which spanned whole buffers of ``block`` samples covering ``n_samples``:
    the OTA receivers read so) or, if later, its last capture armed on the TDD engine (a
    tdd slot's frame and margins are that capture's last ``n_samples``: it starts on the
    sync pulse, the frame lies behind every user's start)."""
    n = int(n_samples)
    fs = receiver.actual_sample_rate_hz
    stream = None
    end = receiver.stream_position
    total = -(-n // block) * block
    if end is not None and end >= total:
        stream = (receiver.stream_time_s(end - total), receiver.stream_time_s(end))
    tdd = receiver.tdd_capture
    if tdd is not None and tdd[1] >= n:
        first, length = tdd
        last = first + length / fs
        if stream is None or last > stream[1]:
            return first + (length - n) / fs
    return None if stream is None else stream[0]


def eavesdropper_gains(
    h_legit: np.ndarray,
    h_eve: np.ndarray,
    weights: np.ndarray,
    legit_noise_var: float,
    policy: str = "mmse",
    p_max: float = 1.0,
    rng: RngLike = None,
) -> np.ndarray:
    """Users' effective gains at the eavesdropper, ``g_k = h^E_k b_k``, complex ``(B, K)``.

    Args:
        h_legit: legitimate channels ``(B, K)`` (unit-gain convention), complex.
        h_eve: the eavesdropper's channels ``(B, K)``, complex, independent of them.
        weights: mixing weights ``(B, K)``, >= 0.
        legit_noise_var: the legitimate receiver's subcarrier noise variance
            (:func:`subcarrier_noise_var`), which the power policy uses.
        policy: name in :data:`phy.power.POWER_POLICIES`.
        p_max: per-user power limit on ``|b_k|^2``.
        rng: for randomised policies (AirMixML's Dirichlet draw).
    """
    h = np.asarray(h_legit, complex)
    he = np.asarray(h_eve, complex)
    w = np.asarray(weights, float)
    if h.ndim != 2 or he.shape != h.shape or w.shape != h.shape:
        raise ValueError("h_legit, h_eve and weights must share one (B, K) shape")
    chosen = get_power_policy(policy)
    b = np.asarray(chosen(h, w, p_max, float(legit_noise_var), rng=rng).tx_scaling)
    return he * b


def preamble_detected(
    composite: np.ndarray,
    eve_noise_var: float,
    config: OfdmConfig | None = None,
    threshold: float = DETECTION_THRESHOLD,
) -> np.ndarray:
    """Whether the eavesdropper finds frames whose preamble arrives with composite gains
    ``composite`` (complex ``(B,)``), bool ``(B,)``: the noise-free Schmidl-Cox metric
    ``(rho / (1 + rho))**2`` at the per-sample preamble SNR ``rho`` exceeds
    ``threshold`` (the detector's, :func:`phy.sync.detect_frames`)."""
    cfg = config or OfdmConfig()
    rho = np.abs(np.asarray(composite)) ** 2 * cfg.used_bins.size / (cfg.n_fft * eve_noise_var)
    return (rho / (1.0 + rho)) ** 2 > threshold


def eavesdropper_mixture(
    sent: np.ndarray,
    gains: np.ndarray,
    eve_noise_var: float,
    config: OfdmConfig | None = None,
    rng: RngLike = None,
) -> np.ndarray:
    """What the eavesdropper demodulates when groups send ``sent`` with effective gains
    ``gains``: float ``(B, D)``.

    Args:
        sent: reals ``(K, B, D)``, D even, as each user's frame carries them (pairs
            ``x[2i], x[2i+1]`` form the symbol ``(x[2i] + j x[2i+1]) / sqrt 2``, as
            :func:`phy.waveform.payload_to_symbols` packs them).
        gains: ``g_k`` ``(B, K)`` (:func:`eavesdropper_gains`).
        eve_noise_var: E's subcarrier noise variance (:func:`subcarrier_noise_var`).
        config: frame configuration (preamble size sets the gain estimate's noise).
        rng: noise draws.

    E equalises by its estimate of ``G = sum_k g_k`` from the long preamble (noise
    variance ``eve_noise_var / (n_long n_used)``: ``n_long`` blocks averaged over the
    used bins) and unpacks the symbols back into reals."""
    x = np.asarray(sent, float)
    g = np.asarray(gains, complex)
    if x.ndim != 3 or x.shape[2] % 2 or g.shape != (x.shape[1], x.shape[0]):
        raise ValueError("sent must be (K, B, D) with D even and gains (B, K)")
    cfg = config or OfdmConfig()
    k, b, d = x.shape
    g_sym, g_est = spawn(rng, 2)
    symbols = (x[..., 0::2] + 1j * x[..., 1::2]) / math.sqrt(2.0)  # (K, B, D/2)
    y = np.einsum("bk,kbs->bs", g, symbols)
    y += math.sqrt(eve_noise_var / 2.0) * (
        g_sym.standard_normal((b, d // 2)) + 1j * g_sym.standard_normal((b, d // 2))
    )
    est_var = eve_noise_var / (cfg.n_long * cfg.used_bins.size)
    composite = g.sum(axis=1) + math.sqrt(est_var / 2.0) * (
        g_est.standard_normal(b) + 1j * g_est.standard_normal(b)
    )
    symbols_hat = y / composite[:, None]
    out = np.empty((b, d))
    out[:, 0::2] = symbols_hat.real * math.sqrt(2.0)
    out[:, 1::2] = symbols_hat.imag * math.sqrt(2.0)
    return out

"""Closed-loop over-the-air mixup over :class:`radio.base.Radio` objects.

:class:`OtaSession` drives one receiver and K user radios through

1. **acquire**: user by user, the user plays its cyclic pilot
   (:func:`phy.ota.pilot_buffer`) and the receiver captures it; the receiver estimates
   delay, CFO, sample-rate offset, gain and SNR (:func:`phy.ota.estimate_links`);
2. **mixup**: gains are predicted at the payload capture's clock, the power policy
   (:mod:`phy.power`) gives ``b_k`` and ``a``, every user plays its pre-compensated
   frame (:func:`phy.ota.precompensated_payload`) and the receiver estimates the mixup
   (:func:`phy.ota.estimate_mixup`). Re-acquisition happens every
   ``recalibrate_every`` mixups (drift, fading changes).

Time bookkeeping: the session counts receiver samples (its clock) and reads in whole
receive buffers, so with the simulated medium's deterministic clock a batch of
transmit calls starts exactly at the next capture's first sample. Phases are predicted
from that clock; on radios whose buffer start jitters (stock Plutos over USB) the
alignment cannot hold, as documented in :mod:`phy.medium`.

A genie mode uses a ``truth(user_index, clock) -> LinkEstimate`` callable (perfect
timing, CFO and CSI) instead of estimates, for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from phy.estimation import LinkEstimate
from phy.ota import (
    corrections_for,
    estimate_links,
    estimate_mixup,
    pilot_buffer,
    precompensated_payload,
    predict_gains,
)
from phy.power import get_power_policy, mse_of
from phy.waveform import OfdmConfig, frame_length

__all__ = ["MixupResult", "OtaSession"]

Truth = Callable[[int, int], LinkEstimate]


@dataclass(frozen=True)
class MixupResult:
    """Outcome of one OTA mixup.

    Attributes:
        estimate: receiver estimate of ``sum_k w_k x_k``, float ``(n_reals,)``.
        target: the true ``sum_k w_k x_k``, float ``(n_reals,)``.
        mse_vs_target: mean squared error per real value.
        closed_form_mse: phy.power's optimum MSE for the *true* channel (if a truth
            callable was given) else for the estimated one, per real value.
        predicted_mse: MSE the policy predicts for the gains it used.
        tx_scaling: ``b_k`` used, complex ``(K,)``; rx_scaling: ``a``.
    """

    estimate: np.ndarray
    target: np.ndarray
    mse_vs_target: float
    closed_form_mse: float
    predicted_mse: float
    tx_scaling: np.ndarray
    rx_scaling: complex


class OtaSession:
    """Closed-loop OTA mixup between ``users`` (K Radios) and ``receiver`` (a Radio).

    Args:
        receiver, users: radios (only transmit/stop_transmit/receive are used).
        config: the OFDM frame configuration.
        p_max: per-user power limit on ``|b_k|^2`` (1 = RMS ``config.amplitude``).
        noise_var: receiver noise per subcarrier symbol; None: estimated at acquisition.
        policy: power-control policy name (:func:`phy.power.get_power_policy`).
        truth: genie callable ``truth(k, clock) -> LinkEstimate``.
        rx_block: receive granularity, samples (default: the receiver's buffer size).
        acquire_len: samples captured per user at acquisition.
        recalibrate_every: re-acquire after this many mixups (0: never).
        lock_sro_to_cfo: derive the sample-rate offset from the CFO and the receiver's
            ``config.center_hz`` (one oscillator per radio) instead of fitting it.
    """

    def __init__(
        self,
        receiver: object,
        users: Sequence[object],
        config: OfdmConfig | None = None,
        p_max: float = 1.0,
        *,
        noise_var: float | None = None,
        policy: str = "mmse",
        truth: Truth | None = None,
        rx_block: int | None = None,
        acquire_len: int = 16384,
        recalibrate_every: int = 0,
        lock_sro_to_cfo: bool = True,
    ) -> None:
        if not users:
            raise ValueError("need at least one user radio")
        if not (math.isfinite(p_max) and p_max > 0):
            raise ValueError(f"p_max must be positive, got {p_max}")
        if noise_var is not None and not (math.isfinite(noise_var) and noise_var >= 0):
            raise ValueError(f"noise_var must be >= 0, got {noise_var}")
        self.receiver = receiver
        self.users = list(users)
        self.config = config or OfdmConfig()
        self.p_max = float(p_max)
        self.noise_var = noise_var
        self.policy = get_power_policy(policy)
        self.truth = truth
        if rx_block is None:
            cfg = getattr(receiver, "config", None)
            rx_block = getattr(cfg, "rx_buffer_size", None) or getattr(
                receiver, "rx_buffer_size", 4096
            )
        self.rx_block = int(rx_block)
        self.acquire_len = int(acquire_len)
        self.recalibrate_every = int(recalibrate_every)
        self.lock_sro_to_cfo = bool(lock_sro_to_cfo)
        self.clock = 0
        self.estimates: list[LinkEstimate] | None = None
        self._since_acquire = 0

    @property
    def n_users(self) -> int:
        return len(self.users)

    def _capture(self, n: int) -> tuple[np.ndarray, int]:
        """Receive whole buffers covering ``n`` samples; returns (samples[:n], start clock)."""
        total = -(-int(n) // self.rx_block) * self.rx_block
        start = self.clock
        samples = np.asarray(self.receiver.receive(total))
        self.clock += total
        return samples[:n], start

    def acquire(self) -> list[LinkEstimate]:
        """Run the pilot round (one capture per user) and store the link estimates."""
        captures, clocks = [], []
        for k, user in enumerate(self.users):
            user.transmit(pilot_buffer(k, self.n_users, self.config), cyclic=True)
            samples, start = self._capture(self.acquire_len)
            user.stop_transmit()
            captures.append(samples)
            clocks.append(start)
        cfg = getattr(self.receiver, "config", None)
        carrier = getattr(cfg, "center_hz", None) if self.lock_sro_to_cfo else None
        self.estimates = estimate_links(captures, self.n_users, self.config, clocks, carrier)
        self._since_acquire = 0
        return self.estimates

    def _noise_var(self, estimates: Sequence[LinkEstimate]) -> float:
        if self.noise_var is not None:
            return self.noise_var
        return float(np.nanmedian([e.noise_var for e in estimates]))

    def mixup(self, payloads: np.ndarray, weights: np.ndarray, genie: bool = False) -> MixupResult:
        """Send ``payloads`` (real ``(K, n_reals)``, unit power) with mixup ``weights``
        (``(K,)``, >= 0) over the air; ``genie=True`` uses the truth callable."""
        x = np.asarray(payloads, float)
        w = np.asarray(weights, float)
        if x.ndim != 2 or x.shape[0] != self.n_users:
            raise ValueError(f"payloads must have shape ({self.n_users}, n_reals), got {x.shape}")
        if w.shape != (self.n_users,) or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"weights must be finite, >= 0, shape ({self.n_users},)")
        if not np.all(np.isfinite(x)):
            raise ValueError("payloads contain NaN or inf")
        if genie and self.truth is None:
            raise ValueError("genie mode needs a truth callable")
        if not genie and (
            self.estimates is None
            or (self.recalibrate_every and self._since_acquire >= self.recalibrate_every)
        ):
            self.acquire()
        n_reals = x.shape[1]
        clock = self.clock
        if genie:
            links = [self.truth(k, clock) for k in range(self.n_users)]
        else:
            links = list(self.estimates)
        gains = predict_gains(links, clock, self.config)
        noise = self._noise_var(links)
        scaling = self.policy(gains, w, self.p_max, noise)
        b = np.where(gains == 0, 0j, np.asarray(scaling.tx_scaling))  # undetected: silent
        a = complex(np.asarray(scaling.rx_scaling))
        corrections = corrections_for(links)
        target = corrections[0].target_delay
        length = target + frame_length(n_reals, self.config) + self.config.n_fft
        for k, user in enumerate(self.users):
            buf = precompensated_payload(x[k], corrections[k], b[k], self.config, length)
            user.transmit(buf, cyclic=True)
        samples, _ = self._capture(length)
        for user in self.users:
            user.stop_transmit()
        self._since_acquire += 1
        estimate = estimate_mixup(samples, a, n_reals, self.config, frame_start=target)
        truth_mse = float(np.asarray(scaling.mse))
        if self.truth is not None:
            true_links = [self.truth(k, clock) for k in range(self.n_users)]
            tg = predict_gains(true_links, clock, self.config)
            tn = self.noise_var if self.noise_var is not None else self._noise_var(true_links)
            truth_mse = float(np.asarray(get_power_policy("mmse")(tg, w, self.p_max, tn).mse))
        wanted = w @ x
        return MixupResult(
            estimate=estimate,
            target=wanted,
            mse_vs_target=float(np.mean((estimate - wanted) ** 2)),
            closed_form_mse=truth_mse,
            predicted_mse=float(np.asarray(mse_of(gains, w, b, a, noise))),
            tx_scaling=b,
            rx_scaling=a,
        )

"""Closed-loop over-the-air mixup over :class:`radio.base.Radio` objects.

The receiver half, :class:`OtaReceiver` (capture, acquisition, planning, mixup
estimation), only *asks* users to act through callables or messages, so the
orchestrator drives users in other processes with it; the user half is
:class:`radio.ota_transmitter.OtaTransmitter`, which plays what a :class:`SlotPlan`
orders (:meth:`SlotPlan.order`). :class:`OtaSession` wires both to local radios. Together they run

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
    UserCorrection,
    corrections_for,
    estimate_links,
    estimate_mixup,
    predict_gains,
)
from phy.power import get_power_policy, mse_of
from phy.rng import RngLike
from phy.waveform import OfdmConfig, frame_length
from radio.ota_transmitter import OtaTransmitter, SlotOrder

__all__ = ["MixupResult", "OtaReceiver", "OtaSession", "SlotPlan", "medium_truth"]

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

    @classmethod
    def scored(
        cls,
        estimate: np.ndarray,
        payloads: np.ndarray,
        weights: np.ndarray,
        plan: SlotPlan,
        closed_form_mse: float,
    ) -> MixupResult:
        """The result of ``plan``'s slot: ``estimate`` against ``weights @ payloads``."""
        wanted = weights @ payloads
        return cls(
            estimate=estimate,
            target=wanted,
            mse_vs_target=float(np.mean((estimate - wanted) ** 2)),
            closed_form_mse=closed_form_mse,
            predicted_mse=plan.predicted_mse,
            tx_scaling=plan.tx_scaling,
            rx_scaling=plan.rx_scaling,
        )


@dataclass(frozen=True)
class SlotPlan:
    """Everything one OTA slot needs, decided by the receiver before users transmit.

    Attributes:
        corrections: per user, what to pre-compensate (sent to user k).
        tx_scaling: ``b_k``, complex ``(K,)`` (0 for users without a link estimate).
        rx_scaling: ``a``.
        effective_weights: ``Re(a h_k b_k)``, the weights the payloads arrive with, ``(K,)``.
        predicted_mse: the policy's MSE for the predicted gains, per complex symbol.
        target_delay: receiver index where every frame starts.
        buffer_len: length of every user's cyclic buffer and of the capture, samples.
        clock: receiver clock at which the capture will start.
    """

    corrections: list[UserCorrection]
    tx_scaling: np.ndarray
    rx_scaling: complex
    effective_weights: np.ndarray
    predicted_mse: float
    target_delay: int
    buffer_len: int
    clock: int

    def order(self, k: int) -> SlotOrder:
        """What user ``k`` must do in this slot (for its :class:`OtaTransmitter`)."""
        return SlotOrder.from_correction(
            self.corrections[k], complex(self.tx_scaling[k]), self.buffer_len
        )


class OtaReceiver:
    """The receiver half of the closed loop on one ``receiver`` Radio.

    Args:
        receiver: the receiving radio (only ``receive`` is used).
        config: the OFDM frame configuration.
        p_max: per-user power limit on ``|b_k|^2`` (1 = RMS ``config.amplitude``).
        noise_var: receiver noise per subcarrier symbol; None: estimated at acquisition.
        policy: power-control policy name (:func:`phy.power.get_power_policy`).
        rx_block: receive granularity, samples (default: the receiver's buffer size).
        acquire_len: samples captured per user at acquisition.
        carrier_hz: ties each user's sample-rate offset to its CFO (one oscillator per
            radio); None fits it separately.

    Time bookkeeping: :attr:`clock` counts receiver samples; reads are whole buffers, so
    transmit calls issued between two captures start at the next capture's first sample.
    """

    def __init__(
        self,
        receiver: object,
        config: OfdmConfig | None = None,
        p_max: float = 1.0,
        *,
        noise_var: float | None = None,
        policy: str = "mmse",
        rx_block: int | None = None,
        acquire_len: int = 16384,
        carrier_hz: float | None = None,
    ) -> None:
        if not (math.isfinite(p_max) and p_max > 0):
            raise ValueError(f"p_max must be positive, got {p_max}")
        if noise_var is not None and not (math.isfinite(noise_var) and noise_var >= 0):
            raise ValueError(f"noise_var must be >= 0, got {noise_var}")
        self.receiver = receiver
        self.config = config or OfdmConfig()
        self.p_max = float(p_max)
        self.noise_var = noise_var
        self.policy = get_power_policy(policy)
        if rx_block is None:
            cfg = getattr(receiver, "config", None)
            rx_block = getattr(cfg, "rx_buffer_size", None) or getattr(
                receiver, "rx_buffer_size", 4096
            )
        self.rx_block = int(rx_block)
        self.acquire_len = int(acquire_len)
        self.carrier_hz = carrier_hz
        self.clock = 0

    def capture(self, n: int) -> tuple[np.ndarray, int]:
        """Receive whole buffers covering ``n`` samples; returns (samples[:n], start clock)."""
        total = -(-int(n) // self.rx_block) * self.rx_block
        start = self.clock
        samples = np.asarray(self.receiver.receive(total))
        self.clock += total
        return samples[:n], start

    def acquire(
        self,
        n_users: int,
        start_pilot: Callable[[int], None],
        stop_pilot: Callable[[int], None],
    ) -> list[LinkEstimate]:
        """Pilot round: for each user k, ``start_pilot(k)`` (user k plays
        :func:`phy.ota.pilot_buffer` ``(k, n_users)`` cyclically), one capture,
        ``stop_pilot(k)``; returns the link estimates."""
        if n_users < 1:
            raise ValueError(f"need at least one user, got {n_users}")
        captures, clocks = [], []
        for k in range(n_users):
            start_pilot(k)
            try:
                samples, start = self.capture(self.acquire_len)
            finally:
                stop_pilot(k)
            captures.append(samples)
            clocks.append(start)
        return self.links_from(captures, clocks)

    def links_from(
        self, captures: Sequence[np.ndarray], clocks: Sequence[int]
    ) -> list[LinkEstimate]:
        """Link estimates from ``captures[k]`` of user k's pilot (complex ``(n,)``) that
        started at receiver clock ``clocks[k]`` (:func:`phy.ota.estimate_links`)."""
        return estimate_links(captures, len(captures), self.config, clocks, self.carrier_hz)

    def noise_var_of(self, estimates: Sequence[LinkEstimate]) -> float:
        """The configured noise variance, else the median of the estimates'."""
        if self.noise_var is not None:
            return self.noise_var
        return float(np.nanmedian([e.noise_var for e in estimates]))

    def plan(
        self,
        links: Sequence[LinkEstimate],
        weights: np.ndarray,
        n_reals: int,
        rng: RngLike = None,
        clock: int | None = None,
    ) -> SlotPlan:
        """Power control and corrections for a slot captured at the current clock.

        Args:
            links: per-user link estimates (or genie truth), K of them.
            weights: mixing weights ``(K,)``, >= 0.
            n_reals: payload length of every user, reals.
            rng: seed for randomised power policies (AirMixML's Dirichlet draw).
            clock: receiver clock the capture starts at (None: the current clock; a
                planned round's later window, :mod:`radio.planned_air`).
        """
        w = np.asarray(weights, float)
        if w.shape != (len(links),) or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"weights must be finite, >= 0, shape ({len(links)},)")
        clock = self.clock if clock is None else int(clock)
        gains = predict_gains(links, clock, self.config)
        noise = self.noise_var_of(links)
        scaling = self.policy(gains, w, self.p_max, noise, rng=rng)
        b = np.where(gains == 0, 0j, np.asarray(scaling.tx_scaling))  # undetected: silent
        a = complex(np.asarray(scaling.rx_scaling))
        corrections = corrections_for(links)
        target = corrections[0].target_delay
        return SlotPlan(
            corrections=corrections,
            tx_scaling=b,
            rx_scaling=a,
            effective_weights=np.real(a * gains * b),
            predicted_mse=float(np.asarray(mse_of(gains, w, b, a, noise))),
            target_delay=target,
            buffer_len=target + frame_length(n_reals, self.config) + self.config.n_fft,
            clock=clock,
        )

    def receive(self, plan: SlotPlan, n_reals: int) -> np.ndarray:
        """Capture the slot planned by ``plan`` (users must be transmitting) and return
        the estimate of ``sum_k w_k x_k``, float ``(n_reals,)``."""
        if self.clock != plan.clock:
            raise RuntimeError("the receiver clock moved since the slot was planned")
        samples, _ = self.capture(plan.buffer_len)
        return self.estimate(plan, samples, n_reals)

    def estimate(self, plan: SlotPlan, samples: np.ndarray, n_reals: int) -> np.ndarray:
        """The estimate of ``sum_k w_k x_k`` (float ``(n_reals,)``) from the capture of the
        slot planned by ``plan`` (complex ``(plan.buffer_len,)``); ValueError if no frame
        is found in it."""
        self.last_capture = samples  # the slot's window, for the live view's spectrum
        return estimate_mixup(
            samples, plan.rx_scaling, n_reals, self.config, frame_start=plan.target_delay
        )


class OtaSession:
    """Closed-loop OTA mixup between local ``users`` (K Radios) and ``receiver``.

    Args:
        receiver, users: radios (only transmit/stop_transmit/receive are used).
        config, p_max, noise_var, policy, rx_block, acquire_len: see :class:`OtaReceiver`.
        truth: genie callable ``truth(k, clock) -> LinkEstimate``.
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
        cfg = getattr(receiver, "config", None)
        carrier = getattr(cfg, "center_hz", None) if lock_sro_to_cfo else None
        self.rx = OtaReceiver(
            receiver,
            config,
            p_max,
            noise_var=noise_var,
            policy=policy,
            rx_block=rx_block,
            acquire_len=acquire_len,
            carrier_hz=carrier,
        )
        self.receiver = receiver
        self.users = list(users)
        self.config = self.rx.config
        self.transmitters = [OtaTransmitter(u, self.config, k) for k, u in enumerate(self.users)]
        self.p_max = self.rx.p_max
        self.noise_var = noise_var
        self.truth = truth
        self.recalibrate_every = int(recalibrate_every)
        self.estimates: list[LinkEstimate] | None = None
        self._since_acquire = 0

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def clock(self) -> int:
        """Receiver samples read so far."""
        return self.rx.clock

    def acquire(self) -> list[LinkEstimate]:
        """Run the pilot round (one capture per user) and store the link estimates."""
        k_users = self.n_users
        tx = self.transmitters
        self.estimates = self.rx.acquire(
            k_users, lambda k: tx[k].play_pilot(k, k_users), lambda k: tx[k].stop()
        )
        self._since_acquire = 0
        return self.estimates

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
        plan = self.rx.plan(links, w, n_reals)
        for k, transmitter in enumerate(self.transmitters):
            transmitter.play_payload(x[k], plan.order(k))
        try:
            estimate = self.rx.receive(plan, n_reals)
        finally:
            for transmitter in self.transmitters:
                transmitter.stop()
        self._since_acquire += 1
        truth_mse = plan.predicted_mse
        if self.truth is not None:
            true_links = [self.truth(k, clock) for k in range(self.n_users)]
            tg = predict_gains(true_links, clock, self.config)
            tn = self.noise_var if self.noise_var is not None else self.rx.noise_var_of(true_links)
            truth_mse = float(np.asarray(get_power_policy("mmse")(tg, w, self.p_max, tn).mse))
        return MixupResult.scored(estimate, x, w, plan, truth_mse)


def medium_truth(
    medium: object, user_names: Sequence[str], receiver_name: str, config: OfdmConfig
) -> Truth:
    """Genie link knowledge on a :class:`phy.medium.SharedMedium`: ``truth(k, clock)``
    gives user ``k``'s true delay, CFO, sample-rate offset and complex gain for a capture
    starting ``clock`` receiver samples after *now* (call this when the session starts)."""
    t0 = medium.now_s
    rx_port = medium.port(receiver_name)
    fs_rx = rx_port.actual_sample_rate_hz
    noise_sc = (
        medium.noise_power(receiver_name)
        * config.used_bins.size
        / (config.n_fft * config.amplitude**2)
    )

    def truth(k: int, clock: int) -> LinkEstimate:
        t = medium.link_truth(user_names[k], receiver_name)
        g = t.gain * np.exp(1j * t.phase_rad) * np.exp(2j * np.pi * t.cfo_hz * (t0 + clock / fs_rx))
        delay = (medium.port(user_names[k]).latency_s + t.delay_s) * fs_rx
        return LinkEstimate(
            user=k,
            delay_samples=delay,
            cfo_hz=t.cfo_hz * config.sample_rate_hz / fs_rx,
            sro=1.0 / (1.0 + t.sro_ppm * 1e-6) - 1.0,
            gain=complex(g),
            snr_db=10 * math.log10(abs(g) ** 2 / noise_sc),
            capture_clock=clock,
        )

    return truth

"""The user half of the closed loop: :class:`OtaTransmitter`, the peer of
:class:`radio.ota_session.OtaReceiver`.

The receiver decides everything (link estimates, power control, corrections) and tells
each user only what it must do for one slot, a :class:`SlotOrder`: where its frame must
land (:class:`phy.ota.UserCorrection`), its transmit scaling ``b_k`` and the cyclic
buffer length. An :class:`OtaTransmitter` turns orders into waveforms on one user
:class:`radio.base.Radio`:

* :meth:`OtaTransmitter.play_pilot`: the cyclic acquisition pilot
  (:func:`phy.ota.pilot_buffer`) of pilot ``pilot_id`` in a group of ``group_size``;
* :meth:`OtaTransmitter.play_payload`: the pre-compensated frame carrying a real
  payload vector (:func:`phy.ota.precompensated_payload`), played cyclically;
* :meth:`OtaTransmitter.stop`: silence.

The same class serves users next to the receiver (:class:`radio.ota_session.OtaSession`)
and users in node processes (``orchestrator/node.py``), so both run one copy of the user
side of the loop.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from phy.ota import (
    UserCorrection,
    acquisition_pair,
    pilot_buffer,
    precompensated_blocks,
    precompensated_payload,
    probe_blocks,
)
from phy.waveform import OfdmConfig
from radio.base import StreamTooLate

__all__ = [
    "KIND_ACQUISITION",
    "KIND_PAYLOAD",
    "KIND_PROBE",
    "MODE_CYCLIC",
    "MODE_SCHEDULED",
    "MODE_STREAM",
    "MODE_TDD",
    "OtaTransmitter",
    "SlotOrder",
]

log = logging.getLogger(__name__)

#: SlotOrder.mode: how a buffer goes on the air (ideal / stream / tdd time base; the
#: ideal loop's planned rounds on a simulated medium)
MODE_CYCLIC, MODE_STREAM, MODE_TDD, MODE_SCHEDULED = 0, 1, 2, 3
#: SlotOrder.kind: what a pilot order plays
KIND_PAYLOAD, KIND_PROBE, KIND_ACQUISITION = 0, 1, 2


@dataclass(frozen=True)
class SlotOrder:
    """What one user needs to play its part in one OTA slot (plain numbers).

    Attributes:
        delay_samples: where the user's buffer index 0 lands at the receiver, receiver
            samples (0 for a user without a link estimate, which is silent).
        sro: sample-rate offset, receiver samples per user sample - 1.
        cfo_hz: CFO to pre-rotate away, Hz.
        target_delay: receiver index where every frame of the slot starts, samples.
        tx_scaling: ``b_k`` (complex; 0 = silent).
        buffer_len: length of the cyclic transmit buffer, samples (0: just long enough).
        mode: how the buffer goes on the air: ``MODE_CYCLIC`` (the cyclic loop of the
            ``ideal`` time base), ``MODE_STREAM`` (placed once in the user's continuous
            TX stream at ``stream_index``), ``MODE_TDD`` (armed once on the TDD
            engine, started by the next sync pulse; see :mod:`radio.time_base`) or
            ``MODE_SCHEDULED`` (the cyclic loop's buffer played from ``push_s`` to
            ``end_s``: a planned round on a simulated medium, :mod:`radio.planned_air`).
        stream_index: ``MODE_STREAM``: the user's TX stream index of buffer index 0.
        kind: what :meth:`OtaTransmitter.play_pilot` plays: ``KIND_PROBE`` (the probe
            symbol, pre-compensated like a frame) or ``KIND_ACQUISITION`` (an
            acquisition pair, :func:`phy.ota.acquisition_pair`).
        push_s: ``MODE_SCHEDULED``: medium time the buffer counts as pushed, seconds.
        end_s: ``MODE_SCHEDULED``: medium time the cyclic buffer stops, seconds.
    """

    delay_samples: float
    sro: float
    cfo_hz: float
    target_delay: int
    tx_scaling: complex
    buffer_len: int
    mode: int = 0
    stream_index: int = 0
    kind: int = 0
    push_s: float = 0.0
    end_s: float = 0.0

    @classmethod
    def from_correction(
        cls, correction: UserCorrection, tx_scaling: complex, buffer_len: int
    ) -> SlotOrder:
        """The order for ``correction``; an undetected user (non-finite correction, which
        the receiver gives ``b_k = 0``) gets neutral corrections."""

        def finite(value: float) -> float:
            return float(value) if math.isfinite(value) else 0.0

        return cls(
            delay_samples=finite(correction.delay_samples),
            sro=finite(correction.sro),
            cfo_hz=finite(correction.cfo_hz),
            target_delay=int(correction.target_delay),
            tx_scaling=complex(tx_scaling),
            buffer_len=int(buffer_len),
        )

    def correction(self, user: int = 0) -> UserCorrection:
        """The :class:`phy.ota.UserCorrection` of this order (``user``: index, for errors)."""
        return UserCorrection(user, self.delay_samples, self.sro, self.cfo_hz, self.target_delay)


class OtaTransmitter:
    """One user's side of the closed loop on its ``radio``.

    Args:
        radio: the user's radio (only ``transmit`` and ``stop_transmit`` are used).
        config: the OFDM frame configuration (the receiver's).
        user: the user's index, used in error messages.
    """

    def __init__(self, radio: object, config: OfdmConfig | None = None, user: int = 0) -> None:
        self.radio = radio
        self.config = config or OfdmConfig()
        self.user = int(user)
        self.streaming = False  # this user's continuous TX stream runs (stream base)

    def play_pilot(self, pilot_id: int, group_size: int, order: SlotOrder | None = None) -> None:
        """Acquisition or probe. Without ``order`` (or ``MODE_CYCLIC``): pilot
        ``pilot_id`` of a group of ``group_size``, cyclically (the ``ideal`` loop).
        ``KIND_ACQUISITION``: the acquisition pair of ZC root index ``pilot_id``;
        ``KIND_PROBE``: the probe symbol of comb position ``pilot_id`` of
        ``group_size``, pre-compensated as ordered; both played once as ``order.mode``
        says."""
        if order is None or order.mode in (MODE_CYCLIC, MODE_SCHEDULED):
            samples = pilot_buffer(pilot_id, group_size, self.config)
            if order is None:
                self.radio.transmit(samples, cyclic=True)
            else:
                self._put(samples, order)
            return
        if order.kind == KIND_ACQUISITION:
            samples = acquisition_pair(pilot_id, self.config)
        elif order.kind == KIND_PROBE:
            blocks = probe_blocks(pilot_id, group_size, self.config)
            samples = precompensated_blocks(
                blocks, order.correction(self.user), order.tx_scaling, self.config
            )
        else:
            raise ValueError(f"order kind {order.kind} is not a pilot")
        self._put(samples, order)

    def payload_waveform(self, payload: np.ndarray, order: SlotOrder) -> np.ndarray:
        """The pre-compensated buffer for ``payload`` (real ``(n_reals,)``), complex64
        ``(order.buffer_len,)``; raises ValueError if it would clip."""
        return precompensated_payload(
            np.asarray(payload, dtype=float),
            order.correction(self.user),
            order.tx_scaling,
            self.config,
            order.buffer_len,
        )

    def play_payload(self, payload: np.ndarray, order: SlotOrder) -> None:
        """Play the frame carrying ``payload`` as ordered: cyclically until :meth:`stop`
        (``MODE_CYCLIC``), over its window (``MODE_SCHEDULED``) or once (stream, tdd); a
        silent order (``b_k = 0`` in a stream
        or tdd slot) puts nothing on the air."""
        if order.mode in (MODE_STREAM, MODE_TDD) and order.tx_scaling == 0:
            return
        self._put(self.payload_waveform(payload, order), order)

    def _put(self, samples: np.ndarray, order: SlotOrder) -> None:
        if order.mode == MODE_STREAM:
            if not self.streaming:
                self.radio.start_stream()
                self.streaming = True
            try:
                self.radio.place(samples, int(order.stream_index))
            except StreamTooLate as error:  # e.g. after a host stall: the receiver's probe
                log.warning("user %d: buffer dropped: %s", self.user, error)  # sees it
        elif order.mode == MODE_TDD:
            self.radio.arm_transmit(samples)
        elif order.mode == MODE_CYCLIC:
            self.radio.transmit(samples, cyclic=True)
        elif order.mode == MODE_SCHEDULED:
            self.radio.transmit_at(samples, order.push_s, order.end_s)
        else:
            raise ValueError(f"unknown order mode {order.mode}")

    def stop(self) -> None:
        """Stop a cyclic buffer. Streams keep running (the time base) and stream and tdd
        buffers play once anyway: nothing to stop then."""
        if not self.streaming:
            self.radio.stop_transmit()

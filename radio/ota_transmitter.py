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

import math
from dataclasses import dataclass

import numpy as np

from phy.ota import UserCorrection, pilot_buffer, precompensated_payload
from phy.waveform import OfdmConfig

__all__ = ["OtaTransmitter", "SlotOrder"]


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
        buffer_len: length of the cyclic transmit buffer, samples.
    """

    delay_samples: float
    sro: float
    cfo_hz: float
    target_delay: int
    tx_scaling: complex
    buffer_len: int

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

    def play_pilot(self, pilot_id: int, group_size: int) -> None:
        """Play pilot ``pilot_id`` of a group of ``group_size`` cyclically (acquisition)."""
        self.radio.transmit(pilot_buffer(pilot_id, group_size, self.config), cyclic=True)

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
        """Play the frame carrying ``payload`` as ordered, cyclically, until :meth:`stop`."""
        self.radio.transmit(self.payload_waveform(payload, order), cyclic=True)

    def stop(self) -> None:
        """Stop transmitting."""
        self.radio.stop_transmit()

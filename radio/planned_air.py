"""Planned rounds: windows of air laid out ahead on a simulated medium's clock.

The ``ideal`` time base's cyclic loop plays one group at a time: start a pilot, capture
it, stop it, next user; then each slot's frames, capture, stop. Each step waits on a
round trip to a node, which at population scale is most of the round. On a simulated
medium with its deterministic clock nothing forces that order: slots of different groups
never overlap on the air, so a round can lay out every window of receiver air ahead of
the clock, tell each node in one request when each of its users plays what
(:meth:`radio.base.Radio.transmit_at`: a buffer counted as pushed at the window's first
sample, so it starts one start latency later, exactly as a buffer pushed just before that
capture in the sequential loop), then render every window at once
(:meth:`phy.medium.SharedMedium.capture_many`, in parallel threads).

:class:`PlannedAir` keeps the layout: :meth:`PlannedAir.window` reserves the next window
(receiver clock, medium times), :meth:`PlannedAir.capture` renders reserved windows and
:meth:`PlannedAir.finish` moves the receiver's stream and clock past every window
reserved so far, captured or not (a failed wave leaves no scheduled buffer in the way of
the next). Real radios cannot do this: a pushed buffer has no start time (the ``stream``
and ``tdd`` time bases are the lab's answer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phy.medium import MediumPort
from radio.ota_session import OtaReceiver

__all__ = ["PlannedAir", "Window"]


@dataclass(frozen=True)
class Window:
    """One reserved window of receiver air.

    Attributes:
        clock: receiver clock (:attr:`OtaReceiver.clock`) of its first sample.
        n: samples captured, what the PHY gets.
        length: receiver samples it takes (``n`` rounded up to whole RX buffers).
        push_s: medium time of its first sample, seconds: users' buffers for the window
            count as pushed then.
        end_s: medium time it ends, seconds: cyclic buffers stop then.
    """

    clock: int
    n: int
    length: int
    push_s: float
    end_s: float


class PlannedAir:
    """Windows of ``receiver``'s air on its simulated medium port ``port``.

    Args:
        receiver: the round's cyclic-loop receiver; its clock counts the windows.
        port: the receiver radio's port on the medium (deterministic clock).
        listener: a passive port (an eavesdropper) that hears the same windows, or None.
    """

    def __init__(
        self, receiver: OtaReceiver, port: MediumPort, listener: MediumPort | None = None
    ) -> None:
        if port.medium.realtime:
            raise ValueError("planned rounds need the medium's deterministic clock")
        self.receiver = receiver
        self.port = port
        self.listener = listener
        self._cursor = receiver.clock  # receiver clock after the last reserved window
        self._origin: tuple[int, int] | None = None  # (receiver clock, RX stream index)

    def _stream_index(self, clock: int) -> int:
        if self._origin is None:
            if self.port.stream_position is None:  # start the RX stream (nothing rendered)
                self.port.discard(self.receiver.rx_block)
            self._origin = (self.receiver.clock, int(self.port.stream_position))
        clock0, index0 = self._origin
        return index0 + clock - clock0

    @property
    def clock(self) -> int:
        """Receiver clock of the next window :meth:`window` reserves."""
        return self._cursor

    def window(self, n: int) -> Window:
        """Reserve the next ``n`` samples of air (rounded up to whole RX buffers)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        block = self.receiver.rx_block
        length = -(-int(n) // block) * block
        clock = self._cursor
        first = self._stream_index(clock)
        window = Window(
            clock,
            int(n),
            length,
            self.port.stream_time_s(first),
            self.port.stream_time_s(first + length),
        )
        self._cursor += length
        return window

    def capture(self, windows: list[Window], lengths: list[int] | None = None) -> list[np.ndarray]:
        """What the receiver gets in each of ``windows``: complex64 ``(lengths[i],)`` from
        its start (default: its ``n``), rendered in parallel."""
        return self._render(self.port, windows, lengths)

    def listen(self, windows: list[Window], lengths: list[int] | None = None) -> list[np.ndarray]:
        """What the listener heard over the same medium time as :meth:`capture` (its own
        samples); empty without a listener."""
        return [] if self.listener is None else self._render(self.listener, windows, lengths)

    @staticmethod
    def _render(
        port: MediumPort, windows: list[Window], lengths: list[int] | None
    ) -> list[np.ndarray]:
        lengths = [w.n for w in windows] if lengths is None else lengths
        if any(not 1 <= n <= w.n for w, n in zip(windows, lengths, strict=True)):
            raise ValueError("a capture is longer than its window")
        spans = [(port.name, w.push_s, n) for w, n in zip(windows, lengths, strict=True)]
        return port.medium.capture_many(spans)

    def finish(self) -> None:
        """Move the receiver's RX stream and clock past every reserved window."""
        ahead = self._cursor - self.receiver.clock
        if ahead > 0:
            self.port.discard(ahead)
            self.receiver.clock = self._cursor
        self._origin = None

"""The DAC core's data path: DDS tone generators and what the DAC plays.

* :class:`DdsTone` / :class:`Dds` - the four tone generators of
  ``cf-ad9361-dds-core-lpc`` (``TX1_I_F1``, ``TX1_I_F2``, ``TX1_Q_F1``,
  ``TX1_Q_F2``). Like the HDL, each has a 16-bit phase accumulator: the frequency
  register is ``f * 0xFFFF / fs`` rounded (read back as ``reg * fs // 0xFFFF``, so a
value read back writes back unchanged), the phase
  register ``phase_mdeg * 0x10000 // 360000``, and each tone is
  ``scale * sin(2 pi k inc / 2**16 + phase)``; I is the sum of the two I tones, Q of the
  two Q tones. So the DDS output repeats exactly every 2**16 samples and one period
  is what goes on the air as a cyclic buffer. ``raw`` (one enable for the core) and
  ``scale`` (0..1, 1.1.14 fixed point) as in ``cf_axi_dds``.
* :class:`DacPath` - the source the DAC outputs: a cyclic DMA buffer, queued one-shot
  buffers (played back to back, zeros when empty), the DDS, or zeros. It keeps a
  running sample position so the AD9361's digital loopback (``loopback`` = 1, TX to
  RX inside the chip) returns the words the DAC is sending, sample-contiguous, with
  the real bit alignment: a 16-bit TX word ``w`` is received as the 12-bit code
  ``w >> 4``.

Words are int16 arrays ``(n,)`` for I and Q; samples complex64 with full scale 1.0.
"""

from __future__ import annotations

import errno
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from hardware.iiod.context import IIOError

DDS_PERIOD = 1 << 16  # phase accumulator length: the DDS output repeats exactly
WORD_FULL_SCALE = 32767
SCALE_STEPS = 1 << 14  # 1.1.14 fixed point


@dataclass
class DdsTone:
    """One tone generator (register values as the core holds them)."""

    label: str
    increment: int = 0  # frequency register (phase step per sample, of 2**16)
    phase_reg: int = 0  # phase register (of 2**16)
    scale_reg: int = 0  # amplitude, of 2**14

    def frequency_hz(self, fs: float) -> int:
        """The frequency as the driver reads it back: ``reg * fs // 0xFFFF``."""
        return int(self.increment * int(fs) // 0xFFFF)

    def set_frequency(self, hz: int, fs: float) -> None:
        if not 0 <= hz <= fs / 2:
            raise IIOError(errno.EINVAL, f"DDS frequency {hz} outside [0, {int(fs) // 2}]")
        self.increment = (hz * 0xFFFF + int(fs) // 2) // int(fs)

    @property
    def phase_mdeg(self) -> int:
        return int(round(self.phase_reg * 360000 / 0x10000))

    def set_phase(self, mdeg: int) -> None:
        if not 0 <= mdeg <= 360000:
            raise IIOError(errno.EINVAL, f"DDS phase {mdeg} outside [0, 360000] mdeg")
        self.phase_reg = mdeg * 0x10000 // 360000 % 0x10000

    @property
    def scale(self) -> float:
        return self.scale_reg / SCALE_STEPS

    def set_scale(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise IIOError(errno.EINVAL, f"DDS scale {value} outside [0, 1]")
        self.scale_reg = int(round(value * SCALE_STEPS))

    def render(self, start: int, n: int) -> np.ndarray:
        """Samples ``start .. start+n`` of this tone, float64 ``(n,)``, full scale 1.0."""
        if self.scale_reg == 0:
            return np.zeros(n)
        k = np.arange(start, start + n, dtype=np.int64)
        acc = (k * self.increment + self.phase_reg) % DDS_PERIOD
        return self.scale * np.sin(2.0 * np.pi * acc / DDS_PERIOD)


@dataclass
class Dds:
    """The core's four tones (I_F1, I_F2, Q_F1, Q_F2) and its enable."""

    tones: list[DdsTone] = field(
        default_factory=lambda: [
            DdsTone(name) for name in ("TX1_I_F1", "TX1_I_F2", "TX1_Q_F1", "TX1_Q_F2")
        ]
    )
    enabled: bool = True

    @property
    def active(self) -> bool:
        """True when the DDS puts a non-zero signal out."""
        return self.enabled and any(
            t.scale_reg and (t.increment or t.phase_reg) for t in self.tones
        )

    def words(self, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """DAC words (I, Q) int16 ``(n,)`` for samples ``start .. start+n``."""
        if not self.enabled:
            zeros = np.zeros(n, np.int16)
            return zeros, zeros.copy()
        i = self.tones[0].render(start, n) + self.tones[1].render(start, n)
        q = self.tones[2].render(start, n) + self.tones[3].render(start, n)
        return _to_words(i), _to_words(q)

    def period_words(self) -> tuple[np.ndarray, np.ndarray]:
        """One full period (2**16 samples) of the output, which repeats exactly."""
        return self.words(0, DDS_PERIOD)


def _to_words(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * WORD_FULL_SCALE), -32768, 32767).astype(np.int16)


class DacPath:
    """What the DAC outputs, with a running sample position for the digital loopback.

    Sources, in priority: a cyclic DMA buffer, queued one-shot DMA buffers (back to
    back, then zeros), the DDS (when no DMA buffer is open), zeros.
    """

    def __init__(self, dds: Dds) -> None:
        self.dds = dds
        self._lock = threading.Lock()
        self._cyclic: tuple[np.ndarray, np.ndarray] | None = None
        self._queue: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self._dma_open = False
        self._position = 0  # samples sent since power-on
        #: TX buffers pushed since power-on (cyclic and one-shot)
        self.pushes = 0

    # -- DMA ------------------------------------------------------------------------
    def open_dma(self) -> None:
        """A TX buffer was created: the DAC switches from the DDS to the DMA."""
        with self._lock:
            self._dma_open = True
            self._cyclic = None
            self._queue.clear()

    def push(self, i: np.ndarray, q: np.ndarray, cyclic: bool) -> None:
        """A pushed TX buffer (int16 words)."""
        with self._lock:
            self._dma_open = True
            self.pushes += 1
            if cyclic:
                self._cyclic = (i.astype(np.int16), q.astype(np.int16))
                self._position = 0  # a cyclic buffer starts at its first sample
            else:
                self._queue.append((i.astype(np.int16), q.astype(np.int16)))

    def close_dma(self) -> None:
        """The TX buffer was destroyed: the DAC returns to the DDS."""
        with self._lock:
            self._dma_open = False
            self._cyclic = None
            self._queue.clear()

    @property
    def dma_open(self) -> bool:
        return self._dma_open

    # -- output ---------------------------------------------------------------------
    def next_words(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``n`` words (I, Q) the DAC sends; advances the position."""
        with self._lock:
            start = self._position
            self._position += n
            if self._cyclic is not None:
                ci, cq = self._cyclic
                idx = np.arange(start, start + n) % ci.size
                return ci[idx], cq[idx]
            if self._dma_open:
                return self._drain_queue(n)
            return self.dds.words(start, n)

    def _drain_queue(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        out_i = np.zeros(n, np.int16)
        out_q = np.zeros(n, np.int16)
        filled = 0
        while filled < n and self._queue:
            bi, bq = self._queue[0]
            take = min(n - filled, bi.size)
            out_i[filled : filled + take] = bi[:take]
            out_q[filled : filled + take] = bq[:take]
            filled += take
            if take == bi.size:
                self._queue.popleft()
            else:
                self._queue[0] = (bi[take:], bq[take:])
        return out_i, out_q

    def loopback_codes(self, n: int) -> np.ndarray:
        """RX codes ``(n, 2)`` int16 (I, Q) of the AD9361 digital loopback: the DAC's
        16-bit words shifted to the 12-bit ADC alignment (``w >> 4``)."""
        i, q = self.next_words(n)
        return np.stack([i >> 4, q >> 4], axis=1).astype("<i2")

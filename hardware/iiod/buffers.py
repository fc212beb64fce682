"""Buffer I/O interface between the IIOD server and a device model, plus sample packing.

The server owns the protocol (OPEN/READBUF/WRITEBUF/CLOSE, chunking, masks); a
:class:`BufferBackend` owns the data: it opens a :class:`BufferSession` per OPEN and
moves raw bytes (``sample_size`` bytes per sample, enabled scan channels interleaved in
mask-bit order, as in the kernel's DMA buffer).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from hardware.iiod.context import Device


class BufferSession(ABC):
    """One open buffer of one device (one OPEN on one connection)."""

    #: Bytes per sample for the mask the session was opened with.
    sample_size: int
    #: Samples per buffer (the OPEN ``samples_count``).
    samples_count: int
    #: Enabled-channel mask (bit = channel number).
    mask: int
    #: True for OPEN ... CYCLIC.
    cyclic: bool

    @abstractmethod
    def read(self, nbytes: int, timeout_s: float | None) -> bytes:
        """Return ``nbytes`` (a multiple of ``sample_size``) of fresh samples.

        Raises :class:`~hardware.iiod.context.IIOError` (``ETIMEDOUT`` when no data in
        ``timeout_s``; ``None`` waits forever).
        """

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Submit one buffer of ``len(data)`` bytes (a multiple of ``sample_size``)."""

    @abstractmethod
    def close(self) -> None:
        """Stop streaming (stops a cyclic transmission); safe to call twice."""


class BufferBackend(ABC):
    """Creates buffer sessions for the devices of one context."""

    @abstractmethod
    def open(self, device: Device, samples_count: int, mask: int, cyclic: bool) -> BufferSession:
        """Open a buffer; raises IIOError (EINVAL bad mask/size, EBUSY already streaming)."""

    @abstractmethod
    def set_kernel_buffers(self, device: Device, count: int) -> None:
        """Set the number of kernel buffers (``SET dev BUFFERS_COUNT n``; EBUSY while open)."""


def interleave(columns: list[np.ndarray], dtype: str = "<i2") -> bytes:
    """Interleave equal-length integer columns sample by sample into raw bytes."""
    if not columns:
        raise ValueError("no channels to interleave")
    out = np.empty((len(columns[0]), len(columns)), dtype=dtype)
    for k, column in enumerate(columns):
        out[:, k] = column
    return out.tobytes()


def deinterleave(data: bytes, n_channels: int, dtype: str = "<i2") -> np.ndarray:
    """Raw interleaved bytes -> array of shape ``(n_samples, n_channels)``."""
    if n_channels <= 0:
        raise ValueError("n_channels must be positive")
    words = np.frombuffer(data, dtype=dtype)
    usable = len(words) - len(words) % n_channels
    return words[:usable].reshape(-1, n_channels)

"""A user's images encrypted at rest with FLEP's cipher (FLEP's data tier).

:class:`EncryptedImageStore` keeps one :class:`~learning.federated.cipher.FlepCipher`
ciphertext (bytes) per image: images ``(N, C, H, W)`` in [0, 1] are quantised to 8 bits
(``round(255 x)``) and stored as ``(H, W, C)`` uint8 cipher images. The plaintext exists
only in memory, when the user decrypts for local training (:meth:`dataset`); any image
leaving the user leaves as its ciphertext (:meth:`export`). Labels are kept in the clear
beside the ciphertexts (FLEP encrypts images). Decryption errors of the cipher (wrong key,
tampering) propagate.
"""

from __future__ import annotations

import numpy as np
import torch

from learning.data import Dataset
from learning.federated.cipher import FlepCipher

__all__ = ["EncryptedImageStore", "from_uint8_hwc", "to_uint8_hwc"]


def to_uint8_hwc(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Images ``(N, C, H, W)`` in [0, 1] -> uint8 ``(N, H, W, C)`` (``round(255 x)``)."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4 or not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
        raise ValueError("images must be finite (N, C, H, W) values in [0, 1]")
    return np.round(255.0 * x).astype(np.uint8).transpose(0, 2, 3, 1).copy()


def from_uint8_hwc(images: np.ndarray) -> torch.Tensor:
    """Inverse of :func:`to_uint8_hwc` up to quantisation: float32 ``(N, C, H, W)``."""
    return torch.from_numpy(np.asarray(images).transpose(0, 3, 1, 2).astype(np.float32) / 255.0)


class EncryptedImageStore:
    """Images encrypted at rest under one user's key.

    Args:
        cipher: the user's :class:`FlepCipher`.
        data: the images to protect (their float pixels are quantised to 8 bits).
    """

    def __init__(self, cipher: FlepCipher, data: Dataset) -> None:
        self._cipher = cipher
        self.labels = data.y.clone()
        self.n_classes = data.n_classes
        self.name = data.name
        self.records = [cipher.encrypt(im).to_bytes() for im in to_uint8_hwc(data.x)]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def stored_bytes(self) -> int:
        """Bytes held at rest (ciphertexts with their headers and tags)."""
        return sum(len(r) for r in self.records)

    def export(self, i: int) -> bytes:
        """The ciphertext of image ``i``: the only form in which an image leaves the user."""
        return self.records[i]

    def dataset(self) -> Dataset:
        """Decrypt every image into an in-memory :class:`~learning.data.Dataset`."""
        images = np.stack([self._cipher.decrypt(r) for r in self.records])
        return Dataset(from_uint8_hwc(images), self.labels.clone(), self.n_classes, self.name)

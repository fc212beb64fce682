"""Payload framing: how a batch of samples and their labels fill one slot's reals.

The one copy of the convention, used by every sender (users in node processes and in
the in-process loop), by the server reading a received mixture back, and by the
attackers' models of what the server and an eavesdropper see
(:mod:`learning.privacy_report`).

Layout (one OTA slot, ``B`` samples per user)::

    per sample:  [ x-payload (D reals) | label tail (C_pad reals) ]
    one slot:    B samples, flattened row by row -> n_reals = B * (D + C_pad)

``C_pad`` is the class count rounded up to even (pairs of reals form complex
symbols). The label tail is ``sqrt(C_pad / 2) * onehot(y)`` (:func:`label_tail_amplitude`):
unit power per complex symbol, like a unit-power x-payload, so the labels mix over the
air with exactly the weights the data get.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "frame_reals",
    "label_dim",
    "label_tail",
    "label_tail_amplitude",
    "pack_payload",
    "read_label",
    "split_payload",
]


def label_dim(n_classes: int) -> int:
    """Reals per sample carrying the label: the class count rounded up to even."""
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    return n_classes + n_classes % 2


def label_tail_amplitude(n_classes: int) -> float:
    """Amplitude of the one-hot label tail: ``sqrt(C_pad / 2)`` (unit power per complex
    symbol)."""
    return math.sqrt(label_dim(n_classes) / 2.0)


def frame_reals(batch: int, dim: int, n_classes: int) -> int:
    """Reals of one slot: ``batch * (dim + C_pad)``."""
    return int(batch) * (int(dim) + label_dim(n_classes))


def label_tail(labels: np.ndarray | torch.Tensor, n_classes: int) -> np.ndarray:
    """The label tails of int ``labels`` (any shape ``S``): float32 ``S + (C_pad,)``."""
    y = np.asarray(labels, dtype=np.int64)
    eye = np.eye(label_dim(n_classes), dtype=np.float32) * label_tail_amplitude(n_classes)
    return eye[y]


def pack_payload(x_payload: torch.Tensor, labels: torch.Tensor, n_classes: int) -> np.ndarray:
    """``(B, D)`` payloads and ``(B,)`` labels -> the slot's real vector ``(B*(D+C_pad),)``."""
    x = np.asarray(torch.as_tensor(x_payload).detach().float())
    return np.concatenate([x, label_tail(labels, n_classes)], axis=1).reshape(-1)


def read_label(tail: np.ndarray | torch.Tensor, n_classes: int, soft: bool = True) -> torch.Tensor:
    """The label carried by received tails ``(B, >= n_classes)``: rescaled by
    :func:`label_tail_amplitude`; ``soft=True`` also clips at 0 and normalises each row to
    sum 1 (noise can make entries slightly negative; a row without mass becomes uniform),
    which is how the server reads a mixed label. ``soft=False`` returns the rescaled tail
    as received (an eavesdropper's view, whose mixture weights are not real and >= 0)."""
    label = torch.as_tensor(np.asarray(tail, dtype=np.float32))[:, :n_classes]
    label = label / label_tail_amplitude(n_classes)
    if not soft:
        return label.contiguous()
    label = label.clamp(min=0)
    total = label.sum(dim=1, keepdim=True)
    uniform = torch.full_like(label, 1.0 / n_classes)
    return torch.where(total > 1e-6, label / total.clamp(min=1e-6), uniform)


def split_payload(
    vector: np.ndarray, batch: int, dim: int, n_classes: int, *, soft_label: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`pack_payload` on a received mixture ``(n_reals,)``.

    Returns ``(mixed x-payload (B, D), mixed label (B, C))``, the label read by
    :func:`read_label` (``soft=soft_label``)."""
    c = label_dim(n_classes)
    rows = torch.as_tensor(np.asarray(vector, dtype=np.float32)).reshape(batch, dim + c)
    return rows[:, :dim].contiguous(), read_label(rows[:, dim:], n_classes, soft_label)

"""The classic chosen-plaintext attack on permutation-diffusion image ciphers.

Many chaotic image ciphers permute the pixels and XOR them with a keystream that depends
on the key only (Li and Lo; Preishuber et al., IEEE TIFS 2018). With an encryption oracle,
``N + 1`` chosen images break them:

1. the all-zero image ``0``: its cipher image ``C0`` is the (permuted) keystream - the
   equivalent key of the XOR layer;
2. for each position ``j`` the image ``e_j`` (zero but pixel ``j`` = 1): its cipher image
   differs from ``C0`` at exactly one position, ``pi(j)`` - the permutation;
3. the target cipher image ``C`` then decrypts as ``P[j] = C[pi(j)] XOR C0[pi(j)]`` (a
   position that was not located is assumed unmoved, ``pi(j) = j``).

:func:`chosen_plaintext_attack` runs this against any oracle ``encrypt(image) -> cipher
image`` and reports how much of the keystream and permutation it located and which
fraction of the target's pixels it recovered, next to chance (``1/256`` per byte for an
uninformed guess). A cipher whose keystream is bound to the plaintext (FLEP's, see
:mod:`learning.federated.cipher`) gives unrelated keystreams to ``0`` and every ``e_j``:
the one-pixel queries change almost every byte, nothing is located, and the recovery
stays at chance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["CpaResult", "chosen_plaintext_attack"]


@dataclass
class CpaResult:
    """Outcome of :func:`chosen_plaintext_attack`.

    Attributes:
        queries: chosen plaintexts encrypted.
        keystream_repeat: fraction of bytes equal between two encryptions of the zero
            image (1.0: the equivalent keystream is fixed and was recovered).
        located: fraction of positions whose one-pixel query changed exactly one byte
            (1.0: the whole permutation was recovered).
        mean_changed: mean fraction of cipher bytes a one-pixel query changed.
        recovered: fraction of the target's pixels recovered exactly.
        chance: the same fraction for a blind guess (1/256).
        guess: the attacker's reconstruction of the target (uint8, target's shape).
    """

    queries: int
    keystream_repeat: float
    located: float
    mean_changed: float
    recovered: float
    chance: float
    guess: np.ndarray

    @property
    def broken(self) -> bool:
        """True when the attack recovered most of the target (more than half its pixels)."""
        return self.recovered > 0.5


def chosen_plaintext_attack(
    encrypt: Callable[[np.ndarray], np.ndarray],
    target_ciphertext: np.ndarray,
    target_plaintext: np.ndarray,
) -> CpaResult:
    """Mount the attack (see the module docstring).

    Args:
        encrypt: the oracle, uint8 image -> uint8 cipher image of the same shape.
        target_ciphertext: the cipher image to break (uint8).
        target_plaintext: its plaintext, used only to score the recovery.

    Returns:
        :class:`CpaResult`.
    """
    c = np.asarray(target_ciphertext)
    p = np.asarray(target_plaintext)
    if c.dtype != np.uint8 or p.dtype != np.uint8 or c.shape != p.shape:
        raise ValueError("target ciphertext and plaintext must be uint8 arrays of one shape")
    shape, n = c.shape, c.size
    zero = np.zeros(shape, dtype=np.uint8)
    c0 = np.asarray(encrypt(zero)).reshape(-1)
    c0_again = np.asarray(encrypt(zero)).reshape(-1)
    perm = np.full(n, -1, dtype=np.int64)
    changed = np.empty(n)
    for j in range(n):
        probe = zero.reshape(-1).copy()
        probe[j] = 1
        diff = np.flatnonzero(np.asarray(encrypt(probe.reshape(shape))).reshape(-1) != c0)
        changed[j] = diff.size / n
        if diff.size == 1:
            perm[j] = diff[0]
    found = perm >= 0
    where = np.where(found, perm, np.arange(n))  # unlocated: assume the position is kept
    guess = np.bitwise_xor(c.reshape(-1)[where], c0[where])
    return CpaResult(
        queries=n + 2,
        keystream_repeat=float(np.mean(c0 == c0_again)),
        located=float(np.mean(found)),
        mean_changed=float(np.mean(changed)),
        recovered=float(np.mean(guess == p.reshape(-1))),
        chance=1.0 / 256.0,
        guess=guess.reshape(shape),
    )

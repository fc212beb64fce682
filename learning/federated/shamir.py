"""Shamir secret sharing (Shamir 1979) over the prime field GF(2^521 - 1).

A secret of up to 64 bytes is read as an integer ``s < p`` (big-endian); a random
polynomial ``f`` of degree ``threshold - 1`` with ``f(0) = s`` (coefficients uniform in the
field, drawn with :mod:`secrets`) is evaluated at ``x = 1..n``. Any ``threshold`` shares
recover ``s`` by Lagrange interpolation at 0; fewer reveal nothing about it. The field is
the Mersenne prime ``2^521 - 1``, so every 64-byte secret fits.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PRIME", "Share", "combine_shares", "split_secret"]

#: the field modulus, the Mersenne prime 2^521 - 1
PRIME = (1 << 521) - 1
_Y_BYTES = 66
MAX_SECRET_BYTES = 64


@dataclass(frozen=True)
class Share:
    """One share: the point ``(x, f(x))`` and the secret's byte length."""

    x: int
    y: int
    length: int

    def to_bytes(self) -> bytes:
        """``x`` (2 bytes) | ``length`` (1 byte) | ``y`` (66 bytes), big-endian."""
        return self.x.to_bytes(2, "big") + bytes([self.length]) + self.y.to_bytes(_Y_BYTES, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> Share:
        """Inverse of :meth:`to_bytes`."""
        if len(data) != 3 + _Y_BYTES:
            raise ValueError(f"a share is {3 + _Y_BYTES} bytes, got {len(data)}")
        return cls(int.from_bytes(data[:2], "big"), int.from_bytes(data[3:], "big"), data[2])


def split_secret(secret: bytes, n: int, threshold: int) -> list[Share]:
    """Split ``secret`` (1..64 bytes) into ``n`` shares, any ``threshold`` of which recover it.

    Args:
        secret: the bytes to share.
        n: number of shares, ``1 <= n < 65536``.
        threshold: shares needed, ``1 <= threshold <= n``.
    Returns:
        ``n`` :class:`Share` s with ``x = 1..n``.
    """
    if not isinstance(secret, bytes | bytearray) or not 1 <= len(secret) <= MAX_SECRET_BYTES:
        raise ValueError(f"secret must be 1..{MAX_SECRET_BYTES} bytes")
    if not 1 <= threshold <= n < 65536:
        raise ValueError(f"need 1 <= threshold <= n < 65536, got threshold={threshold}, n={n}")
    coeffs = [int.from_bytes(secret, "big")] + [
        secrets.randbelow(PRIME) for _ in range(threshold - 1)
    ]
    shares = []
    for x in range(1, n + 1):
        y = 0
        for c in reversed(coeffs):  # Horner
            y = (y * x + c) % PRIME
        shares.append(Share(x, y, len(secret)))
    return shares


def combine_shares(shares: Sequence[Share]) -> bytes:
    """Recover the secret from ``threshold`` or more shares (all of one sharing).

    With fewer than the threshold the result is a uniformly random field element, not the
    secret (the caller must know the threshold). Raises ``ValueError`` on duplicate
    ``x``, mixed lengths or an empty list.
    """
    if not shares:
        raise ValueError("no shares to combine")
    xs = [s.x for s in shares]
    if len(set(xs)) != len(xs) or min(xs) < 1:
        raise ValueError("shares must have distinct x >= 1")
    lengths = {s.length for s in shares}
    if len(lengths) != 1:
        raise ValueError("shares come from secrets of different lengths")
    secret = 0
    for i, si in enumerate(shares):
        num, den = 1, 1
        for j, sj in enumerate(shares):
            if i != j:
                num = num * (-sj.x) % PRIME
                den = den * (si.x - sj.x) % PRIME
        secret = (secret + si.y * num * pow(den, -1, PRIME)) % PRIME
    length = lengths.pop()
    if secret >= 1 << (8 * length):
        raise ValueError("shares do not combine to a secret of the recorded length")
    return secret.to_bytes(length, "big")

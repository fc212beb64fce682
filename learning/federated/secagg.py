"""Secure aggregation after Bonawitz et al. (CCS 2017): the server learns only the sum.

Protocol (semi-honest server, in process; every message is serialised so its bytes are
counted), for users ``u = 0..n-1`` holding float vectors ``x_u`` of length ``P``:

0. **AdvertiseKeys** - each user makes two X25519 key pairs, ``(c_u, c_u^pk)`` for
   encrypting shares and ``(s_u, s_u^pk)`` for masks, and sends both public keys (64
   bytes); the server broadcasts the list.
1. **ShareKeys** - each user draws a self-mask seed ``b_u`` (32 random bytes) and splits
   ``s_u`` (32 bytes) and ``b_u`` into ``n`` Shamir shares with threshold ``t``
   (:mod:`learning.federated.shamir`); the pair of shares for user ``v`` is encrypted with
   ChaCha20-Poly1305 under ``HKDF(X25519(c_u, c_v^pk))`` and routed by the server.
2. **MaskedInputCollection** - each user encodes ``x_u`` in fixed point modulo ``2^64``
   (``round(x * 2^f)``, two's complement) and sends
   ``y_u = x_u + PRG(b_u) + sum_{v > u} PRG(s_uv) - sum_{v < u} PRG(s_uv)  (mod 2^64)``
   where ``s_uv = HKDF(X25519(s_u, s_v^pk))`` is the pairwise seed both ends agree on and
   ``PRG`` is the ChaCha20 keystream read as uint64. Users may **drop out** here (after
   sharing, before sending ``y_u``).
3. **Unmasking** - each survivor sends, for every dropped user ``v``, its share of ``s_v``
   and, for every survivor ``u``, its share of ``b_u``. The server recombines ``s_v`` (then
   recomputes and removes every survivor's pairwise mask with ``v``) and ``b_u`` (removes
   the self masks). The pairwise masks among survivors cancel in the sum.

The result is ``sum_{u in survivors} x_u`` exactly in fixed point; against the float64 sum
the error is at most ``n_survivors * 2^-(f+1)`` (rounding). The protocol needs at least ``t``
survivors; ``t`` defaults to ``n // 2 + 1``. (The signature round of the actively secure
variant is left out: the server here is honest-but-curious.)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from learning.federated.shamir import Share, combine_shares, split_secret

__all__ = [
    "FRACTION_BITS",
    "SecAggClient",
    "SecAggResult",
    "decode_fixed",
    "encode_fixed",
    "secure_aggregate",
]

#: fixed-point fraction bits of the encoding modulo 2^64
FRACTION_BITS = 32
_RAW = serialization.Encoding.Raw
_SHARE_BYTES = 69


def encode_fixed(x: np.ndarray, fraction_bits: int = FRACTION_BITS) -> np.ndarray:
    """Float vector -> uint64 fixed point ``round(x 2^f) mod 2^64`` (two's complement)."""
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("secure aggregation input contains NaN or inf")
    if arr.size and np.max(np.abs(arr)) >= 2.0 ** (62 - fraction_bits):
        raise ValueError(f"|x| must stay below 2^{62 - fraction_bits} for {fraction_bits} bits")
    return np.round(arr * 2.0**fraction_bits).astype(np.int64).view(np.uint64)


def decode_fixed(v: np.ndarray, fraction_bits: int = FRACTION_BITS) -> np.ndarray:
    """uint64 fixed point -> float64 (inverse of :func:`encode_fixed`)."""
    return np.asarray(v, dtype=np.uint64).view(np.int64).astype(np.float64) / 2.0**fraction_bits


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def _prg(seed: bytes, n: int) -> np.ndarray:
    """``n`` uint64 words of the ChaCha20 keystream under ``seed`` (32 bytes)."""
    enc = Cipher(algorithms.ChaCha20(seed, b"\x00" * 16), mode=None).encryptor()
    return np.frombuffer(enc.update(b"\x00" * (8 * n)), dtype=np.uint64)


def _pub(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)


def _pairwise_seed(own: X25519PrivateKey, other_pk: bytes) -> bytes:
    return _hkdf(own.exchange(X25519PublicKey.from_public_bytes(other_pk)), b"secagg/mask")


class SecAggClient:
    """One user of the protocol.

    Args:
        uid: user index in ``0..n-1``.
        vector: the float vector to contribute (its length is ``P``).
    """

    def __init__(self, uid: int, vector: np.ndarray) -> None:
        self.uid = int(uid)
        self.x = encode_fixed(vector)
        self._c = X25519PrivateKey.generate()
        self._s = X25519PrivateKey.generate()
        self._b = os.urandom(32)
        self._keys: dict[int, tuple[bytes, bytes]] = {}
        self._inbox: dict[int, bytes] = {}

    def advertise_keys(self) -> bytes:
        """Round 0: ``c_u^pk | s_u^pk`` (64 bytes)."""
        return _pub(self._c) + _pub(self._s)

    def _channel_key(self, v: int) -> bytes:
        return _pairwise_seed(self._c, self._keys[v][0])

    def share_keys(self, keys: dict[int, bytes], threshold: int) -> dict[int, bytes]:
        """Round 1: encrypted share pairs for every other user, keyed by recipient."""
        self._keys = {v: (k[:32], k[32:]) for v, k in keys.items()}
        n = len(keys)
        s_shares = split_secret(
            self._s.private_bytes(
                _RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            ),
            n,
            threshold,
        )
        b_shares = split_secret(self._b, n, threshold)
        out = {}
        for i, v in enumerate(sorted(keys)):
            plain = s_shares[i].to_bytes() + b_shares[i].to_bytes()
            if v == self.uid:
                self._inbox[v] = plain  # own shares stay local
                continue
            nonce = os.urandom(12)
            aad = self.uid.to_bytes(4, "big") + v.to_bytes(4, "big")
            out[v] = nonce + ChaCha20Poly1305(self._channel_key(v)).encrypt(nonce, plain, aad)
        return out

    def receive_shares(self, messages: dict[int, bytes]) -> None:
        """Round 1 delivery: decrypt the share pairs other users sent to this one."""
        for u, blob in messages.items():
            aad = u.to_bytes(4, "big") + self.uid.to_bytes(4, "big")
            self._inbox[u] = ChaCha20Poly1305(self._channel_key(u)).decrypt(
                blob[:12], blob[12:], aad
            )

    def masked_input(self) -> np.ndarray:
        """Round 2: ``y_u`` (uint64 ``(P,)``), masked by the self mask and pairwise masks."""
        n = self.x.size
        y = self.x + _prg(self._b, n)
        for v, (_, s_pk) in self._keys.items():
            if v == self.uid:
                continue
            mask = _prg(_pairwise_seed(self._s, s_pk), n)
            y = y + mask if self.uid < v else y - mask
        return y

    def unmask(self, survivors: set[int], dropped: set[int]) -> dict[int, bytes]:
        """Round 3: this user's share of ``s_v`` for dropped ``v``, of ``b_u`` for survivors."""
        out = {}
        for u, plain in self._inbox.items():
            if u in dropped:
                out[u] = plain[:_SHARE_BYTES]
            elif u in survivors:
                out[u] = plain[_SHARE_BYTES:]
        return out


@dataclass
class SecAggResult:
    """One secure aggregation.

    Attributes:
        total: float64 ``(P,)``, the decoded sum over ``survivors``.
        survivors, dropped: user indices.
        upload_bytes: bytes all users sent to the server; download_bytes: bytes it sent.
        plain_upload_bytes: what plain float32 uploads of the survivors would take.
        seconds: wall time of the whole protocol (all parties, in one process).
        phase_seconds: wall time per round.
    """

    total: np.ndarray
    survivors: list[int]
    dropped: list[int]
    upload_bytes: int
    download_bytes: int
    plain_upload_bytes: int
    seconds: float
    phase_seconds: dict[str, float] = field(default_factory=dict)


def secure_aggregate(
    vectors: np.ndarray, dropped: set[int] | None = None, threshold: int | None = None
) -> SecAggResult:
    """Run the protocol for ``vectors`` ``(n, P)`` with users ``dropped`` leaving after
    round 1. Returns a :class:`SecAggResult`; raises ``ValueError`` when fewer than
    ``threshold`` users survive (the sum cannot be unmasked)."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"vectors must have shape (n >= 2, P >= 1), got {x.shape}")
    n, p = x.shape
    dropped = set(int(d) for d in (dropped or set()))
    if not dropped <= set(range(n)):
        raise ValueError(f"dropped users {sorted(dropped)} outside 0..{n - 1}")
    t = n // 2 + 1 if threshold is None else int(threshold)
    if not 1 < t <= n:
        raise ValueError(f"threshold must be in 2..{n}, got {t}")
    survivors = sorted(set(range(n)) - dropped)
    if len(survivors) < t:
        raise ValueError(f"{len(survivors)} survivors < threshold {t}: the sum cannot be unmasked")
    if np.max(np.abs(x)) * n >= 2.0 ** (62 - FRACTION_BITS):
        raise ValueError("inputs too large for the fixed-point sum")
    up = down = 0
    phases: dict[str, float] = {}
    start = tick = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        phases[name] = now - tick
        tick = now

    clients = [SecAggClient(u, x[u]) for u in range(n)]
    keys = {c.uid: c.advertise_keys() for c in clients}
    up += sum(len(k) for k in keys.values())
    down += n * sum(len(k) for k in keys.values())
    lap("advertise_keys")
    routed: dict[int, dict[int, bytes]] = {v: {} for v in range(n)}
    for c in clients:
        for v, blob in c.share_keys(keys, t).items():
            routed[v][c.uid] = blob
            up += len(blob)
            down += len(blob)
    for c in clients:
        c.receive_shares(routed[c.uid])
    lap("share_keys")
    total = np.zeros(p, dtype=np.uint64)
    for u in survivors:
        y = clients[u].masked_input()
        up += y.nbytes
        total += y
    lap("masked_input")
    down += len(survivors) * 4 * (len(dropped) + len(survivors))  # the survivor/dropped lists
    responses = {u: clients[u].unmask(set(survivors), dropped) for u in survivors}
    up += sum(len(s) for r in responses.values() for s in r.values())
    for v in dropped:
        s_v = X25519PrivateKey.from_private_bytes(
            combine_shares([Share.from_bytes(r[v]) for r in responses.values()])
        )
        for u in survivors:
            mask = _prg(_pairwise_seed(s_v, keys[u][32:]), p)
            # y_u carried +mask if u < v else -mask: remove it
            total = total - mask if u < v else total + mask
    for u in survivors:
        b_u = combine_shares([Share.from_bytes(r[u]) for r in responses.values()])
        total -= _prg(b_u, p)
    lap("unmask")
    return SecAggResult(
        total=decode_fixed(total),
        survivors=survivors,
        dropped=sorted(dropped),
        upload_bytes=up,
        download_bytes=down,
        plain_upload_bytes=4 * p * len(survivors),
        seconds=time.perf_counter() - start,
        phase_seconds=phases,
    )

"""Secure aggregation after Bonawitz et al. (CCS 2017): the server learns only the sum.

Protocol (semi-honest server; every message is serialised so its bytes are counted), for
users ``u`` (any distinct indices) holding float vectors ``x_u`` of length ``P``. The
server half (:func:`secure_sum`) talks to the users only through an exchange (one call
per phase, :data:`learning.uplink.Exchange`), so the same code runs in process
(:func:`secure_aggregate`, whose exchange calls :class:`SecAggClient` objects directly)
and through ``airmix run`` (the exchange goes over the ZeroMQ link to the users' nodes,
:mod:`learning.federated.method`). Phase messages (:class:`UplinkRequest` -> :class:`Upload`):

0. **AdvertiseKeys** (``secagg/advertise_keys``; answer: blob ``keys``) - each user
   makes two X25519 key pairs, ``(c_u, c_u^pk)`` for encrypting shares and
   ``(s_u, s_u^pk)`` for masks, and sends both public keys (64 bytes); the server
   broadcasts the list.
1. **ShareKeys** (``secagg/share_keys``; request: blob ``<v>`` = user v's keys, array
   ``threshold``) - each user draws a self-mask seed ``b_u`` (32 random bytes) and splits
   ``s_u`` (32 bytes) and ``b_u`` into ``n`` Shamir shares with threshold ``t``
   (:mod:`learning.federated.shamir`); the pair of shares for user ``v`` is encrypted with
   ChaCha20-Poly1305 under ``HKDF(X25519(c_u, c_v^pk))`` (blob ``<v>``) and routed by the
   server.
2. **MaskedInputCollection** (``secagg/masked_input``; request: blob ``<u>`` = the share
   pair user u encrypted for this one; answer: ``update``, int64 ``(P,)``) - each user
   encodes ``x_u`` in fixed point modulo ``2^64`` (``round(x * 2^f)``, two's complement)
   and sends
   ``y_u = x_u + PRG(b_u) + sum_{v > u} PRG(s_uv) - sum_{v < u} PRG(s_uv)  (mod 2^64)``
   over the users ``v`` it received shares from, where
   ``s_uv = HKDF(X25519(s_u, s_v^pk))`` is the pairwise seed both ends agree on and
   ``PRG`` is the ChaCha20 keystream read as uint64. Users may **drop out** here (after
   sharing, before sending ``y_u``).
3. **Unmasking** (``secagg/unmask``; request: arrays ``survivors`` and ``dropped``;
   answer: blobs ``s/<v>`` and ``b/<u>``) - each survivor sends, for every dropped user
   ``v``, its share of ``s_v`` and, for every survivor ``u``, its share of ``b_u``. The
   server recombines ``s_v`` (then recomputes and removes every survivor's pairwise mask
   with ``v``) and ``b_u`` (removes the self masks). The pairwise masks among survivors
   cancel in the sum. A user refuses to reveal both shares of one user (a survivor
   listed as dropped).

A user missing from a phase's answers dropped out there: before its masked input it is
simply left out (no one masks with it, or the masks are removed as above); during
unmasking the others' shares suffice while at least ``t`` answer.

The result is ``sum_{u in survivors} x_u`` exactly in fixed point; against the float64 sum
the error is at most ``n_survivors * 2^-(f+1)`` (rounding). The protocol needs at least ``t``
survivors; ``t`` defaults to ``n // 2 + 1``. (The signature round of the actively secure
variant is left out: the server here is honest-but-curious.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from learning.federated.shamir import Share, combine_shares, split_secret
from learning.uplink import Exchange, UplinkRequest, Upload

__all__ = [
    "FRACTION_BITS",
    "PHASES",
    "SecAggClient",
    "SecAggResult",
    "decode_fixed",
    "encode_fixed",
    "secure_aggregate",
    "secure_sum",
]

#: fixed-point fraction bits of the encoding modulo 2^64
FRACTION_BITS = 32
_RAW = serialization.Encoding.Raw
_SHARE_BYTES = 69
#: the protocol's phases, in order (the :attr:`UplinkRequest.phase` of each)
PHASES = ("secagg/advertise_keys", "secagg/share_keys", "secagg/masked_input", "secagg/unmask")


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
    """One user of the protocol (fresh keys and self-mask seed per aggregation).

    Args:
        uid: the user's index (any int in ``0..2^31``, distinct among the users).
    """

    def __init__(self, uid: int) -> None:
        self.uid = int(uid)
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

    def share_keys(self, keys: Mapping[int, bytes], threshold: int) -> dict[int, bytes]:
        """Round 1: encrypted share pairs for every other user, keyed by recipient."""
        if self.uid not in keys or any(len(k) != 64 for k in keys.values()):
            raise ValueError("need 64-byte keys of every user, this one's included")
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

    def receive_shares(self, messages: Mapping[int, bytes]) -> None:
        """Round 1 delivery: decrypt the share pairs other users sent to this one."""
        for u, blob in messages.items():
            aad = u.to_bytes(4, "big") + self.uid.to_bytes(4, "big")
            self._inbox[u] = ChaCha20Poly1305(self._channel_key(u)).decrypt(
                blob[:12], blob[12:], aad
            )

    def masked_input(self, vector: np.ndarray) -> np.ndarray:
        """Round 2: ``y_u`` (uint64 ``(P,)``) of the float ``vector``, masked by the self
        mask and the pairwise masks with every user it received shares from."""
        x = encode_fixed(vector)
        n = x.size
        y = x + _prg(self._b, n)
        for v in self._inbox:
            if v == self.uid:
                continue
            mask = _prg(_pairwise_seed(self._s, self._keys[v][1]), n)
            y = y + mask if self.uid < v else y - mask
        return y

    def unmask(self, survivors: set[int], dropped: set[int]) -> dict[int, bytes]:
        """Round 3: this user's share of ``s_v`` for dropped ``v``, of ``b_u`` for survivors."""
        if survivors & dropped:
            raise ValueError("a user cannot be both a survivor and dropped")
        out = {}
        for u, plain in self._inbox.items():
            if u in dropped:
                out[u] = plain[:_SHARE_BYTES]
            elif u in survivors:
                out[u] = plain[_SHARE_BYTES:]
        return out

    def respond(self, request: UplinkRequest, vector: np.ndarray | None = None) -> Upload:
        """Answer one phase's request (see the module docstring); ``vector`` is the
        float input, needed for ``secagg/masked_input``."""
        if request.phase == PHASES[0]:
            return Upload(blobs={"keys": self.advertise_keys()})
        if request.phase == PHASES[1]:
            keys = {int(v): k for v, k in request.blobs.items()}
            threshold = int(np.asarray(request.arrays["threshold"]).reshape(-1)[0])
            return Upload(blobs={str(v): b for v, b in self.share_keys(keys, threshold).items()})
        if request.phase == PHASES[2]:
            if vector is None:
                raise ValueError("the masked input needs the user's vector")
            self.receive_shares({int(u): b for u, b in request.blobs.items()})
            return Upload(update=self.masked_input(vector).view(np.int64))
        if request.phase == PHASES[3]:
            survivors = {int(u) for u in np.asarray(request.arrays["survivors"])}
            dropped = {int(v) for v in np.asarray(request.arrays["dropped"])}
            shares = self.unmask(survivors, dropped)
            return Upload(
                blobs={("s/" if u in dropped else "b/") + str(u): sh for u, sh in shares.items()}
            )
        raise ValueError(f"unknown secure-aggregation phase {request.phase!r}")


@dataclass
class SecAggResult:
    """One secure aggregation.

    Attributes:
        total: float64 ``(P,)``, the decoded sum over ``survivors``.
        survivors, dropped: user indices (dropped: left after sharing their keys).
        upload_bytes: bytes all users sent to the server; download_bytes: bytes it sent
            (payloads of the phase messages: keys, shares, masked inputs, lists).
        plain_upload_bytes: what plain float32 uploads of the survivors would take.
        seconds: wall time of the whole protocol.
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


def _request_bytes(request: UplinkRequest) -> int:
    return sum(len(b) for b in request.blobs.values()) + sum(
        np.asarray(a).nbytes for a in request.arrays.values()
    )


def _upload_bytes(upload: Upload) -> int:
    size = sum(len(b) for b in upload.blobs.values())
    return size + (0 if upload.update is None else np.asarray(upload.update).nbytes)


def secure_sum(
    users: Sequence[int], length: int, exchange: Exchange, threshold: int | None = None
) -> SecAggResult:
    """The server half: run the protocol with ``users`` over ``exchange`` and unmask the
    sum of the survivors' vectors of ``length`` reals.

    Returns a :class:`SecAggResult`; raises ``ValueError`` when fewer than ``threshold``
    users (default ``n // 2 + 1``) remain at some phase (the sum cannot be unmasked) or
    an answer is malformed."""
    users = sorted(int(u) for u in users)
    n = len(users)
    t = n // 2 + 1 if threshold is None else int(threshold)
    if len(set(users)) != n or not 1 < t <= n:
        raise ValueError(f"need distinct users and a threshold in 2..{n}, got {t}")
    up = down = 0
    phases: dict[str, float] = {}
    start = tick = time.perf_counter()

    def run(phase: str, requests: dict[int, UplinkRequest], need: int) -> dict[int, Upload]:
        nonlocal up, down, tick
        down += sum(_request_bytes(r) for r in requests.values())
        answers = {u: a for u, a in exchange(requests).items() if u in requests}
        up += sum(_upload_bytes(a) for a in answers.values())
        now = time.perf_counter()
        phases[phase.removeprefix("secagg/")] = now - tick
        tick = now
        if len(answers) < need:
            raise ValueError(f"{len(answers)} users left at {phase} < threshold {need}")
        return answers

    answers = run(PHASES[0], {u: UplinkRequest(PHASES[0]) for u in users}, t)
    keys = {u: bytes(a.blobs["keys"]) for u, a in answers.items()}
    if any(len(k) != 64 for k in keys.values()):
        raise ValueError("advertised keys must be 64 bytes")
    blobs = {str(u): k for u, k in keys.items()}
    limit = {"threshold": np.array([t], np.int64)}
    answers = run(PHASES[1], {u: UplinkRequest(PHASES[1], limit, blobs) for u in keys}, t)
    routed: dict[int, dict[str, bytes]] = {u: {} for u in answers}
    for u, a in answers.items():
        for v, blob in a.blobs.items():
            if int(v) in routed:  # shares for users who left at this phase are dropped
                routed[int(v)][str(u)] = bytes(blob)
    answers = run(PHASES[2], {u: UplinkRequest(PHASES[2], blobs=routed[u]) for u in routed}, t)
    total = np.zeros(int(length), dtype=np.uint64)
    for a in answers.values():
        y = np.asarray(a.update)
        if y.dtype != np.int64 or y.shape != (int(length),):
            raise ValueError(f"a masked input must be int64 ({length},), got {y.dtype} {y.shape}")
        total += y.view(np.uint64)
    survivors = sorted(answers)
    dropped = sorted(set(routed) - set(answers))
    lists = {"survivors": np.array(survivors, np.int64), "dropped": np.array(dropped, np.int64)}
    answers = run(PHASES[3], {u: UplinkRequest(PHASES[3], lists) for u in survivors}, t)

    def combine(prefix: str, u: int) -> bytes:
        return combine_shares(
            [Share.from_bytes(bytes(a.blobs[f"{prefix}/{u}"])) for a in answers.values()]
        )

    for v in dropped:  # remove the survivors' pairwise masks with v
        s_v = X25519PrivateKey.from_private_bytes(combine("s", v))
        for u in survivors:
            mask = _prg(_pairwise_seed(s_v, keys[u][32:]), int(length))
            total = total - mask if u < v else total + mask  # y_u carried +mask if u < v
    for u in survivors:
        total -= _prg(combine("b", u), int(length))
    phases["unmask"] += time.perf_counter() - tick
    return SecAggResult(
        total=decode_fixed(total),
        survivors=survivors,
        dropped=dropped,
        upload_bytes=up,
        download_bytes=down,
        plain_upload_bytes=4 * int(length) * len(survivors),
        seconds=time.perf_counter() - start,
        phase_seconds=phases,
    )


def secure_aggregate(
    vectors: np.ndarray, dropped: set[int] | None = None, threshold: int | None = None
) -> SecAggResult:
    """Run the protocol in process for ``vectors`` ``(n, P)`` (user ``u`` holds row ``u``)
    with users ``dropped`` leaving after round 1 (before their masked input). Returns a
    :class:`SecAggResult`; raises ``ValueError`` when fewer than ``threshold`` users
    survive (the sum cannot be unmasked)."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"vectors must have shape (n >= 2, P >= 1), got {x.shape}")
    n, p = x.shape
    dropped = set(int(d) for d in (dropped or set()))
    if not dropped <= set(range(n)):
        raise ValueError(f"dropped users {sorted(dropped)} outside 0..{n - 1}")
    if np.max(np.abs(x)) * n >= 2.0 ** (62 - FRACTION_BITS):
        raise ValueError("inputs too large for the fixed-point sum")
    clients = {u: SecAggClient(u) for u in range(n)}

    def exchange(requests: Mapping[int, UplinkRequest]) -> dict[int, Upload]:
        return {
            u: clients[u].respond(r, x[u])
            for u, r in requests.items()
            if not (u in dropped and r.phase in PHASES[2:])
        }

    return secure_sum(range(n), p, exchange, threshold)

"""FLEP's data tier: a keyed three-layer image cipher (permutation, diffusion, substitution).

FLEP (Khowaja et al., 2022) encrypts the users' images with three layers; its full text is
not reachable here, so this is the reading we defend, built so that the classic attacks on
permutation-diffusion image ciphers (Li and Lo; Preishuber et al., IEEE TIFS 2018) do not
apply. Every random choice comes from standard primitives of ``cryptography`` instead of a
chaotic map.

Keys. A master key of at least 16 bytes (128 bits) is expanded with HKDF-SHA256 into three
independent sub-keys: ``k_mac`` (32 bytes, the synthetic IV / tag), ``k_stream`` (32 bytes,
the keystream) and an 8-byte key check value stored in each ciphertext so that decryption
with the wrong key is refused with its own error.

Plaintext-bound keystream (synthetic IV, as in AES-SIV). For each image a random 16-byte
``nonce`` is drawn and ``tag = HMAC-SHA256(k_mac, header || nonce || plaintext)[:16]``. The
image key is ``HKDF-SHA256(k_stream, salt=tag, info="flep/image")`` and the keystream is
ChaCha20 under it. The keystream therefore depends on the plaintext (and the nonce): the
all-zero image and an image differing in one pixel get unrelated keystreams, so the
chosen-plaintext attack of :mod:`learning.federated.cipher_attack` recovers nothing, and
the same image encrypted twice gives unrelated ciphertexts. On decryption the tag is
recomputed from the decrypted plaintext and compared in constant time: it is also the
authentication tag (any change to the header, nonce, tag or body is refused).

The three layers, on the image's bytes (``uint8``, shape ``(H, W)`` or ``(H, W, C)``; the 2-D
view ``(H, W*C)`` is used by the diffusion):

1. **Permutation** - all ``N = H*W*C`` bytes are moved to positions given by the argsort of
   ``N`` keystream words (uniform random permutation, independent of the pixel values).
2. **Diffusion** - four chained passes over the permuted 2-D array: rows top to bottom,
   columns left to right, rows bottom to top, columns right to left. A pass sets
   ``d[i] = ((x[i] XOR k[i]) + d[i-1]) mod 256`` with ``d[-1]`` a keystream vector; mixing
   XOR and addition mod 256 makes it non-linear over either operation. After the four
   passes, a change of any byte reaches every byte. (Decryption of a pass needs no chain:
   ``x[i] = ((d[i] - d[i-1]) mod 256) XOR k[i]``.)
3. **Substitution** - each byte goes through a keyed S-box (a random permutation of
   0..255 drawn from the keystream) and is XORed with a last keystream byte.

Wire format (:meth:`EncryptedImage.to_bytes`): ``b"FLEP"`` | version (1) | ndim (1) | shape
(``ndim`` x uint32 big-endian) | key check value (8) | nonce (16) | tag (16) | body (N).

Errors: :class:`WrongKeyError` (key check value mismatch), :class:`AuthenticationError`
(tampered or corrupted ciphertext), :class:`CiphertextFormatError` (malformed bytes); all
subclass :class:`FlepError` (a ``ValueError``). Keys shorter than 16 bytes or not bytes raise
``ValueError``/``TypeError``.
"""

from __future__ import annotations

import hmac
import os
import struct
from dataclasses import dataclass
from hashlib import sha256

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "AuthenticationError",
    "CiphertextFormatError",
    "EncryptedImage",
    "FlepCipher",
    "FlepError",
    "WrongKeyError",
    "MIN_KEY_BYTES",
]

MAGIC = b"FLEP"
VERSION = 1
MIN_KEY_BYTES = 16
NONCE_BYTES = 16
TAG_BYTES = 16
KCV_BYTES = 8


class FlepError(ValueError):
    """Base class of FLEP decryption errors."""


class WrongKeyError(FlepError):
    """The ciphertext was made under another key (key check value mismatch)."""


class AuthenticationError(FlepError):
    """The ciphertext was tampered with or corrupted (tag mismatch)."""


class CiphertextFormatError(FlepError):
    """The bytes are not a FLEP ciphertext (bad magic, version, shape or length)."""


def _hkdf(key: bytes, info: bytes, length: int = 32, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(key)


def _keystream(key: bytes, n: int) -> np.ndarray:
    """``n`` ChaCha20 keystream bytes under ``key`` (32 bytes), as uint8."""
    enc = Cipher(algorithms.ChaCha20(key, b"\x00" * 16), mode=None).encryptor()
    return np.frombuffer(enc.update(b"\x00" * n), dtype=np.uint8)


@dataclass(frozen=True)
class EncryptedImage:
    """A FLEP ciphertext.

    Attributes:
        shape: the plaintext image's shape (``(H, W)`` or ``(H, W, C)``).
        kcv: 8-byte key check value of the key used.
        nonce: 16 random bytes.
        tag: 16-byte synthetic IV / authentication tag.
        body: uint8 array of ``shape``, the encrypted pixels.
    """

    shape: tuple[int, ...]
    kcv: bytes
    nonce: bytes
    tag: bytes
    body: np.ndarray

    def header(self) -> bytes:
        """The authenticated header ``magic | version | ndim | shape``."""
        return MAGIC + struct.pack(f">BB{len(self.shape)}I", VERSION, len(self.shape), *self.shape)

    def to_bytes(self) -> bytes:
        """Serialise (see the module docstring's wire format)."""
        return self.header() + self.kcv + self.nonce + self.tag + self.body.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> EncryptedImage:
        """Parse bytes made by :meth:`to_bytes`; raises :class:`CiphertextFormatError`."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"ciphertext must be bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) < len(MAGIC) + 2 or data[: len(MAGIC)] != MAGIC:
            raise CiphertextFormatError("not a FLEP ciphertext (bad magic bytes)")
        version, ndim = data[len(MAGIC)], data[len(MAGIC) + 1]
        if version != VERSION:
            raise CiphertextFormatError(f"unsupported FLEP version {version}, expected {VERSION}")
        if ndim not in (2, 3):
            raise CiphertextFormatError(f"FLEP ciphertext with ndim {ndim}, expected 2 or 3")
        pos = len(MAGIC) + 2
        fixed = pos + 4 * ndim + KCV_BYTES + NONCE_BYTES + TAG_BYTES
        if len(data) < fixed:
            raise CiphertextFormatError(f"FLEP ciphertext truncated: {len(data)} bytes")
        shape = struct.unpack(f">{ndim}I", data[pos : pos + 4 * ndim])
        pos += 4 * ndim
        n = int(np.prod(shape))
        if min(shape) < 1 or len(data) != fixed + n:
            raise CiphertextFormatError(
                f"FLEP ciphertext of {len(data)} bytes does not match shape {shape} "
                f"({fixed + n} bytes expected)"
            )
        kcv = data[pos : pos + KCV_BYTES]
        nonce = data[pos + KCV_BYTES : pos + KCV_BYTES + NONCE_BYTES]
        tag = data[pos + KCV_BYTES + NONCE_BYTES : fixed]
        body = np.frombuffer(data, dtype=np.uint8, offset=fixed).reshape(shape).copy()
        return cls(tuple(int(s) for s in shape), kcv, nonce, tag, body)


def _check_image(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {arr.dtype}")
    if arr.ndim not in (2, 3) or min(arr.shape) < 1:
        raise ValueError(f"images must have shape (H, W) or (H, W, C), got {arr.shape}")
    return np.ascontiguousarray(arr)


class _Schedule:
    """The keystream of one image cut into the material of each layer."""

    def __init__(self, image_key: bytes, rows: int, cols: int) -> None:
        n = rows * cols
        # words for the permutation (4n), 4 diffusion passes (4n) and their 4 initial
        # vectors (2 rows + 2 cols), the S-box (256 words = 1024), the whitening (n)
        sizes = [4 * n, n, n, n, n, cols, rows, cols, rows, 1024, n]
        stream = _keystream(image_key, sum(sizes))
        parts, pos = [], 0
        for size in sizes:
            parts.append(stream[pos : pos + size])
            pos += size
        words = parts[0].view(">u4")
        self.perm = np.argsort(words, kind="stable")
        self.pass_keys = [p.reshape(rows, cols) for p in parts[1:5]]
        self.ivs = parts[5:9]
        self.sbox = np.argsort(parts[9].view(">u4"), kind="stable").astype(np.uint8)
        self.sbox_inv = np.argsort(self.sbox).astype(np.uint8)
        self.whitening = parts[10].reshape(rows, cols)


def _chain_rows(x: np.ndarray, key: np.ndarray, iv: np.ndarray, reverse: bool) -> np.ndarray:
    """One diffusion pass down (or up) the rows of ``x`` ``(R, C)`` uint8."""
    out = np.empty_like(x)
    prev = iv.astype(np.uint8)
    order = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    for i in order:
        prev = np.bitwise_xor(x[i], key[i]) + prev  # uint8 arithmetic wraps mod 256
        out[i] = prev
    return out


def _unchain_rows(d: np.ndarray, key: np.ndarray, iv: np.ndarray, reverse: bool) -> np.ndarray:
    """Inverse of :func:`_chain_rows` (vectorised: the chain is known)."""
    prev = np.empty_like(d)
    if reverse:
        prev[:-1], prev[-1] = d[1:], iv
    else:
        prev[1:], prev[0] = d[:-1], iv
    return np.bitwise_xor(d - prev, key)


class FlepCipher:
    """FLEP's three-layer image cipher under one master key (see the module docstring).

    Args:
        key: master key, bytes of length >= 16 (128 bits).
    """

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray):
            raise TypeError(f"key must be bytes, got {type(key).__name__}")
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(
                f"key must hold at least {MIN_KEY_BYTES} bytes ({8 * MIN_KEY_BYTES} bits), "
                f"got {len(key)}"
            )
        key = bytes(key)
        self._k_mac = _hkdf(key, b"flep/mac")
        self._k_stream = _hkdf(key, b"flep/stream")
        self.kcv = _hkdf(key, b"flep/key-check", KCV_BYTES)

    @staticmethod
    def generate_key(n_bytes: int = 32) -> bytes:
        """A fresh random master key from ``os.urandom`` (default 256 bits)."""
        if n_bytes < MIN_KEY_BYTES:
            raise ValueError(f"keys must hold at least {MIN_KEY_BYTES} bytes")
        return os.urandom(n_bytes)

    def _tag(self, header: bytes, nonce: bytes, plaintext: np.ndarray) -> bytes:
        mac = hmac.new(self._k_mac, header + nonce, sha256)
        mac.update(plaintext.tobytes())
        return mac.digest()[:TAG_BYTES]

    def _schedule(self, tag: bytes, shape: tuple[int, ...]) -> _Schedule:
        image_key = _hkdf(self._k_stream, b"flep/image", salt=tag)
        rows = shape[0]
        return _Schedule(image_key, rows, int(np.prod(shape)) // rows)

    def encrypt(self, image: np.ndarray, nonce: bytes | None = None) -> EncryptedImage:
        """Encrypt a uint8 image ``(H, W)`` or ``(H, W, C)``.

        Args:
            image: the plaintext pixels.
            nonce: 16 bytes; None draws a fresh random one (always do so outside tests).

        Returns:
            :class:`EncryptedImage` (``.to_bytes()`` for the wire).
        """
        x = _check_image(image)
        nonce = os.urandom(NONCE_BYTES) if nonce is None else bytes(nonce)
        if len(nonce) != NONCE_BYTES:
            raise ValueError(f"nonce must be {NONCE_BYTES} bytes, got {len(nonce)}")
        shape = tuple(int(s) for s in x.shape)
        proto = EncryptedImage(shape, self.kcv, nonce, b"", x)
        tag = self._tag(proto.header(), nonce, x)
        s = self._schedule(tag, shape)
        rows, cols = s.whitening.shape
        y = x.reshape(-1)[s.perm].reshape(rows, cols)  # layer 1: permutation
        y = _chain_rows(y, s.pass_keys[0], s.ivs[0], reverse=False)  # layer 2: diffusion
        y = _chain_rows(y.T, s.pass_keys[1].T, s.ivs[1], reverse=False).T
        y = _chain_rows(y, s.pass_keys[2], s.ivs[2], reverse=True)
        y = _chain_rows(y.T, s.pass_keys[3].T, s.ivs[3], reverse=True).T
        body = np.bitwise_xor(s.sbox[y], s.whitening)  # layer 3: substitution
        return EncryptedImage(shape, self.kcv, nonce, tag, body.reshape(shape))

    def decrypt(self, ciphertext: EncryptedImage | bytes) -> np.ndarray:
        """Decrypt and authenticate; returns the uint8 image.

        Raises:
            WrongKeyError: the ciphertext was made under another key.
            AuthenticationError: it was tampered with or corrupted.
            CiphertextFormatError: the bytes are not a FLEP ciphertext.
        """
        ct = (
            ciphertext
            if isinstance(ciphertext, EncryptedImage)
            else EncryptedImage.from_bytes(ciphertext)
        )
        if not hmac.compare_digest(ct.kcv, self.kcv):
            raise WrongKeyError(
                "FLEP decryption refused: the ciphertext's key check value does not match "
                "this key (wrong key)"
            )
        body = np.asarray(ct.body)
        if body.dtype != np.uint8 or tuple(body.shape) != tuple(ct.shape):
            raise CiphertextFormatError(f"body {body.dtype} {body.shape} != shape {ct.shape}")
        if len(ct.nonce) != NONCE_BYTES or len(ct.tag) != TAG_BYTES:
            raise CiphertextFormatError("nonce or tag of the wrong length")
        s = self._schedule(ct.tag, ct.shape)
        rows, cols = s.whitening.shape
        y = s.sbox_inv[np.bitwise_xor(body.reshape(rows, cols), s.whitening)]
        y = _unchain_rows(y.T, s.pass_keys[3].T, s.ivs[3], reverse=True).T
        y = _unchain_rows(y, s.pass_keys[2], s.ivs[2], reverse=True)
        y = _unchain_rows(y.T, s.pass_keys[1].T, s.ivs[1], reverse=False).T
        y = _unchain_rows(y, s.pass_keys[0], s.ivs[0], reverse=False)
        x = np.empty(rows * cols, dtype=np.uint8)
        x[s.perm] = y.reshape(-1)
        x = x.reshape(ct.shape)
        if not hmac.compare_digest(self._tag(ct.header(), ct.nonce, x), ct.tag):
            raise AuthenticationError(
                "FLEP decryption refused: authentication tag mismatch (ciphertext tampered "
                "with or corrupted)"
            )
        return x

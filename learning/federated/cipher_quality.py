"""Quality figures of an 8-bit image cipher, with the reference values of an ideal one.

Inputs are uint8 arrays (any shape; colour images as ``(H, W, C)``). Returned fractions are
in [0, 1] (NPCR, UACI), entropy is in bits per byte.

* :func:`entropy` - Shannon entropy of the byte histogram (ideal 8).
* :func:`npcr_uaci` - number of pixels change rate and unified average changing intensity
  between two cipher images (Wu, Noonan and Agaian, "NPCR and UACI randomness tests for
  image encryption", 2011). For two independent uniform cipher images of ``n`` bytes with
  ``F = 255``: ``E[NPCR] = F/(F+1) = 99.6094 %``, ``Var = F/((F+1)^2 n)``;
  ``E[UACI] = (F+2)/(3F+3) = 33.4635 %``,
  ``Var = (F+2)(F^2+2F+3) / (18 (F+1)^2 n F)``.
* :func:`npcr_critical` / :func:`uaci_critical_interval` - the critical values of their
  tests at significance ``alpha``: NPCR passes when above ``mu - z_{1-alpha} sigma``; UACI
  passes when inside ``mu -/+ z_{1-alpha/2} sigma``. Counting every byte of a colour image
  as one of ``n`` pixels (the test's derivation only needs independent uniform bytes).
* :func:`adjacent_correlation` - Pearson correlation of horizontally, vertically and
  diagonally adjacent pixel pairs (within each channel); ideal 0.
* :func:`histogram_chi_square` - chi-square of the byte histogram against uniform, 255
  degrees of freedom, with its p-value (passes at 5 % below 293.25).
* :func:`plaintext_sensitivity` / :func:`key_sensitivity` - NPCR/UACI between the
  encryptions of an image and of the image with one pixel changed, or under a key with
  one bit flipped (same nonce).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import chi2, norm

from phy.rng import RngLike, make_rng

__all__ = [
    "IDEAL",
    "adjacent_correlation",
    "entropy",
    "histogram_chi_square",
    "key_sensitivity",
    "npcr_critical",
    "npcr_uaci",
    "plaintext_sensitivity",
    "uaci_critical_interval",
]

_F = 255.0

#: figures of an ideal 8-bit cipher (fractions for NPCR/UACI)
IDEAL = {"entropy": 8.0, "npcr": _F / (_F + 1), "uaci": (_F + 2) / (3 * _F + 3)}


def _bytes(x: np.ndarray, name: str = "image") -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype != np.uint8 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty uint8 array, got {arr.dtype} {arr.shape}")
    return arr


def entropy(image: np.ndarray) -> float:
    """Shannon entropy of the byte histogram, bits (0..8)."""
    counts = np.bincount(_bytes(image).reshape(-1), minlength=256).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def npcr_uaci(c1: np.ndarray, c2: np.ndarray) -> tuple[float, float]:
    """``(NPCR, UACI)`` between two cipher images of the same shape, as fractions."""
    a, b = _bytes(c1, "c1").astype(np.int16), _bytes(c2, "c2").astype(np.int16)
    if a.shape != b.shape:
        raise ValueError(f"cipher images differ in shape: {a.shape} vs {b.shape}")
    return float(np.mean(a != b)), float(np.mean(np.abs(a - b)) / _F)


def npcr_critical(n: int, alpha: float = 0.05) -> float:
    """Wu et al.'s NPCR critical value (fraction) for ``n`` bytes at significance ``alpha``."""
    if n < 1 or not 0 < alpha < 1:
        raise ValueError("need n >= 1 and 0 < alpha < 1")
    return float((_F - norm.ppf(1 - alpha) * np.sqrt(_F / n)) / (_F + 1))


def uaci_critical_interval(n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wu et al.'s UACI acceptance interval (fractions) for ``n`` bytes at ``alpha``."""
    if n < 1 or not 0 < alpha < 1:
        raise ValueError("need n >= 1 and 0 < alpha < 1")
    mu = IDEAL["uaci"]
    sigma = np.sqrt((_F + 2) * (_F**2 + 2 * _F + 3) / (18 * (_F + 1) ** 2 * n * _F))
    z = norm.ppf(1 - alpha / 2)
    return float(mu - z * sigma), float(mu + z * sigma)


def _as_hwc(image: np.ndarray) -> np.ndarray:
    arr = _bytes(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ValueError(f"need an (H, W) or (H, W, C) image with H, W >= 2, got {arr.shape}")
    return arr.astype(np.float64)


def adjacent_correlation(
    image: np.ndarray, max_pairs: int | None = None, rng: RngLike = None
) -> dict[str, float]:
    """Pearson correlation of adjacent pixel pairs per direction.

    Args:
        image: uint8 ``(H, W)`` or ``(H, W, C)``.
        max_pairs: use a random subset of at most this many pairs per direction (all if None).
        rng: draws that subset.

    Returns:
        ``{"horizontal": r, "vertical": r, "diagonal": r}`` (0 for a constant image).
    """
    x = _as_hwc(image)
    pairs = {
        "horizontal": (x[:, :-1], x[:, 1:]),
        "vertical": (x[:-1, :], x[1:, :]),
        "diagonal": (x[:-1, :-1], x[1:, 1:]),
    }
    gen = make_rng(rng)
    out = {}
    for name, (a, b) in pairs.items():
        a, b = a.reshape(-1), b.reshape(-1)
        if max_pairs is not None and a.size > max_pairs:
            pick = gen.choice(a.size, size=int(max_pairs), replace=False)
            a, b = a[pick], b[pick]
        if a.std() == 0 or b.std() == 0:
            out[name] = 0.0
        else:
            out[name] = float(np.corrcoef(a, b)[0, 1])
    return out


def histogram_chi_square(image: np.ndarray) -> tuple[float, float]:
    """``(chi2, p_value)`` of the byte histogram against uniform (255 degrees of freedom)."""
    counts = np.bincount(_bytes(image).reshape(-1), minlength=256).astype(np.float64)
    expected = counts.sum() / 256.0
    stat = float(((counts - expected) ** 2 / expected).sum())
    return stat, float(chi2.sf(stat, df=255))


def plaintext_sensitivity(
    encrypt: Callable[[np.ndarray], np.ndarray], image: np.ndarray, rng: RngLike = None
) -> tuple[float, float]:
    """NPCR/UACI between ``encrypt(image)`` and ``encrypt(image')`` where ``image'`` differs
    in one random byte (by +1 mod 256). ``encrypt`` returns the cipher image (uint8)."""
    x = _bytes(image)
    gen = make_rng(rng)
    y = x.copy().reshape(-1)
    j = int(gen.integers(y.size))
    y[j] = np.uint8((int(y[j]) + 1) % 256)
    return npcr_uaci(encrypt(x), encrypt(y.reshape(x.shape)))


def key_sensitivity(
    encrypt_with_key: Callable[[bytes, np.ndarray], np.ndarray],
    key: bytes,
    image: np.ndarray,
    bit: int = 0,
) -> tuple[float, float]:
    """NPCR/UACI between the encryptions of ``image`` under ``key`` and under ``key`` with
    bit ``bit`` flipped; ``encrypt_with_key(key, image)`` must be deterministic in the key
    (fixed nonce)."""
    if not 0 <= bit < 8 * len(key):
        raise ValueError(f"bit must be in [0, {8 * len(key)}), got {bit}")
    flipped = bytearray(key)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return npcr_uaci(encrypt_with_key(key, image), encrypt_with_key(bytes(flipped), image))

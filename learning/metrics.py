"""Metrics for utility and privacy: image similarity (PSNR, SSIM), task accuracy,
multiset label accuracy for groups, and chance levels.

Images are float arrays in ``[0, 1]`` of shape ``(N, C, H, W)`` (or ``(N, H, W)``);
labels are integer arrays. Every function validates its input and raises
``ValueError`` on wrong shapes, NaN/inf or out-of-range values.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from skimage.metrics import structural_similarity

from phy.rng import RngLike, make_rng


def _images(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W) or (N, H, W), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _images(x, "x"), _images(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"image batches differ in shape: {a.shape} vs {b.shape}")
    return a, b


def psnr(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio per image, dB.

    Args:
        x, y: image batches ``(N, C, H, W)`` or ``(N, H, W)``, same shape.
        data_range: peak value (1.0 for images in [0, 1]).
    Returns:
        ``(N,)`` float array; identical images give ``inf``.
    """
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    a, b = _pair(x, y)
    mse = np.mean((a - b) ** 2, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / mse)


def ssim(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Structural similarity per image (scikit-image ``structural_similarity``).

    The Gaussian-free 7x7 window of scikit-image is shrunk to the largest odd size that
    fits small images (at least 3x3).

    Args:
        x, y: image batches ``(N, C, H, W)`` or ``(N, H, W)``, same shape, ``H, W >= 3``.
        data_range: peak value (1.0 for images in [0, 1]).
    Returns:
        ``(N,)`` float array in [-1, 1].
    """
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    a, b = _pair(x, y)
    side = min(a.shape[2], a.shape[3])
    if side < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {a.shape[2:]}")
    win = min(7, side if side % 2 else side - 1)
    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        out[i] = structural_similarity(
            a[i], b[i], data_range=data_range, channel_axis=0, win_size=win
        )
    return out


def _labels(y: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if np.any(arr < 0):
        raise ValueError(f"{name} contains negative labels")
    return arr.astype(np.int64)


def task_accuracy(predicted: np.ndarray, true: np.ndarray) -> float:
    """Fraction of ``predicted`` labels equal to ``true`` (same shape, any rank), in [0, 1]."""
    p, t = _labels(predicted, "predicted"), _labels(true, "true")
    if p.shape != t.shape:
        raise ValueError(f"predicted {p.shape} and true {t.shape} labels differ in shape")
    if p.size == 0:
        raise ValueError("cannot score an empty label array")
    return float(np.mean(p == t))


def _groups(predicted: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, t = _labels(predicted, "predicted"), _labels(true, "true")
    if p.ndim != 2 or p.shape != t.shape or p.shape[0] == 0:
        raise ValueError(
            f"group labels must share a shape (B, K) with B > 0, got {p.shape}, {t.shape}"
        )
    return p, t


def multiset_overlap(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per group, the number of labels predicted and true have in common as multisets.

    This equals the number of correct participants under the best assignment of
    predictions to participants.

    Args:
        predicted, true: ``(B, K)`` integer labels, one row per group.
    Returns:
        ``(B,)`` int array in ``0..K``.
    """
    p, t = _groups(predicted, true)
    return np.array(
        [
            sum((Counter(pr.tolist()) & Counter(tr.tolist())).values())
            for pr, tr in zip(p, t, strict=True)
        ],
        dtype=np.int64,
    )


def per_user_accuracy(predicted: np.ndarray, true: np.ndarray) -> float:
    """Fraction of participants whose label is recovered, under the best assignment of
    predicted labels to participants (multiset overlap / K), in [0, 1]."""
    p, _ = _groups(predicted, true)
    return float(np.mean(multiset_overlap(predicted, true)) / p.shape[1])


def exact_set_accuracy(predicted: np.ndarray, true: np.ndarray) -> float:
    """Fraction of groups whose whole label multiset is recovered exactly, in [0, 1]."""
    p, t = _groups(predicted, true)
    return float(np.mean(np.all(np.sort(p, axis=1) == np.sort(t, axis=1), axis=1)))


def uniform_chance(n_classes: int) -> float:
    """Accuracy of a uniform random guess over ``n_classes`` classes: ``1 / n_classes``."""
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    return 1.0 / n_classes


def prior_chance(labels: np.ndarray, n_classes: int) -> float:
    """Accuracy of guessing a label drawn from the empirical prior of ``labels``:
    ``sum_c p_c^2`` (equals ``1 / n_classes`` for balanced classes)."""
    y = _labels(labels, "labels").ravel()
    if y.size == 0 or np.any(y >= n_classes):
        raise ValueError(f"labels must be non-empty and < n_classes={n_classes}")
    p = np.bincount(y, minlength=n_classes) / y.size
    return float(np.sum(p**2))


def random_group_guess(
    reference_groups: np.ndarray, n_guesses: int, rng: RngLike = None
) -> np.ndarray:
    """Blind guesses of group label multisets: rows drawn at random from
    ``reference_groups`` (``(M, K)`` labels of groups formed the same way, e.g. on the
    attacker's auxiliary data), so the guess knows the grouping scheme but not the
    observation. Scoring these guesses gives the chance level of a group attack.

    Returns:
        ``(n_guesses, K)`` int64 labels.
    """
    ref = _labels(reference_groups, "reference_groups")
    if ref.ndim != 2 or ref.shape[0] == 0:
        raise ValueError(f"reference_groups must have shape (M, K), M > 0, got {ref.shape}")
    if n_guesses < 1:
        raise ValueError(f"n_guesses must be >= 1, got {n_guesses}")
    gen = make_rng(rng)
    return ref[gen.integers(0, ref.shape[0], size=n_guesses)]

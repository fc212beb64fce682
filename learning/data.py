"""Data sets and per-user splits.

:class:`Dataset` holds images ``x`` (float32, ``(N, C, H, W)``, values in [0, 1]) and
labels ``y`` (int64, ``(N,)``). :func:`load_dataset` returns a ``(train, test)`` pair for a
name registered in :data:`DATASETS`:

* ``"digits"`` - scikit-learn's bundled 8x8 handwritten digits (no download), pixel/16,
  split into train/test by a seeded stratified split;
* ``"mnist"``, ``"fashion_mnist"`` - IDX files in ``root`` (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
  each optionally ``.gz``);
* ``"cifar10"`` - the python pickle batches ``data_batch_1`` .. ``data_batch_5`` and
  ``test_batch`` in ``root`` (or ``root/cifar-10-batches-py``).

Missing files raise :class:`FileNotFoundError`, corrupt ones :class:`DatasetFileError`;
both messages name the file and what was expected.

:func:`split_users` partitions a training set among users (IID, Dirichlet label skew, or
k-labels-per-user shards) after holding out a disjoint, stratified auxiliary split (the
data an attacker may use).
"""

from __future__ import annotations

import gzip
import os
import pickle
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from phy.registry import Registry
from phy.rng import RngLike, make_rng

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetFileError",
    "UserSplit",
    "load_dataset",
    "split_users",
]

#: environment variable naming the default data directory for file-based data sets
DATA_ROOT_ENV = "AIRMIX_DATA_ROOT"


class DatasetFileError(ValueError):
    """A data file exists but is corrupt, truncated or inconsistent with its partner."""


@dataclass
class Dataset:
    """Labelled images.

    Attributes:
        x: float32 tensor ``(N, C, H, W)``, values in [0, 1].
        y: int64 tensor ``(N,)``, values in ``[0, n_classes)``.
        n_classes: number of classes.
        name: data set name (e.g. ``"digits"``).
    """

    x: torch.Tensor
    y: torch.Tensor
    n_classes: int
    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.x, torch.Tensor) or not isinstance(self.y, torch.Tensor):
            raise TypeError("x and y must be torch tensors")
        if self.x.ndim != 4:
            raise ValueError(f"x must have shape (N, C, H, W), got {tuple(self.x.shape)}")
        if self.x.dtype != torch.float32:
            raise TypeError(f"x must be float32, got {self.x.dtype}")
        if self.y.ndim != 1 or self.y.dtype != torch.int64:
            raise ValueError(f"y must be an int64 vector, got {self.y.dtype} {tuple(self.y.shape)}")
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} samples but y has {self.y.shape[0]}")
        if self.n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {self.n_classes}")
        if self.x.numel() and not bool(torch.isfinite(self.x).all()):
            raise ValueError("x contains NaN or inf")
        if self.x.numel() and (float(self.x.min()) < 0.0 or float(self.x.max()) > 1.0):
            raise ValueError("x values must lie in [0, 1]")
        if self.y.numel() and (int(self.y.min()) < 0 or int(self.y.max()) >= self.n_classes):
            raise ValueError(f"labels must lie in [0, {self.n_classes})")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> Dataset:
        """The samples at ``indices`` (any integer index array), as a new Dataset."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64).reshape(-1))
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise IndexError(f"indices out of range for a data set of {len(self)} samples")
        return Dataset(self.x[idx], self.y[idx], self.n_classes, self.name)


def downsample(data: Dataset, factor: int) -> Dataset:
    """``data`` with images average-pooled over ``factor`` x ``factor`` pixels (a side not
    divisible by ``factor`` loses its last rows or columns): ``(N, C, H // factor,
    W // factor)``, values still in [0, 1]. ``factor`` 1 returns ``data`` itself."""
    if isinstance(factor, bool) or int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
    if factor == 1:
        return data
    _, h, w = data.input_shape
    if h < factor or w < factor:
        raise ValueError(f"factor {factor} exceeds the {h}x{w} images")
    pooled = torch.nn.functional.avg_pool2d(data.x, int(factor)).clamp(0.0, 1.0)
    return Dataset(pooled.contiguous(), data.y, data.n_classes, data.name)


def _make(x_uint8_or_float: np.ndarray, y: np.ndarray, scale: float, n_classes: int, name: str):
    x = torch.from_numpy(np.ascontiguousarray(x_uint8_or_float, dtype=np.float32) / scale)
    return Dataset(x, torch.from_numpy(np.asarray(y, dtype=np.int64)), n_classes, name)


# --------------------------------------------------------------------------- digits


def load_digits(
    root: str | os.PathLike | None = None, test_fraction: float = 0.25, rng: RngLike = 0
) -> tuple[Dataset, Dataset]:
    """scikit-learn's 8x8 digits (1797 images, 10 classes): pixel/16, shape (N, 1, 8, 8).

    ``root`` is ignored (the data are bundled). The train/test split is stratified and
    seeded by ``rng``; ``test_fraction`` in (0, 1).
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    bunch = sk_load_digits()
    images = bunch.images[:, None, :, :]
    labels = bunch.target
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)),
        test_size=test_fraction,
        stratify=labels,
        random_state=int(make_rng(rng).integers(0, 2**31 - 1)),
    )
    return (
        _make(images[idx_train], labels[idx_train], 16.0, 10, "digits"),
        _make(images[idx_test], labels[idx_test], 16.0, 10, "digits"),
    )


# --------------------------------------------------------------------------- IDX files

_IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


def _resolve_root(root: str | os.PathLike | None, name: str) -> Path:
    if root is None:
        env = os.environ.get(DATA_ROOT_ENV)
        if not env:
            raise FileNotFoundError(
                f"data set {name!r} needs a data directory: pass root=... or set ${DATA_ROOT_ENV}"
            )
        root = Path(env) / name
    path = Path(root)
    if not path.is_dir():
        raise FileNotFoundError(f"data directory for {name!r} not found: {path}")
    return path


def _find_file(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"missing data file {directory / stem}[.gz]")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetFileError(f"{path}: cannot read gzip data ({exc})") from exc


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read one IDX file (uint8 payload) into an array of its declared dimensions."""
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DatasetFileError(f"{path}: file too short for an IDX header ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DatasetFileError(
            f"{path}: bad IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x}"
        )
    n_dims = expected_magic & 0xFF
    header = 4 + 4 * n_dims
    if len(raw) < header:
        raise DatasetFileError(f"{path}: truncated IDX header, expected {header} bytes")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims))
    expected = int(np.prod(dims))
    got = len(raw) - header
    if got != expected:
        raise DatasetFileError(
            f"{path}: IDX dims {dims} need {expected} data bytes, file holds {got} "
            f"({'truncated' if got < expected else 'trailing data'})"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_idx_pair(directory: Path, prefix: str, name: str) -> Dataset:
    img_path = _find_file(directory, f"{prefix}-images-idx3-ubyte")
    lbl_path = _find_file(directory, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(img_path, _IDX_IMAGES_MAGIC)
    labels = read_idx(lbl_path, _IDX_LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DatasetFileError(
            f"{img_path} holds {images.shape[0]} images but {lbl_path} holds "
            f"{labels.shape[0]} labels (counts must match)"
        )
    if labels.size and int(labels.max()) >= 10:
        raise DatasetFileError(f"{lbl_path}: label {int(labels.max())} out of range 0..9")
    return _make(images[:, None, :, :], labels, 255.0, 10, name)


def _idx_loader(name: str) -> Callable[..., tuple[Dataset, Dataset]]:
    def load(root: str | os.PathLike | None = None) -> tuple[Dataset, Dataset]:
        directory = _resolve_root(root, name)
        return _load_idx_pair(directory, "train", name), _load_idx_pair(directory, "t10k", name)

    load.__doc__ = f"{name} from IDX files in ``root`` (see module docstring): (train, test)."
    return load


# --------------------------------------------------------------------------- CIFAR-10


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise DatasetFileError(f"{path}: not a readable CIFAR-10 pickle batch ({exc})") from exc
    if not isinstance(batch, dict):
        raise DatasetFileError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    keys = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    missing = [k for k in ("data", "labels") if k not in keys]
    if missing:
        raise DatasetFileError(
            f"{path}: pickle lacks keys {missing}; expected b'data' and b'labels'"
        )
    data = np.asarray(keys["data"])
    labels = np.asarray(keys["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
        raise DatasetFileError(
            f"{path}: 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise DatasetFileError(
            f"{path}: {data.shape[0]} images but {labels.shape[0]} labels (counts must match)"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= 10):
        raise DatasetFileError(f"{path}: labels must lie in 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(root: str | os.PathLike | None = None) -> tuple[Dataset, Dataset]:
    """CIFAR-10 from its python pickle batches: (train, test), x of shape (N, 3, 32, 32)."""
    directory = _resolve_root(root, "cifar10")
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"

    def batch(name: str) -> tuple[np.ndarray, np.ndarray]:
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f"missing CIFAR-10 batch file {path}")
        return _load_cifar_batch(path)

    parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = batch("test_batch")
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    return (
        _make(x_train, y_train, 255.0, 10, "cifar10"),
        _make(x_test, y_test, 255.0, 10, "cifar10"),
    )


#: name -> loader(root=None, **kwargs) -> (train, test)
DATASETS: Registry[Callable[..., tuple[Dataset, Dataset]]] = Registry(
    "data set",
    {
        "digits": load_digits,
        "mnist": _idx_loader("mnist"),
        "fashion_mnist": _idx_loader("fashion_mnist"),
        "cifar10": load_cifar10,
    },
)


def load_dataset(
    name: str, root: str | os.PathLike | None = None, **kwargs: Any
) -> tuple[Dataset, Dataset]:
    """Load the data set registered as ``name``: returns ``(train, test)``.

    ``root`` is the directory holding the files (file-based sets; default
    ``$AIRMIX_DATA_ROOT/<name>``); ``kwargs`` go to the loader (e.g. digits' ``rng``).
    """
    return DATASETS[name](root, **kwargs)


# --------------------------------------------------------------------------- user splits


@dataclass
class UserSplit:
    """Indices into the training set.

    Attributes:
        users: one int64 index array per user (pairwise disjoint).
        auxiliary: int64 index array disjoint from every user's (the attacker's data).
    """

    users: list[np.ndarray]
    auxiliary: np.ndarray


SPLIT_SCHEMES = ("iid", "dirichlet", "shards")


def split_users(
    train: Dataset,
    n_users: int,
    scheme: str = "iid",
    alpha: float = 1.0,
    labels_per_user: int = 2,
    auxiliary_fraction: float = 0.2,
    rng: RngLike = None,
) -> UserSplit:
    """Partition ``train`` among ``n_users`` after holding out an auxiliary split.

    Args:
        train: the training set.
        n_users: number of users, >= 1.
        scheme: ``"iid"`` (uniform random equal shares), ``"dirichlet"`` (per class,
            shares drawn from Dirichlet(``alpha``); small alpha = strong label skew;
            redrawn until every user holds at least one sample), or ``"shards"`` (each
            user holds exactly ``labels_per_user`` distinct labels, assigned cyclically
            over a random label order; each class is split evenly among its holders).
        alpha: Dirichlet concentration, > 0.
        labels_per_user: labels per user for ``"shards"``, in ``[1, n_classes]``.
        auxiliary_fraction: fraction of each class held out as the auxiliary split, [0, 1).
        rng: seed or Generator (see :func:`phy.rng.make_rng`).

    Returns:
        :class:`UserSplit` with sorted int64 index arrays.
    """
    if scheme not in SPLIT_SCHEMES:
        raise ValueError(f"unknown split scheme {scheme!r}; allowed: {SPLIT_SCHEMES}")
    if isinstance(n_users, bool) or not isinstance(n_users, int | np.integer) or n_users < 1:
        raise ValueError(f"n_users must be a positive int, got {n_users!r}")
    if not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be finite and > 0, got {alpha}")
    if not 0.0 <= auxiliary_fraction < 1.0:
        raise ValueError(f"auxiliary_fraction must be in [0, 1), got {auxiliary_fraction}")
    n_classes = train.n_classes
    if scheme == "shards" and not 1 <= labels_per_user <= n_classes:
        raise ValueError(f"labels_per_user must be in [1, {n_classes}], got {labels_per_user}")
    gen = make_rng(rng)
    labels = train.y.numpy()

    aux_parts, pool_by_class = [], []
    for c in range(n_classes):
        idx = gen.permutation(np.flatnonzero(labels == c))
        n_aux = int(round(auxiliary_fraction * len(idx)))
        aux_parts.append(idx[:n_aux])
        pool_by_class.append(idx[n_aux:])
    auxiliary = np.sort(np.concatenate(aux_parts)).astype(np.int64)
    pool = np.concatenate(pool_by_class)
    if len(pool) < n_users:
        raise ValueError(f"{len(pool)} samples left after the auxiliary split for {n_users} users")

    if scheme == "iid":
        users = np.array_split(gen.permutation(pool), n_users)
    elif scheme == "dirichlet":
        users = _dirichlet_split(pool_by_class, n_users, alpha, gen)
    else:
        users = _shard_split(pool_by_class, n_users, labels_per_user, gen)
    return UserSplit([np.sort(u).astype(np.int64) for u in users], auxiliary)


def _dirichlet_split(
    pool_by_class: list[np.ndarray], n_users: int, alpha: float, gen: np.random.Generator
) -> list[np.ndarray]:
    for _ in range(1000):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_users)]
        for idx in pool_by_class:
            shares = gen.dirichlet(np.full(n_users, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
            for u, chunk in enumerate(np.split(idx, cuts)):
                parts[u].append(chunk)
        users = [np.concatenate(p) for p in parts]
        if min(len(u) for u in users) > 0:
            return users
    raise ValueError(
        f"Dirichlet(alpha={alpha}) split left a user empty 1000 times; raise alpha or lower n_users"
    )


def _shard_split(
    pool_by_class: list[np.ndarray], n_users: int, k: int, gen: np.random.Generator
) -> list[np.ndarray]:
    n_classes = len(pool_by_class)
    order = gen.permutation(n_classes)
    user_labels = [order[(u * k + np.arange(k)) % n_classes] for u in range(n_users)]
    holders: dict[int, list[int]] = {c: [] for c in range(n_classes)}
    for u, labs in enumerate(user_labels):
        for c in labs:
            holders[int(c)].append(u)
    parts: list[list[np.ndarray]] = [[] for _ in range(n_users)]
    for c, users_of_c in holders.items():
        if users_of_c:
            for u, chunk in zip(
                users_of_c, np.array_split(pool_by_class[c], len(users_of_c)), strict=True
            ):
                parts[u].append(chunk)
    users = [np.concatenate(p) if p else np.empty(0, dtype=np.int64) for p in parts]
    if min(len(u) for u in users) == 0:
        raise ValueError("shard split left a user empty: too few samples per class")
    return users

"""Loaders (good and corrupt files) and per-user splits."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from learning.data import (
    DATASETS,
    Dataset,
    DatasetFileError,
    downsample,
    load_dataset,
    split_users,
)


def write_idx(path, array: np.ndarray, magic: int | None = None, gz: bool = False, cut: int = 0):
    """Write ``array`` (uint8) as an IDX file; ``cut`` drops that many trailing bytes."""
    magic = (0x0800 | array.ndim) if magic is None else magic
    raw = struct.pack(">I", magic) + b"".join(struct.pack(">I", s) for s in array.shape)
    raw += array.astype(np.uint8).tobytes()
    raw = raw[: len(raw) - cut]
    if gz:
        raw = gzip.compress(raw)
    path.write_bytes(raw)


def make_idx_dir(root, n_train=6, n_test=4, gz=False, rng=0):
    gen = np.random.default_rng(rng)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            root / f"{prefix}-images-idx3-ubyte{suffix}", gen.integers(0, 256, (n, 5, 4)), gz=gz
        )
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", gen.integers(0, 10, n), gz=gz)
    return root


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_loader_reads_good_files(tmp_path, gz, name):
    make_idx_dir(tmp_path, gz=gz)
    train, test = load_dataset(name, tmp_path)
    assert (len(train), len(test)) == (6, 4)
    assert train.input_shape == (1, 5, 4) and train.x.dtype == torch.float32
    assert train.name == name and train.n_classes == 10
    raw = np.frombuffer(
        (gzip.decompress if gz else bytes)(
            (tmp_path / f"train-images-idx3-ubyte{'.gz' if gz else ''}").read_bytes()
        ),
        dtype=np.uint8,
        offset=16,
    ).reshape(6, 5, 4)
    np.testing.assert_allclose(train.x[:, 0].numpy(), raw / 255.0, rtol=1e-6)


def test_idx_bad_magic(tmp_path):
    make_idx_dir(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((6, 5, 4)), magic=0x0801)
    with pytest.raises(DatasetFileError, match=r"train-images-idx3-ubyte.*magic.*0x00000803"):
        load_dataset("mnist", tmp_path)


def test_idx_truncated_data(tmp_path):
    make_idx_dir(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 5, 4)), cut=3)
    with pytest.raises(DatasetFileError, match=r"t10k-images-idx3-ubyte.*truncated"):
        load_dataset("mnist", tmp_path)


def test_idx_truncated_gzip(tmp_path):
    make_idx_dir(tmp_path, gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-6])
    with pytest.raises(DatasetFileError, match="train-labels-idx1-ubyte.gz"):
        load_dataset("fashion_mnist", tmp_path)


def test_idx_count_mismatch(tmp_path):
    make_idx_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5))
    with pytest.raises(DatasetFileError, match=r"6 images.*5 labels"):
        load_dataset("mnist", tmp_path)


def test_idx_missing_file(tmp_path):
    make_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", tmp_path)


def write_cifar(root, n=3, drop_key=None, bad_shape=False, rng=0):
    gen = np.random.default_rng(rng)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": gen.integers(0, 256, (n, 3072 if not bad_shape else 1000), dtype=np.uint8),
            b"labels": gen.integers(0, 10, n).tolist(),
            b"batch_label": name.encode(),
        }
        if drop_key is not None:
            batch.pop(drop_key)
        with open(root / name, "wb") as fh:
            pickle.dump(batch, fh)


def test_cifar_good(tmp_path):
    write_cifar(tmp_path)
    train, test = load_dataset("cifar10", tmp_path)
    assert len(train) == 15 and len(test) == 3
    assert train.input_shape == (3, 32, 32)
    with open(tmp_path / "test_batch", "rb") as fh:
        raw = pickle.load(fh)
    np.testing.assert_allclose(test.x.numpy().reshape(3, -1), raw[b"data"] / 255.0, rtol=1e-6)
    assert test.y.tolist() == raw[b"labels"]


def test_cifar_missing_key_and_bad_shape_and_missing_file(tmp_path):
    write_cifar(tmp_path, drop_key=b"labels")
    with pytest.raises(DatasetFileError, match=r"data_batch_1.*labels"):
        load_dataset("cifar10", tmp_path)
    write_cifar(tmp_path, bad_shape=True)
    with pytest.raises(DatasetFileError, match=r"data_batch_1.*3072"):
        load_dataset("cifar10", tmp_path)
    write_cifar(tmp_path)
    (tmp_path / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_4"):
        load_dataset("cifar10", tmp_path)
    (tmp_path / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(DatasetFileError, match="data_batch_1"):
        load_dataset("cifar10", tmp_path)


def test_digits_split_is_stratified_and_seeded():
    train, test = load_dataset("digits")
    assert len(train) + len(test) == 1797 and set(DATASETS) >= {"digits", "mnist", "cifar10"}
    assert train.input_shape == (1, 8, 8) and float(train.x.max()) == 1.0
    counts = np.bincount(test.y.numpy(), minlength=10) / len(test)
    assert np.all(np.abs(counts - 0.1) < 0.02)
    again, _ = load_dataset("digits")
    other, _ = load_dataset("digits", rng=5)
    assert torch.equal(train.y, again.y) and not torch.equal(train.y, other.y)


def test_dataset_validation_and_subset():
    x = torch.rand(5, 1, 2, 2)
    y = torch.arange(5) % 3
    ds = Dataset(x, y, 3, "toy")
    sub = ds.subset([4, 0])
    assert len(sub) == 2 and torch.equal(sub.x[0], x[4])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Dataset(x * 2 + 0.1, y, 3, "toy")
    with pytest.raises(ValueError, match="NaN"):
        Dataset(torch.full((5, 1, 2, 2), float("nan")), y, 3, "toy")
    with pytest.raises(ValueError, match="samples"):
        Dataset(x, y[:4], 3, "toy")
    with pytest.raises(IndexError):
        ds.subset([5])


@pytest.fixture(scope="module")
def digits_train():
    return load_dataset("digits")[0]


def _check_partition(split, n):
    everything = np.concatenate(split.users + [split.auxiliary])
    assert len(np.unique(everything)) == len(everything)  # pairwise disjoint
    assert everything.min() >= 0 and everything.max() < n


def test_iid_split_disjoint_and_balanced(digits_train):
    split = split_users(digits_train, 7, "iid", auxiliary_fraction=0.2, rng=3)
    _check_partition(split, len(digits_train))
    sizes = [len(u) for u in split.users]
    assert max(sizes) - min(sizes) <= 1
    assert len(split.auxiliary) + sum(sizes) == len(digits_train)
    aux_counts = np.bincount(digits_train.y.numpy()[split.auxiliary], minlength=10)
    assert abs(len(split.auxiliary) / len(digits_train) - 0.2) < 0.01 and aux_counts.min() > 0


def _mean_label_entropy(train, split):
    ents = []
    for u in split.users:
        p = np.bincount(train.y.numpy()[u], minlength=10) / len(u)
        p = p[p > 0]
        ents.append(-(p * np.log(p)).sum())
    return float(np.mean(ents))


def test_dirichlet_split_skews_labels(digits_train):
    iid = split_users(digits_train, 10, "iid", rng=1)
    skew = split_users(digits_train, 10, "dirichlet", alpha=0.1, rng=1)
    _check_partition(skew, len(digits_train))
    assert all(len(u) > 0 for u in skew.users)
    assert _mean_label_entropy(digits_train, skew) < 0.6 * _mean_label_entropy(digits_train, iid)


def test_shard_split_exact_labels_per_user(digits_train):
    split = split_users(digits_train, 10, "shards", labels_per_user=2, rng=2)
    _check_partition(split, len(digits_train))
    for u in split.users:
        assert len(np.unique(digits_train.y.numpy()[u])) == 2


def test_splits_are_deterministic(digits_train):
    for scheme in ("iid", "dirichlet", "shards"):
        a = split_users(digits_train, 5, scheme, rng=11)
        b = split_users(digits_train, 5, scheme, rng=11)
        c = split_users(digits_train, 5, scheme, rng=12)
        assert all(np.array_equal(x, y) for x, y in zip(a.users, b.users, strict=True))
        assert np.array_equal(a.auxiliary, b.auxiliary)
        assert not all(np.array_equal(x, y) for x, y in zip(a.users, c.users, strict=True))


def test_split_rejects_bad_arguments(digits_train):
    with pytest.raises(ValueError, match="scheme"):
        split_users(digits_train, 3, "round_robin")
    with pytest.raises(ValueError, match="n_users"):
        split_users(digits_train, 0)
    with pytest.raises(ValueError, match="alpha"):
        split_users(digits_train, 3, "dirichlet", alpha=-1.0)
    with pytest.raises(ValueError, match="auxiliary_fraction"):
        split_users(digits_train, 3, auxiliary_fraction=1.0)
    with pytest.raises(ValueError, match="labels_per_user"):
        split_users(digits_train, 3, "shards", labels_per_user=11)


def test_downsample_average_pools_and_keeps_labels():
    x = torch.rand(5, 1, 28, 28)
    data = Dataset(x, torch.arange(5) % 3, 3, "images")
    pooled = downsample(data, 4)
    assert pooled.input_shape == (1, 7, 7) and torch.equal(pooled.y, data.y)
    assert float(pooled.x[2, 0, 1, 3]) == pytest.approx(float(x[2, 0, 4:8, 12:16].mean()), abs=1e-6)
    assert downsample(data, 1) is data and downsample(data, 3).input_shape == (1, 9, 9)
    for bad in (0, 2.5, True, 29):
        with pytest.raises(ValueError):
            downsample(data, bad)

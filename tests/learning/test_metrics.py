"""Metrics: known PSNR values, SSIM against scikit-image, multiset accuracies, chance."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from learning.metrics import (
    exact_set_accuracy,
    multiset_overlap,
    per_user_accuracy,
    prior_chance,
    psnr,
    random_group_guess,
    ssim,
    task_accuracy,
    uniform_chance,
)
from phy.rng import make_rng


def test_psnr_known_values():
    x = np.full((2, 1, 4, 4), 0.5)
    y = x.copy()
    y[0] += 0.1  # MSE 0.01 -> 20 dB
    out = psnr(x, y)
    assert out[0] == pytest.approx(20.0)
    assert np.isinf(out[1])
    assert psnr(x[:, 0], y[:, 0])[0] == pytest.approx(20.0)  # (N, H, W) accepted
    with pytest.raises(ValueError, match="shape"):
        psnr(x, y[:, :, :3])
    with pytest.raises(ValueError, match="NaN"):
        psnr(x, np.full_like(x, np.nan))
    with pytest.raises(ValueError, match="data_range"):
        psnr(x, y, data_range=-1)


def test_ssim_matches_scikit_image_and_small_images():
    gen = make_rng(0)
    x = gen.random((3, 2, 8, 8))
    y = np.clip(x + gen.normal(0, 0.1, x.shape), 0, 1)
    out = ssim(x, y)
    for i in range(3):
        ref = structural_similarity(x[i], y[i], data_range=1.0, channel_axis=0)
        assert out[i] == pytest.approx(ref)
    assert np.allclose(ssim(x, x), 1.0)
    assert ssim(x[:, :, :6, :6], y[:, :, :6, :6]).shape == (3,)  # window shrinks to 5
    with pytest.raises(ValueError, match="3x3"):
        ssim(x[:, :, :2, :2], y[:, :, :2, :2])


def test_task_accuracy_and_validation():
    assert task_accuracy(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4])) == 0.75
    with pytest.raises(ValueError, match="shape"):
        task_accuracy(np.array([1, 2]), np.array([1]))
    with pytest.raises(ValueError, match="integer"):
        task_accuracy(np.array([1.0]), np.array([1]))
    with pytest.raises(ValueError, match="negative"):
        task_accuracy(np.array([-1]), np.array([1]))


def test_multiset_accuracies():
    pred = np.array([[1, 1, 2], [0, 1, 2], [3, 3, 3]])
    true = np.array([[2, 1, 1], [2, 2, 2], [0, 1, 2]])
    np.testing.assert_array_equal(multiset_overlap(pred, true), [3, 1, 0])
    assert per_user_accuracy(pred, true) == pytest.approx(4 / 9)
    assert exact_set_accuracy(pred, true) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="shape"):
        per_user_accuracy(pred[:, :2], true)


def test_chance_levels():
    assert uniform_chance(10) == 0.1
    assert prior_chance(np.array([0, 1, 0, 1]), 2) == pytest.approx(0.5)
    assert prior_chance(np.array([0, 0, 0, 1]), 2) == pytest.approx(0.625)
    with pytest.raises(ValueError):
        uniform_chance(0)
    with pytest.raises(ValueError):
        prior_chance(np.array([3]), 2)
    # random guesses drawn from reference groups: per-user chance of uniform labels
    gen = make_rng(0)
    ref = gen.integers(0, 10, size=(5000, 1))
    guess = random_group_guess(ref, 5000, rng=1)
    assert guess.shape == (5000, 1)
    assert per_user_accuracy(guess, gen.integers(0, 10, size=(5000, 1))) == pytest.approx(
        0.1, abs=0.015
    )
    with pytest.raises(ValueError):
        random_group_guess(ref, 0)

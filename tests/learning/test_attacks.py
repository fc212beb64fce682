"""Attacks on tiny problems: interface validation, registry, matching/decoding helpers,
and that each attack succeeds where information leaks and sits at chance where none does."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from learning.attacks import (
    ATTACKS,
    GroupTruth,
    LabelInference,
    ModelInversion,
    Observation,
    get_attack,
)
from learning.attacks.inversion import _perm_invariant_mse, match_to_participants
from learning.attacks.label_inference import counts_to_labels, decode_counts, label_counts
from phy.rng import make_rng

N_CLASSES = 4
SHAPE = (1, 6, 6)


def tiny_images(n: int, rng: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy 6x6 images of 4 classes with fixed random prototypes (seed 123) and
    per-sample noise drawn from ``rng``. Returns images (n, 1, 6, 6) in [0, 1], labels (n,)."""
    protos = make_rng(123).uniform(0.0, 1.0, size=(N_CLASSES, *SHAPE)) > 0.5
    gen = make_rng(rng)
    y = np.arange(n) % N_CLASSES
    gen.shuffle(y)
    x = np.clip(0.15 + 0.7 * protos[y] + gen.normal(0, 0.12, size=(n, *SHAPE)), 0, 1)
    return x.astype(np.float32), y.astype(np.int64)


def groups(x: np.ndarray, y: np.ndarray, k: int, b: int, rng: int, with_label: bool = True):
    """Ideal equal-weight mixtures of ``k`` random samples of ``x``: (Observation, GroupTruth)."""
    gen = make_rng(rng)
    idx = np.stack([gen.permutation(len(y))[:k] for _ in range(b)], axis=1)  # (K, B)
    truth = GroupTruth(x[idx], y[idx], N_CLASSES)
    payload = truth.inputs.reshape(k, b, -1).mean(0)
    mixed = np.eye(N_CLASSES)[truth.labels].mean(0) if with_label else None
    return Observation(payload, group_size=k, mixed_label=mixed), truth


FAST_INV = {"epochs": 30, "batch_size": 64, "evaluator_epochs": 30, "hidden": 128}
FAST_LI = {"epochs": 30, "batch_size": 64, "hidden": 128}


def test_observation_and_truth_validation():
    with pytest.raises(ValueError, match="NaN"):
        Observation(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="shape"):
        Observation(np.zeros(4))
    with pytest.raises(ValueError, match="real"):
        Observation(np.zeros((2, 2), complex))
    with pytest.raises(ValueError, match="mixed_label"):
        Observation(np.zeros((2, 3)), mixed_label=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="weights"):
        Observation(np.zeros((2, 3)), group_size=2, weights=np.ones((3, 2)))
    with pytest.raises(ValueError, match="non-negative"):
        Observation(np.zeros((2, 3)), group_size=2, weights=np.array([1.0, -0.5]))
    with pytest.raises(ValueError, match="group_size"):
        Observation(np.zeros((2, 3)), group_size=0)
    obs = Observation(np.zeros((3, 2)), group_size=2, weights=np.array([0.5, 0.5]))
    assert obs.weights.shape == (2, 3) and obs.subset([0, 2]).n == 2
    with pytest.raises(ValueError, match="within"):
        GroupTruth(np.full((1, 2, 1, 3, 3), 1.5), np.zeros((1, 2), int), 2)
    with pytest.raises(ValueError, match="labels"):
        GroupTruth(np.zeros((1, 2, 1, 3, 3)), np.full((1, 2), 5), 2)


def test_registry():
    assert set(ATTACKS) >= {"model_inversion", "label_inference"}
    assert isinstance(get_attack("model_inversion", epochs=1), ModelInversion)
    assert isinstance(get_attack("label_inference"), LabelInference)
    with pytest.raises(KeyError, match="unknown attack"):
        get_attack("membership")


def test_permutation_invariant_loss_and_matching():
    gen = make_rng(0)
    t = torch.rand(5, 3, 10, generator=torch.Generator().manual_seed(0))
    swapped = t[:, [2, 0, 1]]
    assert float(_perm_invariant_mse(swapped, t, None)) == pytest.approx(0.0, abs=1e-7)
    perms = torch.tensor(list(itertools.permutations(range(3))))
    assert float(_perm_invariant_mse(swapped, t, perms)) == pytest.approx(0.0, abs=1e-7)
    assert float(_perm_invariant_mse(swapped + 0.1, t, perms)) == pytest.approx(0.01, rel=1e-4)
    truth = gen.random((3, 4, 1, 3, 3))
    shuffled = truth[[1, 2, 0]] + 0.01
    np.testing.assert_allclose(match_to_participants(shuffled, truth), truth + 0.01)


def test_decode_counts_is_the_exact_constrained_argmax():
    gen = make_rng(1)
    c, k = 4, 3
    lp = np.log(gen.dirichlet(np.ones(k + 1), size=(6, c)))
    counts = decode_counts(lp)
    assert np.all(counts.sum(1) == k)
    for b in range(6):
        best = max(
            (v for v in itertools.product(range(k + 1), repeat=c) if sum(v) == k),
            key=lambda v, b=b: sum(lp[b, i, v[i]] for i in range(c)),
        )
        assert tuple(counts[b]) == best
    labels = counts_to_labels(counts)
    np.testing.assert_array_equal(label_counts(labels, c), counts)
    with pytest.raises(ValueError):
        decode_counts(np.full((1, 2, 3), np.nan))


def test_inversion_unmixed_is_strong_and_matches_truth():
    x, y = tiny_images(400, rng=0)
    aux_obs, aux_truth = groups(x[:200], y[:200], 1, 200, rng=1, with_label=False)
    vic_obs, vic_truth = groups(x[200:], y[200:], 1, 200, rng=2, with_label=False)
    attack = ModelInversion(rng=0, **FAST_INV).fit(aux_obs, aux_truth)
    rec = attack.attack(vic_obs)
    assert rec.shape == (1, 200, *SHAPE) and rec.min() >= 0 and rec.max() <= 1
    figs = attack.evaluate(vic_obs, vic_truth, rng=0)
    assert figs["task_accuracy"] >= 0.8
    assert figs["task_accuracy"] > figs["task_accuracy_chance"] + 0.4
    assert figs["psnr_db"] > figs["psnr_db_chance"] + 3
    assert figs["ssim"] > figs["ssim_chance"]
    with pytest.raises(ValueError, match="K="):
        attack.attack(Observation(vic_obs.payload, group_size=2))


def test_inversion_of_pairs_beats_chance_and_noise_observation_does_not():
    x, y = tiny_images(400, rng=3)
    aux_obs, aux_truth = groups(x[:200], y[:200], 2, 1500, rng=4)
    vic_obs, vic_truth = groups(x[200:], y[200:], 2, 300, rng=5)
    attack = ModelInversion(rng=0, **FAST_INV).fit(aux_obs, aux_truth)
    figs = attack.evaluate(vic_obs, vic_truth, rng=0)
    assert figs["task_accuracy"] > figs["task_accuracy_chance"] + 0.3
    # an observation independent of the victims carries nothing: accuracy near chance
    noise = Observation(make_rng(9).normal(size=vic_obs.payload.shape), group_size=2)
    blind = ModelInversion(rng=0, use_label=False, **FAST_INV).fit(
        Observation(make_rng(8).normal(size=aux_obs.payload.shape), group_size=2), aux_truth
    )
    figs_noise = blind.evaluate(noise, vic_truth, rng=0)
    assert figs_noise["task_accuracy"] < figs_noise["task_accuracy_chance"] + 0.15


def test_label_inference_on_triples():
    x, y = tiny_images(400, rng=6)
    aux_obs, aux_truth = groups(x[:200], y[:200], 3, 2000, rng=7)
    vic_obs, vic_truth = groups(x[200:], y[200:], 3, 300, rng=8)
    attack = LabelInference(rng=0, **FAST_LI).fit(aux_obs, aux_truth)
    pred = attack.attack(vic_obs)
    assert pred.shape == (3, 300)
    figs = attack.evaluate(vic_obs, vic_truth, rng=0)
    # the clean mixed label with equal weights reveals the multiset exactly
    assert figs["exact_set_accuracy"] >= 0.95
    assert 0 < figs["per_user_accuracy_chance"] < 0.8
    # from the payload alone the attack still beats blind guessing
    payload_only = LabelInference(rng=0, use_label=False, **FAST_LI).fit(aux_obs, aux_truth)
    figs_p = payload_only.evaluate(vic_obs, vic_truth, rng=0)
    assert figs_p["per_user_accuracy"] > figs_p["per_user_accuracy_chance"] + 0.2
    assert figs_p["exact_set_accuracy"] > figs_p["exact_set_accuracy_chance"]
    with pytest.raises(ValueError, match="do not match"):
        attack.evaluate(vic_obs.subset(np.arange(10)), vic_truth)
    with pytest.raises(ValueError, match="needs the payload"):
        LabelInference(use_payload=False, use_label=False)
    label_only = LabelInference(rng=0, use_payload=False, **FAST_LI)
    with pytest.raises(ValueError, match="mixed label"):
        label_only.fit(Observation(aux_obs.payload, group_size=3), aux_truth)


def test_attacks_require_fit():
    with pytest.raises(RuntimeError, match="fit"):
        ModelInversion().attack(Observation(np.zeros((2, 3))))
    with pytest.raises(RuntimeError, match="fit"):
        LabelInference().attack(Observation(np.zeros((2, 3))))

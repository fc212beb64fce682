"""Mixing policies, label algebra and the soft-label loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learning.mixup import (
    MIXING_POLICIES,
    make_policy,
    mix_labels,
    soft_cross_entropy,
)


def test_mix_labels_per_user_weights():
    labels = torch.tensor([[0, 1], [2, 1], [0, 3]])  # K=3 users, B=2
    out = mix_labels(labels, np.array([0.5, 0.3, 0.2]), 4)
    expected = torch.tensor([[0.7, 0.0, 0.3, 0.0], [0.0, 0.8, 0.0, 0.2]])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out.sum(dim=1), torch.ones(2))


def test_mix_labels_per_sample_weights():
    labels = torch.tensor([[1, 1], [2, 0]])
    weights = torch.tensor([[0.9, 0.1], [0.25, 0.75]])  # (B, K)
    out = mix_labels(labels, weights, 3)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.9, 0.1], [0.75, 0.25, 0.0]]))


def test_mix_labels_rejects_bad_input():
    labels = torch.tensor([[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="shape"):
        mix_labels(labels, [0.5, 0.3, 0.2], 2)
    with pytest.raises(ValueError, match=">= 0"):
        mix_labels(labels, [1.5, -0.5], 2)
    with pytest.raises(ValueError, match="finite"):
        mix_labels(labels, [float("nan"), 0.5], 2)
    with pytest.raises(ValueError, match="lie in"):
        mix_labels(labels, [0.5, 0.5], 1)
    with pytest.raises(ValueError, match="integer"):
        mix_labels(labels.float(), [0.5, 0.5], 2)


def test_soft_cross_entropy_matches_hard_and_manual():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=gen)
    y = torch.tensor([0, 4, 2, 2, 1, 3])
    hard = torch.nn.functional.one_hot(y, 5).float()
    torch.testing.assert_close(
        soft_cross_entropy(logits, hard), torch.nn.functional.cross_entropy(logits, y)
    )
    soft = mix_labels(torch.stack([y, y.flip(0)]), [0.6, 0.4], 5)
    manual = -(soft * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(soft_cross_entropy(logits, soft), manual)
    with pytest.raises(ValueError):
        soft_cross_entropy(logits, soft[:, :4])


def test_policies_registry_and_weights():
    assert set(MIXING_POLICIES) == {"equal", "dirichlet", "power_control"}
    np.testing.assert_allclose(make_policy("equal").draw(4), np.full(4, 0.25))
    dirichlet = make_policy("dirichlet", alpha=0.5)
    a, b = dirichlet.draw(5, rng=3), dirichlet.draw(5, rng=3)
    np.testing.assert_array_equal(a, b)
    assert np.isclose(a.sum(), 1.0) and np.all(a >= 0)
    assert not np.allclose(a, dirichlet.draw(5, rng=4))
    # small alpha concentrates the weight on one user, large alpha spreads it evenly
    peaky = np.mean([make_policy("dirichlet", alpha=0.05).draw(4, rng=s).max() for s in range(50)])
    flat = np.mean([make_policy("dirichlet", alpha=100.0).draw(4, rng=s).max() for s in range(50)])
    assert peaky > 0.8 and flat < 0.3
    with pytest.raises(ValueError, match="alpha"):
        make_policy("dirichlet", alpha=0.0)
    with pytest.raises(ValueError, match="unknown"):
        make_policy("uniformish")
    with pytest.raises(ValueError, match="n_users"):
        make_policy("equal").draw(0)


def test_power_control_policy_labels_follow_realised_weights():
    policy = make_policy("power_control")
    target = policy.draw(3)
    np.testing.assert_allclose(target, np.full(3, 1 / 3))
    realised = np.array([1 / 3, 1 / 3, 0.1])  # third user at its power limit
    np.testing.assert_allclose(policy.label_weights(target, realised), realised / realised.sum())
    np.testing.assert_allclose(policy.label_weights(target, None), target)
    # the other policies label with the targets
    np.testing.assert_allclose(make_policy("equal").label_weights(target, realised), target)
    with pytest.raises(ValueError):
        policy.label_weights(target, np.zeros(3))


def test_draw_groups_is_one_draw_per_group_in_order():
    policy = make_policy("dirichlet", alpha=0.5)
    many = policy.draw_groups(3, 40, rng=7)
    gen = np.random.default_rng(7)
    one_by_one = np.stack([policy.draw(3, gen) for _ in range(40)], axis=1)
    assert many.shape == (3, 40)
    np.testing.assert_array_equal(many, one_by_one)
    np.testing.assert_array_equal(make_policy("equal").draw_groups(4, 5), np.full((4, 5), 0.25))
    assert make_policy("equal").draw_groups(2, 0).shape == (2, 0)

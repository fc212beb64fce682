"""Membership inference (learning.membership) and defences (learning.defences) on small
data the tests make: random images with random labels, so a model can only get a
sample right by memorising it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from learning.data import Dataset
from learning.defences import DEFENCES, AdaMixup, DpSgd, StaticMixup, TrainSettings, get_defence
from learning.membership import (
    ALL_ATTACKS,
    MEMBERSHIP_ATTACKS,
    AuditSettings,
    ShadowRecipe,
    audit_membership,
    get_membership_attack,
    membership_split,
    roc_figures,
)
from learning.membership.base import true_class_logit
from learning.membership.scoring import tpr_at_fpr
from phy.registry import UnknownChoice

N_CLASSES = 4
SHAPE = (1, 4, 4)


def make_data(n: int, seed: int = 0) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *SHAPE), generator=gen)
    y = torch.randint(0, N_CLASSES, (n,), generator=gen)
    return Dataset(x, y, N_CLASSES, "random")


def factory() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 128), nn.ReLU(), nn.Linear(128, N_CLASSES))


SETTINGS = TrainSettings(epochs=80, batch_size=20, lr=1e-2)
FAST_ATTACKS = ("loss", "modified_entropy", "shokri", "lira_offline", "lira_online")


def audit(trained_on: np.ndarray, data: Dataset, split, attacks=FAST_ATTACKS, rng=5, **kw):
    target = get_defence("none").train_target(
        factory, data.x, data.y, trained_on, N_CLASSES, SETTINGS, rng=1
    )
    return audit_membership(
        target,
        data.subset(split.members),
        data.subset(split.non_members),
        data.subset(split.population),
        ShadowRecipe(factory, get_defence("none"), SETTINGS, N_CLASSES),
        AuditSettings(attacks=attacks, n_shadows=8, label_only_queries=8),
        rng=rng,
        **kw,
    )


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/learning/conftest.py


@pytest.fixture(scope="module")
def data_and_split():
    data = make_data(240)
    return data, membership_split(len(data), 60, rng=3)


def test_split_is_disjoint_balanced_and_seeded():
    a = membership_split(100, 30, rng=1)
    b = membership_split(100, 30, rng=1)
    c = membership_split(100, 30, rng=2)
    assert len(a.members) == len(a.non_members) == 30 and len(a.population) == 40
    parts = [set(a.members), set(a.non_members), set(a.population)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert all(
        np.array_equal(p, q) for p, q in zip(vars(a).values(), vars(b).values(), strict=True)
    )
    assert not np.array_equal(a.members, c.members)
    with pytest.raises(ValueError):
        membership_split(10, 6)


@pytest.fixture(scope="module")
def memorised(data_and_split, tmp_path_factory):
    data, split = data_and_split
    plot = tmp_path_factory.mktemp("membership") / "roc.png"
    return audit(split.members, data, split, plot_path=plot)


def test_memorised_members_are_detected(memorised):
    result = memorised
    for attack in FAST_ATTACKS:  # every attack sees it; the strongest nearly always
        assert result.figures[attack]["auc"] > 0.8, (attack, result.figures[attack])
    assert result.figures[result.best_attack]["auc"] > 0.95
    assert result.figures["lira_online"]["tpr_at_1pct_fpr"] > 5 * 0.01
    assert result.figures["lira_online"]["auc_chance"] == 0.5
    assert result.figures["lira_online"]["tpr_at_0_1pct_fpr_chance"] == 0.001
    assert result.plots and result.plots[0].stat().st_size > 0
    # the offline shadows never trained on a challenge sample
    assert not result.shadows["offline"].challenge_in.any()
    inside = result.shadows["online"].challenge_in.mean(axis=0)
    assert 0.1 < inside.mean() < 0.9


def test_model_trained_without_the_members_is_not_detected(data_and_split):
    data, split = data_and_split
    result = audit(split.population[:60], data, split)
    for attack in FAST_ATTACKS:
        assert abs(result.figures[attack]["auc"] - 0.5) < 0.15, (attack, result.figures[attack])


def test_same_seed_same_figures(data_and_split, memorised):
    data, split = data_and_split
    again = audit(split.members, data, split, rng=5)
    other = audit(split.members, data, split, attacks=("lira_online",), rng=6)
    for attack in FAST_ATTACKS:
        a = {k: v for k, v in memorised.figures[attack].items() if k != "seconds"}
        b = {k: v for k, v in again.figures[attack].items() if k != "seconds"}
        assert a == b
    assert other.figures["lira_online"]["auc"] != memorised.figures["lira_online"]["auc"]


def test_attacks_selectable_by_name():
    assert set(ALL_ATTACKS) == set(MEMBERSHIP_ATTACKS)
    for name in ALL_ATTACKS:
        attack = get_membership_attack(name)
        assert attack.name == name and attack.needs == "trained_model"
    assert get_membership_attack("lira_online").shadow_families == ("online",)
    with pytest.raises(UnknownChoice, match="lira_offline"):
        get_membership_attack("lira")


@pytest.mark.parametrize("name", ["none", "mixup", "adamixup", "dpsgd"])
def test_defences_selectable_by_name_and_train(name):
    data = make_data(40)
    defence = get_defence(name)
    assert defence.name == name and name in DEFENCES
    sets = np.stack([np.arange(0, 20), np.arange(20, 40)])
    stack = defence.train_stack(
        factory, data.x, data.y, sets, N_CLASSES, TrainSettings(epochs=2, batch_size=8), rng=0
    )
    logits = stack.logits(data.x)
    assert logits.shape == (2, 40, N_CLASSES) and torch.isfinite(logits).all()
    assert torch.allclose(stack.module(1)(data.x), logits[1], atol=1e-5)
    with pytest.raises(UnknownChoice):
        get_defence("madeup")


def test_oam_defence_trains_the_server_model_over_the_air():
    data = Dataset(make_data(64).x, make_data(64).y, N_CLASSES, "random")
    defence = get_defence("oam", users=4, group_size=2, feature_dim=8)
    model = defence.train_target(
        factory, data.x, data.y, np.arange(32), N_CLASSES, TrainSettings(epochs=2, batch_size=4), 0
    )
    out = model(data.x)
    assert out.shape == (64, N_CLASSES) and torch.isfinite(out).all()


def test_adamixup_schedule_and_dominant_label():
    defence = AdaMixup(lam_start=0.5, lam_end=0.1)
    assert defence.coefficient(0.0) == 0.5
    assert defence.coefficient(0.5) == pytest.approx(0.3)
    assert defence.coefficient(1.0) == pytest.approx(0.1)
    x = torch.rand(2, 8, *SHAPE)
    y = nn.functional.one_hot(torch.randint(0, N_CLASSES, (2, 8)), N_CLASSES).float()
    gen = torch.Generator().manual_seed(0)
    x_mix, y_mix = defence.transform_batch(x, y, 0.75, gen)
    assert torch.equal(y_mix, y)  # the dominant (first) sample's hard label
    lam = defence.coefficient(0.75)
    partner = (x_mix - (1 - lam) * x) / lam  # must be another sample of the same batch
    flat, pool = partner.flatten(2), x.flatten(2)
    for m in range(2):
        distances = torch.cdist(flat[m], pool[m])
        assert distances.min(dim=1).values.max() < 1e-4
    with pytest.raises(ValueError):
        AdaMixup(lam_start=0.7)


def test_static_mixup_mixes_labels_with_the_input_weights():
    defence = StaticMixup(alpha=None, k=4)
    x = torch.rand(1, 8, *SHAPE)
    y = nn.functional.one_hot(torch.arange(8) % N_CLASSES, N_CLASSES).float()[None]
    x_mix, y_mix = defence.transform_batch(x, y, 0.0, torch.Generator().manual_seed(1))
    assert torch.allclose(y_mix.sum(-1), torch.ones(1, 8))
    assert torch.allclose(x_mix.mean(), x.mean(), atol=1e-6)  # each sample used K times / K


def test_dpsgd_clipped_sum_matches_opacus():
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    from learning.defences.base import ModelStack

    data = make_data(16)
    stack = ModelStack.initialise(factory, 1, rng=4)
    defence = DpSgd(max_grad_norm=0.05)
    onehot = nn.functional.one_hot(data.y, N_CLASSES).float()
    sums, _ = defence.clipped_sum(stack, data.x[None], onehot[None])

    model = stack.module(0).train()  # Opacus records activations in training mode
    reference = GradSampleModule(model)
    optimizer = DPOptimizer(
        torch.optim.SGD(reference.parameters(), lr=0.1),
        noise_multiplier=0.0,
        max_grad_norm=0.05,
        expected_batch_size=16,
    )
    optimizer.zero_grad()
    nn.functional.cross_entropy(reference(data.x), data.y, reduction="sum").backward()
    optimizer.pre_step()
    names = [n for n, _ in model.named_parameters()]
    for name, param in zip(names, model.parameters(), strict=True):
        assert torch.allclose(sums[name][0] / 16, param.grad, atol=1e-6), name


def test_dpsgd_epsilon_from_the_accountant():
    settings = TrainSettings(epochs=10, batch_size=32)
    defence = DpSgd(target_epsilon=4.0)
    assert defence.epsilon(320, settings) == pytest.approx(4.0, rel=0.05)
    assert DpSgd(noise_multiplier=0.0).epsilon(320, settings) == float("inf")


def test_roc_figures_and_chance_levels():
    members = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    perfect = roc_figures(np.r_[np.ones(50), np.zeros(50)], members)
    assert perfect["auc"] == 1.0 and perfect["tpr_at_0_1pct_fpr"] == 1.0
    assert perfect["min_fpr"] == pytest.approx(0.02)
    reverse = roc_figures(np.r_[np.zeros(50), np.ones(50)], members)
    assert reverse["auc"] == 0.0 and reverse["tpr_at_1pct_fpr"] == 0.0
    fpr, tpr = np.array([0.0, 0.005, 0.02, 1.0]), np.array([0.1, 0.3, 0.6, 1.0])
    assert tpr_at_fpr(fpr, tpr, 0.01) == 0.3 and tpr_at_fpr(fpr, tpr, 0.001) == 0.1
    with pytest.raises(ValueError):
        roc_figures(np.ones(4), np.ones(4, bool))


def test_logit_scaled_confidence_is_stable():
    logits = np.array([[100.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    phi = true_class_logit(logits, np.array([0, 2]))
    assert phi[0] == pytest.approx(100.0 - np.log(2.0))
    assert phi[1] == pytest.approx(np.log(1 / 3) - np.log(2 / 3))


def test_audit_rejects_unbalanced_challenge(data_and_split):
    data, split = data_and_split
    with pytest.raises(ValueError, match="equal"):
        audit_membership(
            factory(), data.subset(split.members), data.subset(split.non_members[:10]), None, None
        )


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("none", {}, {}),
        ("mixup", {"alpha": 0.5, "k": 3}, {"alpha": 0.5, "k": 3}),
        (
            "adamixup",
            {"lam_start": 0.4, "lam_end": 0.1, "dominant_label": False, "jitter": 0.05},
            {"lam_start": 0.4, "lam_end": 0.1, "dominant_label": False, "jitter": 0.05},
        ),
        (
            "dpsgd",
            {"target_epsilon": 4.0, "max_grad_norm": 2.0},
            {"target_epsilon": 4.0, "delta": 1e-5, "max_grad_norm": 2.0, "noise_multiplier": None},
        ),
    ],
)
def test_describe_reports_the_name_and_every_knob(name, kwargs, expected):
    assert get_defence(name, **kwargs).describe() == {"defence": name, **expected}

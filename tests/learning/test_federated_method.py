"""FedAvg as a registered Method on the shared runtime (learning.methods)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learning.channels import make_channel
from learning.data import load_dataset, split_users
from learning.federated.method import FederatedAveraging
from learning.federated.updates import get_flat
from learning.methods import METHODS, make_method
from learning.methods.base import MethodContext, Reception
from learning.methods.loop import run_method
from tests.learning.contexts import method_context

MODEL = {"mode": "raw", "arch": "mlp", "feature_dim": 32, "learning_rate": 1e-3, "batch_size": 16}


@pytest.fixture(scope="module")
def data():
    train, test = load_dataset("digits", rng=0)
    return train, test, split_users(train, 4, auxiliary_fraction=0.2, rng=1)


def context(data, **options) -> MethodContext:
    return method_context(data, MODEL, seed=3, options=options)


def test_fedavg_is_registered_with_its_options():
    assert METHODS["fedavg"] is FederatedAveraging
    assert set(FederatedAveraging.options) == {
        "aggregation",
        "local_steps",
        "local_lr",
        "dropout",
        "noise_multiplier",
        "clip_norm",
    }
    assert FederatedAveraging.options["aggregation"].choices == (
        "ota",
        "orthogonal",
        "digital",
        "secure",
    )


def test_payload_is_the_scaled_update_with_bounded_power(data):
    method = make_method("fedavg", context(data))
    user = method.make_user(0)
    payload = user.payload(16).vector
    assert payload.shape == (method.payload_reals,) and method.payload_reals % 2 == 0
    assert 2 * np.mean(payload**2) <= 1.0 + 1e-9  # at most unit power per complex symbol
    assert np.any(payload != 0)


def test_ideal_air_applies_the_mean_update_and_broadcasts_the_model(data):
    method = make_method("fedavg", context(data))
    users = [method.make_user(i) for i in range(2)]
    vectors = [u.payload(16).vector for u in users]
    theta0, scale = get_flat(method.model).double(), method.scale
    estimate = 0.5 * (vectors[0] + vectors[1])
    outcome = method.server_step(
        [Reception((0, 1), estimate, np.full(2, 0.5), np.full(2, 0.5))], rng=0
    )
    p = method.n_parameters
    expected = theta0 + scale * torch.as_tensor(method.unspread(estimate)[:p])
    assert torch.allclose(get_flat(method.model).double(), expected, atol=1e-6)
    (feedback,) = outcome.feedback
    assert len(outcome.losses) == 1 and np.isfinite(outcome.losses[0])
    assert feedback.users == tuple(range(4))
    users[1].apply(feedback, 1.0)
    assert torch.equal(get_flat(users[1].model), get_flat(method.model))
    assert users[1].scale == method.scale


def test_spreading_is_public_and_invertible(data):
    a, b = make_method("fedavg", context(data)), make_method("fedavg", context(data))
    v = np.random.default_rng(0).normal(size=a.payload_reals)
    assert np.array_equal(a.spread(v), b.spread(v))  # same in every process
    assert np.allclose(a.unspread(a.spread(v)), v)
    # an update whose energy sits in one corner is spread evenly over the frame
    corner = np.zeros(a.payload_reals)
    corner[:64] = 1.0
    blocks = a.spread(corner).reshape(-1, 2)[: (a.payload_reals // 2) // 96 * 96]
    power = (blocks**2).sum(1).reshape(-1, 96).mean(1)
    assert power.max() < 20 * corner.var()


def test_missed_slot_changes_nothing(data):
    method = make_method("fedavg", context(data))
    before = get_flat(method.model)
    outcome = method.server_step([Reception((0,), None, np.ones(1), np.zeros(1))], rng=0)
    assert torch.equal(get_flat(method.model), before) and not outcome.feedback


@pytest.mark.parametrize("aggregation", ["ota", pytest.param("orthogonal", marks=pytest.mark.slow)])
def test_fedavg_learns_over_the_faded_air(data, aggregation):
    method = make_method(
        "fedavg", context(data, batch_size=64, aggregation=aggregation, local_steps=2)
    )
    result = run_method(method, make_channel("fading", snr_db=20, rng=0), rounds=1, group_size=4)
    assert result.accuracy > 0.8  # chance 0.1
    per_group = 1 if aggregation == "ota" else 4
    assert result.slots == method.context.steps_per_round * per_group


def test_state_round_trip(data):
    method = make_method("fedavg", context(data))
    state = method.state_dict()
    other = make_method("fedavg", context(data))
    torch.nn.utils.vector_to_parameters(torch.zeros(other.n_parameters), other.model.parameters())
    other.load_state_dict(state)
    assert torch.equal(get_flat(other.model), get_flat(method.model))


def test_bad_aggregation_refused(data):
    with pytest.raises(ValueError, match="aggregation"):
        make_method("fedavg", context(data, aggregation="analog"))


def test_only_digital_aggregation_declares_the_model_update_uplink(data):
    """The capability is granted by the method's own declaration; every air variant (and
    every other method) leaves the privacy invariant untouched."""
    from learning.methods.base import MODEL_UPDATES

    for aggregation in ("digital", "secure"):
        assert FederatedAveraging.link_capabilities({"aggregation": aggregation}) == {MODEL_UPDATES}
        assert make_method("fedavg", context(data, aggregation=aggregation)).payload_reals == 0
    for aggregation in ("ota", "orthogonal"):
        assert FederatedAveraging.link_capabilities({"aggregation": aggregation}) == frozenset()
    for name in METHODS:
        if name != "fedavg":
            assert METHODS[name].link_capabilities({"aggregation": "digital"}) == frozenset()


@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_secure_aggregation_equals_digital_with_dropouts(data, dropout):
    """In process: secure aggregation applies exactly the mean of the surviving users'
    updates (to fixed-point rounding), as plain digital aggregation of the same updates
    does, with users dropping out after the key sharing; the server's views are each
    user's update (digital) and only the mean (secure)."""
    from learning.methods.loop import _direct_exchange

    models, views = {}, {}
    for aggregation in ("digital", "secure"):
        method = make_method("fedavg", context(data, aggregation=aggregation, dropout=dropout))
        users = [method.make_user(i) for i in range(4)]
        for i, user in enumerate(users):
            user.start_round(np.random.SeedSequence([7, i]))
        receptions = method.gather(range(4), _direct_exchange(users), rng=0)
        outcome = method.server_step(receptions, rng=0)
        models[aggregation] = get_flat(method.model).numpy()
        views[aggregation] = outcome.update_views
    survivors = [v.users for v in views["digital"]]
    assert [v.kind for v in views["digital"]] == ["single_update"] * len(survivors)
    (secure,) = views["secure"]
    assert secure.kind == "secure_sum" and [(u,) for u in secure.users] == survivors
    if dropout:
        assert 2 <= len(survivors) < 4  # seeded: some dropped, enough to unmask
    else:
        assert len(survivors) == 4
    np.testing.assert_allclose(models["secure"], models["digital"], atol=1e-6)
    mean = np.mean([v.update for v in views["digital"]], axis=0)
    np.testing.assert_allclose(secure.update, mean, atol=len(survivors) * 2.0**-32)


def test_digital_fedavg_learns_in_process(data):
    method = make_method("fedavg", context(data, aggregation="secure", local_steps=2))
    result = run_method(method, make_channel("ideal"), rounds=2, group_size=4)
    assert result.channel_uses == 0 and result.slots == 0
    assert result.accuracy > 0.5, result.accuracy  # chance 0.1


def test_noised_secure_aggregate_is_the_clipped_mean_plus_the_summed_noise(data):
    """With noise_multiplier z and clip_norm C, each user's share is its update clipped
    to C plus N(0, (zC)^2/K): the mean applied is within the noise of the clipped mean."""
    from learning.methods.loop import _direct_exchange

    clip, z = 0.05, 0.5
    method = make_method("fedavg", context(data, aggregation="secure", noise_multiplier=z,
                                          clip_norm=clip))  # fmt: skip
    plain = make_method("fedavg", context(data, aggregation="digital"))
    users = [method.make_user(i) for i in range(4)]
    clean = [plain.make_user(i) for i in range(4)]
    for i in range(4):
        users[i].start_round(np.random.SeedSequence([9, i]))
        clean[i].start_round(np.random.SeedSequence([9, i]))
    (noised,) = method.gather(range(4), _direct_exchange(users), rng=0)
    updates = [r.estimate for r in plain.gather(range(4), _direct_exchange(clean), rng=0)]
    clipped = np.mean([u * min(1.0, clip / np.linalg.norm(u)) for u in updates], axis=0)
    residual = noised.estimate - clipped
    expected_std = z * clip / 4  # the mean of 4: the sum's noise (zC)^2, divided by K
    assert np.std(residual) == pytest.approx(expected_std, rel=0.05)
    assert abs(np.mean(residual)) < 3 * expected_std / np.sqrt(residual.size)

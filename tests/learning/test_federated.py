"""FedAvg with digital and over-the-air aggregation, and gradient inversion on updates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learning.data import load_dataset, split_users
from learning.federated.aggregation import (
    AGGREGATORS,
    DigitalAggregator,
    OtaAggregator,
    make_aggregator,
)
from learning.federated.fedavg import FedAvgConfig, run_fedavg
from learning.federated.gradient_inversion import (
    InversionConfig,
    idlg_label,
    infer_labels,
    invert_update,
    one_step_update,
)
from learning.federated.updates import count_parameters, get_flat, local_update, set_flat
from learning.metrics import psnr
from learning.models import build_classifier


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", rng=0)


def test_flat_parameters_round_trip():
    model = build_classifier((1, 8, 8), 10, "mlp")
    flat = get_flat(model)
    assert flat.shape == (count_parameters(model),)
    set_flat(model, flat * 2)
    assert torch.allclose(get_flat(model), flat * 2)
    with pytest.raises(ValueError, match="parameters"):
        set_flat(model, flat[:-1])


def test_local_update_leaves_the_global_model_alone(digits):
    train, _ = digits
    model = build_classifier((1, 8, 8), 10, "mlp")
    before = get_flat(model)
    update = local_update(model, train.subset(np.arange(40)), batch_size=8, rng=0)
    assert torch.equal(get_flat(model), before)
    assert update.n_samples == 40 and float(update.delta.abs().sum()) > 0


def test_digital_aggregation_is_the_exact_weighted_sum():
    u = torch.randn(3, 11)
    w = np.array([0.2, 0.3, 0.5])
    out = DigitalAggregator(snr_db=20).aggregate(u, w)
    assert torch.allclose(out.estimate, (torch.as_tensor(w).float()[:, None] * u).sum(0), atol=1e-6)
    assert out.digital_bytes == 3 * 11 * 4 and out.predicted_mse == 0.0
    assert out.channel_uses == 3 * int(np.ceil(32 * 11 / np.log2(101)))


@pytest.mark.parametrize("channel", ["fading", "awgn"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ota_aggregation_matches_the_digital_sum_within_the_predicted_mse(channel, seed):
    rng = np.random.default_rng(seed)
    k, p = 8, 40_000
    updates = torch.as_tensor(rng.normal(0, 1, (k, p)) * rng.uniform(0.01, 0.1, (k, 1))).float()
    weights = rng.dirichlet(np.ones(k))
    digital = DigitalAggregator().aggregate(updates, weights).estimate.double()
    ota = OtaAggregator(channel, snr_db=20, group_size=k, rng=seed).aggregate(updates, weights)
    mse = float(((ota.estimate.double() - digital) ** 2).mean())
    assert ota.predicted_mse > 0
    assert 0.85 < mse / ota.predicted_mse < 1.15
    assert ota.channel_uses == p // 2 and ota.slots == 1 and ota.digital_bytes == 4 * k
    if channel == "awgn":  # unit gains, 20 dB: the sum is recovered, not just noise
        assert mse < 0.1 * float((digital**2).mean())


def test_ota_groups_cost_one_slot_each_and_ideal_channel_is_exact():
    updates = torch.randn(5, 9)
    w = np.full(5, 0.2)
    out = OtaAggregator("ideal", group_size=2).aggregate(updates, w)
    assert out.slots == 3 and out.channel_uses == 3 * 5  # ceil(9/2) = 5 uses per slot
    exact = DigitalAggregator().aggregate(updates, w).estimate
    assert torch.allclose(out.estimate, exact, atol=1e-6)
    assert np.allclose(out.effective_weights, w)


def test_aggregator_registry_and_input_errors():
    assert set(AGGREGATORS) == {"digital", "ota"}
    with pytest.raises(ValueError, match="allowed"):
        make_aggregator("carrier-pigeon")
    agg = DigitalAggregator()
    with pytest.raises(ValueError, match="NaN"):
        agg.aggregate(torch.tensor([[float("nan")]]), [1.0])
    with pytest.raises(ValueError, match="weights"):
        agg.aggregate(torch.zeros(2, 3), [1.0])
    with pytest.raises(ValueError, match="group_size"):
        OtaAggregator(group_size=0)


def test_fedavg_learns_and_counts_its_costs(digits):
    train, test = digits
    split = split_users(train, 10, scheme="dirichlet", alpha=0.1, rng=0)
    config = FedAvgConfig(rounds=6, participation=0.4, aggregation="digital")
    result = run_fedavg(train, test, split, config, rng=0)
    p = result.n_parameters
    assert [r.participants for r in result.records] == [4] * 6
    assert result.records[-1].digital_bytes == 6 * 4 * 4 * p
    assert result.accuracy > 0.5  # chance is 0.1


def test_fedavg_over_an_ideal_air_equals_digital(digits):
    train, test = digits
    split = split_users(train, 6, rng=0)
    common = dict(rounds=3, participation=1.0, group_size=3, max_local_steps=2)
    dig = run_fedavg(train, test, split, FedAvgConfig(aggregation="digital", **common), rng=4)
    ota = run_fedavg(
        train, test, split, FedAvgConfig(aggregation="ota", channel="ideal", **common), rng=4
    )
    assert torch.allclose(get_flat(dig.model), get_flat(ota.model), atol=1e-5)
    assert ota.records[-1].channel_uses == 3 * 2 * (ota.n_parameters // 2)


def test_fedavg_with_images_encrypted_at_rest(digits):
    train, test = digits
    split = split_users(train, 4, rng=0)
    config = FedAvgConfig(rounds=2, participation=1.0, max_local_steps=2, encrypt_at_rest=True)
    plain = run_fedavg(
        train, test, split, FedAvgConfig(**{**config.__dict__, "encrypt_at_rest": False}), rng=1
    )
    sealed = run_fedavg(train, test, split, config, rng=1)
    # 8-bit quantisation of digits (k/16) moves pixels by < 1/510: the models stay close
    assert abs(sealed.accuracy - plain.accuracy) < 0.05
    from learning.federated.fedavg import FedAvgClient

    client = FedAvgClient(train.subset(split.users[0]), encrypt_at_rest=True)
    assert client.data is None and all(r[:4] == b"FLEP" for r in client.store.records)


def test_fedavg_config_errors():
    with pytest.raises(ValueError, match="participation"):
        FedAvgConfig(participation=0.0)
    with pytest.raises(ValueError, match="aggregation"):
        FedAvgConfig(aggregation="analog")


def test_gradient_inversion_recovers_one_image_and_its_label(digits):
    train, _ = digits
    torch.manual_seed(0)
    model = build_classifier((1, 8, 8), 10, "mlp")
    x, y = train.x[:1], train.y[:1]
    update = one_step_update(model, x, y)
    assert idlg_label(model, update) == int(y[0])
    aux = train.x[100:300].numpy()
    assert infer_labels(model, update, 1, 0.1, aux).tolist() == [int(y[0])]
    rec = invert_update(model, update, y, (1, 8, 8), config=InversionConfig(iterations=150), rng=0)
    blind = train.x[500:501].numpy()
    assert psnr(rec, x.numpy())[0] > psnr(blind, x.numpy())[0] + 6


def test_label_counts_of_a_batch(digits):
    train, _ = digits
    torch.manual_seed(1)
    model = build_classifier((1, 8, 8), 10, "mlp")
    x, y = train.x[:8], train.y[:8]
    update = one_step_update(model, x, y, lr=0.1)
    got = infer_labels(model, update, 8, 0.1, train.x[200:400].numpy())
    assert sorted(got.tolist()) == sorted(y.tolist())


def test_update_audit_single_update_leaks_the_secure_sum_of_many_does_not(digits, one_thread):
    """The run's audit (learning.federated.update_audit): one user's FedSGD update of two
    images is inverted far above chance in pixels; from the mean of 4 such updates each
    user's random share of the reconstructions is no closer to its images than chance."""
    from learning.attacks.inversion import train_evaluation_classifier
    from learning.federated.update_audit import UpdateVictims, invert_view, mean_scores

    train, _ = digits
    torch.manual_seed(2)
    model = build_classifier((1, 8, 8), 10, "mlp")
    aux_x, aux_y = train.x[600:1000].numpy(), train.y[600:1000].numpy()
    evaluator = train_evaluation_classifier(aux_x, aux_y, 10, epochs=5, rng=0)
    batches = [(train.x[2 * k : 2 * k + 2], train.y[2 * k : 2 * k + 2]) for k in range(4)]
    updates = [one_step_update(model, x, y, lr=0.1).numpy() for x, y in batches]
    flat = get_flat(model).numpy()
    config = InversionConfig(iterations=100)
    single = UpdateVictims("single_update", updates[0], flat, [batches[0][0].numpy()],
                           [batches[0][1].numpy()])  # fmt: skip
    (one,) = invert_view(model, single, 0.1, evaluator, aux_x, aux_y, config, rng=0)
    assert one["psnr_db"] > one["psnr_db_chance"] + 5
    mean = np.mean(updates, axis=0)
    pooled = UpdateVictims("secure_sum", mean, flat, [x.numpy() for x, _ in batches],
                           [y.numpy() for _, y in batches])  # fmt: skip
    scores = invert_view(model, pooled, 0.1, evaluator, aux_x, aux_y, config, rng=0)
    figures = mean_scores(scores)
    assert figures["n_users"] == 4 and figures["psnr_db_ci95"] > 0
    assert figures["psnr_db"] < one["psnr_db"] - 5
    assert figures["psnr_db"] < figures["psnr_db_chance"] + 1.0
    with pytest.raises(ValueError, match="as many labels"):
        UpdateVictims("single_update", mean, flat, [aux_x[:2]], [aux_y[:3]])

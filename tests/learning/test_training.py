"""Step-level API (gradient routing) and short training runs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from learning.channels import SQRT2, IdealChannel, make_channel
from learning.data import Dataset, load_dataset, split_users
from learning.methods import make_method
from learning.methods.loop import run_method
from learning.mixup import mix_labels, soft_cross_entropy
from learning.models import RawCodec, build_classifier, build_encoder, build_head
from learning.training import (
    RawModel,
    Server,
    User,
    evaluate,
    train_centralized,
)
from orchestrator.grouping import get_grouping_policy
from phy.ota_model import ota_mixture
from tests.learning.contexts import method_context


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    return load_dataset("digits")


def _group(digits, k=3, seed=0):
    train, _ = digits
    torch.manual_seed(seed)
    encoders = [build_encoder(train.input_shape, 8, "mlp") for _ in range(k)]
    head = build_head(8, 10)
    xs = [train.x[i * 5 : i * 5 + 5] for i in range(k)]
    ys = torch.stack([train.y[i * 5 : i * 5 + 5] for i in range(k)])
    return train, encoders, head, xs, ys


def _reference_grads(encoders, head, xs, ys, weights, mix_fn):
    """Autograd on the summed graph: loss(head(mix(enc_k(x_k))))."""
    encoders, head = copy.deepcopy(encoders), copy.deepcopy(head)
    payloads = torch.stack([e(x) for e, x in zip(encoders, xs, strict=True)])
    loss = soft_cross_entropy(head(mix_fn(payloads)), mix_labels(ys, weights, 10))
    loss.backward()
    return [[p.grad.clone() for p in e.parameters()] for e in encoders], [
        p.grad.clone() for p in head.parameters()
    ]


def _step_api_grads(train, encoders, head, xs, ys, channel, weights):
    server = Server(head, lr=1e-3)
    users = [User(train, encoder=e, lr=1e-3) for e in encoders]
    payloads = torch.stack([u.user_encode(x) for u, x in zip(users, xs, strict=True)])
    out = channel.transmit(payloads, weights)
    loss, grad = server.server_step(out.estimate, mix_labels(ys, weights, 10))
    assert grad.shape == out.estimate.shape and np.isfinite(loss)
    head_grads = [p.grad.clone() for p in head.parameters()]
    for u, w in zip(users, out.effective_weights, strict=True):
        u.user_backward(grad, float(w))
    return [[p.grad.clone() for p in e.parameters()] for e in encoders], head_grads


def test_feature_mode_gradient_routing_matches_autograd_ideal(digits):
    train, encoders, head, xs, ys = _group(digits)
    weights = np.array([0.5, 0.3, 0.2])
    ref_enc, ref_head = _reference_grads(
        encoders,
        head,
        xs,
        ys,
        weights,
        lambda p: torch.einsum("k,kbd->bd", torch.tensor(weights, dtype=torch.float32), p),
    )
    got_enc, got_head = _step_api_grads(train, encoders, head, xs, ys, IdealChannel(), weights)
    for ref, got in zip(ref_head, got_head, strict=True):
        torch.testing.assert_close(got, ref)
    for ref_u, got_u in zip(ref_enc, got_enc, strict=True):
        for ref, got in zip(ref_u, got_u, strict=True):
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-7)
            assert ref.abs().sum() > 0


def test_feature_mode_gradient_routing_matches_autograd_fading(digits):
    """Through the differentiable fading channel each user must back-propagate its
    realised weight Re(a h_k b_k) times dL/dy: equal to autograd through ota_mixture."""
    train, encoders, head, xs, ys = _group(digits, k=4, seed=3)
    weights = np.full(4, 0.25)
    channel = make_channel("fading", snr_db=10.0, rng=7)
    twin = make_channel("fading", snr_db=10.0, rng=7)  # same gains and noise draws
    h = twin.fading.generate((4,), twin._rng)

    def through_phy(p):
        # reals packed as the waveform packs them (learning.channels)
        est, _ = ota_mixture(p / SQRT2, weights, h, twin.noise_var, generator=twin._generator)
        return est * SQRT2

    ref_enc, _ = _reference_grads(encoders, head, xs, ys, weights, through_phy)
    got_enc, _ = _step_api_grads(train, encoders, head, xs, ys, channel, weights)
    for ref_u, got_u in zip(ref_enc, got_enc, strict=True):
        for ref, got in zip(ref_u, got_u, strict=True):
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-7)


def test_server_and_user_validate_input(digits):
    train, _ = digits
    server = Server(build_head(8, 10))
    with pytest.raises(ValueError, match="NaN"):
        server.server_step(torch.full((2, 8), float("nan")), torch.full((2, 10), 0.1))
    with pytest.raises(ValueError):
        server.server_step(torch.zeros(2, 8), torch.zeros(3, 10))
    user = User(train, encoder=build_encoder(train.input_shape, 8, "mlp"))
    with pytest.raises(RuntimeError, match="before"):
        user.user_backward(torch.zeros(2, 8), 0.5)
    with pytest.raises(ValueError, match="exactly one"):
        User(train)


def test_raw_mode_server_trains_whole_model(digits):
    train, _ = digits
    codec = RawCodec.fit(train.x)
    torch.manual_seed(0)
    classifier = build_classifier(train.input_shape, 10, "mlp")
    server = Server(RawModel(codec, classifier))
    user = User(train, codec=codec, batch_size=4, rng=0)
    x, y = user.sample_batch()
    payload = user.user_encode(x)
    torch.testing.assert_close(codec.decode(payload), x)
    before = [p.clone() for p in classifier.parameters()]
    _, grad = server.server_step(payload, mix_labels(y[None], [1.0], 10))
    user.user_backward(grad, 1.0)  # raw users hold no parameters: a no-op
    assert any(not torch.equal(b, p) for b, p in zip(before, classifier.parameters(), strict=True))


def test_user_batches_cycle_through_data_deterministically(digits):
    train, _ = digits
    small = Dataset(train.x[:10], torch.arange(10), 10, "ten")  # label = sample id
    codec = RawCodec.fit(small.x)
    a = User(small, codec=codec, batch_size=4, rng=5)
    b = User(small, codec=codec, batch_size=4, rng=5)
    first_pass = torch.cat([a.sample_batch()[1] for _ in range(2)])
    assert len(set(first_pass.tolist())) == 8  # no repeats within one shuffled pass
    ya = [a.sample_batch()[1] for _ in range(5)]
    yb = [b.sample_batch()[1] for _ in range(7)][2:]
    assert all(torch.equal(p, q) for p, q in zip(ya, yb, strict=True))
    assert all(len(y) == 4 for y in ya)  # short tail batches are skipped


def _method(name, train, test, split, mode="features", seed=1, mixing="equal", arch="mlp"):
    model = {"mode": mode, "arch": arch, "feature_dim": 32, "learning_rate": 1e-3}
    context = method_context(
        (train, test, split), {**model, "batch_size": 32}, mixing=mixing, seed=seed
    )
    return make_method(name, context)


def test_oam_smoke_beats_chance_and_is_seeded(digits):
    train, test = digits
    split = split_users(train, 8, "iid", auxiliary_fraction=0.2, rng=0)
    grouping = get_grouping_policy("label_aware", group_size=4)

    def run():
        method = _method("oam", train, test, split)
        return run_method(method, make_channel("fading", snr_db=20.0, rng=1), 4, grouping=grouping)

    result = run()
    assert result.accuracy > 0.5  # chance is 0.1
    steps = _method("oam", train, test, split).context.steps_per_round
    assert result.slots == len(result.losses) == 4 * steps * 2  # 2 groups, one slot each
    assert run().losses == result.losses


def test_baselines_smoke(digits):
    train, test = digits
    split = split_users(train, 4, "iid", auxiliary_fraction=0.2, rng=0)
    ortho = _method("orthogonal", train, test, split, mode="raw")
    mixup = _method("server_mixup", train, test, split, mixing="dirichlet")
    o = run_method(ortho, make_channel("awgn", snr_db=20.0, rng=0), 2, group_size=2)
    x = run_method(mixup, IdealChannel(), 2, group_size=2)
    assert o.accuracy > 0.5 and x.accuracy > 0.3
    # orthogonal: one slot and one update per user; server mixup: one update per pair
    steps = ortho.context.steps_per_round
    assert o.slots == len(o.losses) == 2 * steps * 4
    assert x.slots == 2 * len(x.losses)


def test_centralized_smoke(digits):
    train, test = digits
    torch.manual_seed(0)
    model = build_classifier(train.input_shape, 10, "mlp")
    result = train_centralized(model, train, epochs=2, rng=0)
    assert len(result.losses) == 2 * 22 and evaluate(model, test) > 0.8


@pytest.mark.slow
def test_accuracy_targets(digits):
    """Centralized >= 97 %; OAM (groups of 4, 20 dB fading, MMSE power control) within
    3 points of centralized trained on the same users' data."""
    train, test = digits
    split = split_users(train, 8, "iid", rng=1)
    union = train.subset(np.concatenate(split.users))
    torch.manual_seed(0)
    model = build_classifier(train.input_shape, 10)
    train_centralized(model, union, epochs=30, rng=0)
    central = evaluate(model, test)
    method = _method("oam", train, test, split, mode="raw", seed=0, arch="cnn")
    grouping = get_grouping_policy("label_aware", group_size=4)
    channel = make_channel("fading", snr_db=20.0, rng=0)
    oam = run_method(method, channel, 100, grouping=grouping).accuracy
    assert central >= 0.97
    assert oam >= central - 0.03


def test_shared_encoder_is_copied_on_write_with_private_results(digits):
    """Users on one shared initial encoder give the payloads and updated weights of
    users holding private copies; the shared instance never changes, and only a user
    that trained holds an encoder (and Adam moments) of its own, without gradients."""
    train, encoders, _, xs, _ = _group(digits, k=1, seed=4)
    shared = encoders[0]
    initial = [p.detach().clone() for p in shared.parameters()]
    private = User(train, encoder=copy.deepcopy(shared), lr=1e-2)
    lean = User(train, encoder=shared, lr=1e-2, shared_encoder=True)
    idle = User(train, encoder=shared, lr=1e-2, shared_encoder=True)
    grad = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    for _ in range(2):
        a, b = private.user_encode(xs[0]), lean.user_encode(xs[0])
        torch.testing.assert_close(b, a)
        private.user_backward(grad, 0.5)
        lean.user_backward(grad, 0.5)
        assert lean.encoder is not shared and not lean.shares_encoder
    for p, q, s, s0 in zip(
        private.encoder.parameters(),
        lean.encoder.parameters(),
        shared.parameters(),
        initial,
        strict=True,
    ):
        torch.testing.assert_close(q, p)
        assert not torch.equal(q, s0)  # trained
        assert torch.equal(s, s0)  # the shared instance untouched
        assert q.grad is None
    assert idle.encoder is shared and idle.optimizer is None
    assert idle.optimizer_state()["state"] == {}
    assert lean.optimizer_state()["state"]  # its own Adam moments

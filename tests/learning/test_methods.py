"""learning.methods: the Method interface, its three mixup-family methods, the
in-process loop, and the registry they are chosen from."""

import io

import numpy as np
import pytest
import torch

from learning.channels import IdealChannel, make_channel
from learning.data import load_dataset, split_users
from learning.framing import frame_reals, label_tail_amplitude, split_payload
from learning.methods import METHODS, make_method
from learning.methods.base import Reception
from learning.methods.loop import channel_uses_to_reach, run_method
from orchestrator.grouping import get_grouping_policy
from phy.registry import UnknownChoice
from tests.learning.contexts import method_context

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/learning/conftest.py


@pytest.fixture(scope="module")
def digits():
    train, test = load_dataset("digits", rng=0)
    return train, test, split_users(train, 4, "iid", auxiliary_fraction=0.2, rng=1)


def context(digits, mode="raw", seed=0, mixing="equal", batch=8):
    model = {
        "mode": mode,
        "arch": "mlp",
        "feature_dim": 16,
        "learning_rate": 3e-3,
        "batch_size": batch,
    }
    return method_context(digits, model, mixing=mixing, seed=seed)


def test_registry_lists_the_choices_on_an_unknown_name(digits):
    assert {"oam", "orthogonal", "server_mixup"} <= set(METHODS)
    with pytest.raises(UnknownChoice, match=r"unknown method 'simix'; allowed: \[.*'oam'"):
        make_method("simix", context(digits))


def test_user_payload_is_the_framed_batch_and_the_ideal_mixture_reads_back(digits):
    method = make_method("oam", context(digits))
    users = [method.make_user(k) for k in range(2)]
    for k, user in enumerate(users):
        user.start_round(k)
    sent = [user.payload(8) for user in users]
    assert all(p.vector.shape == (method.payload_reals,) for p in sent)
    assert method.payload_reals == frame_reals(8, method.dim, 10)
    tails = np.stack([p.vector.reshape(8, -1)[:, method.dim :] for p in sent])
    assert np.allclose(np.sort(tails, axis=2)[..., -1], label_tail_amplitude(10))
    w = np.array([0.25, 0.75])
    out = IdealChannel().transmit(torch.as_tensor(np.stack([p.vector for p in sent])[:, None]), w)
    _, label = split_payload(out.estimate[0].numpy(), 8, method.dim, 10)
    truth = [users[k].data.y[torch.as_tensor(sent[k].indices)] for k in range(2)]
    expected = w[0] * torch.eye(10)[truth[0]] + w[1] * torch.eye(10)[truth[1]]
    assert torch.allclose(label, expected, atol=1e-5)
    outcome = method.server_step(
        [Reception((0, 1), out.estimate[0].numpy(), w, w)], np.random.default_rng(0)
    )
    assert len(outcome.losses) == 1 and outcome.feedback == []  # raw: nothing goes back
    assert outcome.views[0].payload.shape == (8, method.dim)


def test_feature_mode_sends_the_gradient_back_and_users_learn(digits):
    method = make_method("oam", context(digits, mode="features"))
    user = method.make_user(0)
    before = [p.detach().clone() for p in user.learner.encoder.parameters()]
    vector = user.payload(8).vector
    outcome = method.server_step(
        [Reception((0,), vector, np.ones(1), np.ones(1))], np.random.default_rng(0)
    )
    (feedback,) = outcome.feedback
    assert feedback.users == (0,) and feedback.arrays["grad"].shape == (8, 16)
    user.apply(feedback, 1.0)
    after = list(user.learner.encoder.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert method.evaluate() is None
    counts = user.evaluate(method.evaluation_request())
    assert counts.count == len(method.context.test) and 0 <= counts.correct <= counts.count


def test_baselines_use_one_slot_per_user_and_server_mixup_mixes_them(digits):
    ctx = context(digits, mixing="dirichlet")
    oam, ortho, smix = (make_method(n, ctx) for n in ("oam", "orthogonal", "server_mixup"))
    assert oam.slots([3, 1]) == [[3, 1]]
    assert ortho.slots([3, 1]) == smix.slots([3, 1]) == [[3], [1]]
    users = [smix.make_user(k) for k in range(2)]
    receptions = [
        Reception((k,), users[k].payload(8).vector, np.ones(1), np.array([0.9])) for k in range(2)
    ]
    (view,) = smix.server_step(receptions, np.random.default_rng(5)).views
    lam = view.weights
    assert lam.shape == (2,) and np.isclose(lam.sum(), 1) and not np.allclose(lam, 0.5)
    mixed = lam[0] * receptions[0].estimate + lam[1] * receptions[1].estimate
    np.testing.assert_allclose(view.payload, split_payload(mixed, 8, smix.dim, 10)[0], rtol=1e-6)


def test_state_is_plain_and_round_trips_with_weights_only(digits):
    method = make_method("oam", context(digits, mode="features", batch=64))
    run_method(method, make_channel("awgn", snr_db=20, rng=1), 1, group_size=2)
    user = method.make_user(0)
    for part in (method, user):
        buffer = io.BytesIO()
        torch.save(part.state_dict(), buffer)
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)
        fresh = make_method("oam", method.context) if part is method else method.make_user(0)
        fresh.load_state_dict(state)
        for a, b in zip(fresh.state_dict().values(), part.state_dict().values(), strict=True):
            if isinstance(a, dict) and "state" not in a:
                assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_run_and_another_seed_differs(digits):
    def run(seed):
        method = make_method("oam", context(digits, seed=seed, batch=64))
        grouping = get_grouping_policy("label_aware", group_size=2)
        channel = make_channel("fading", snr_db=20, rng=3)
        return run_method(method, channel, 2, grouping=grouping, eval_channel_uses=5000)

    a, b, c = run(0), run(0), run(1)
    assert a.losses == b.losses and a.evaluations == b.evaluations
    assert a.losses != c.losses


def test_fine_evaluation_grid_resolves_the_channel_uses_to_target(digits):
    method = make_method("orthogonal", context(digits, batch=64))
    result = run_method(method, IdealChannel(), 2, group_size=2, eval_channel_uses=30000)
    uses = [e["channel_uses"] for e in result.evaluations]
    per_round = result.channel_uses // 2
    assert len(uses) > 2 and uses == sorted(uses) and uses[0] < per_round
    assert np.all(np.diff(uses) <= 30000 + uses[0])  # one evaluation per grid step
    first = channel_uses_to_reach(result.evaluations, 0.0)
    assert first == uses[0]
    assert channel_uses_to_reach(result.evaluations, 1.01) is None

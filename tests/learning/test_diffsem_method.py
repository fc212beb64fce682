"""The ``diffsem`` method in process (:func:`learning.methods.loop.run_method`): what the
receiver reads from a slot (noise on the label tail, the diffusion marginal), the closed
loop that tells users the noise their self-noise adapts to, and same seed, same metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learning.channels import make_channel
from learning.data import load_dataset, split_users
from learning.diffsem.reading import slot_marginal, tail_noise_var, user_channel_nsr
from learning.diffsem.schedule import abar, timestep_for_abar
from learning.diffsem.selfnoise import effective_nsr, receiver_scale, self_noise_keep
from learning.framing import label_tail
from learning.methods import METHODS, make_method
from learning.methods.diffsem import DiffSemMethod
from learning.methods.loop import run_method
from tests.learning.contexts import method_context

#: a link trained in about a second (the real settings are the defaults)
TINY = {
    "link_epochs": 3,
    "denoiser_epochs": 10,
    "denoiser_width": 64,
    "head_epochs": 2,
    "label_iterations": 1,
    "sampling_steps": 2,
}
MODEL = {"mode": "features", "arch": "mlp", "feature_dim": 16, "learning_rate": 1e-3}


@pytest.fixture(scope="module")
def data():
    train, test = load_dataset("digits")
    return train, test, split_users(train, 2, auxiliary_fraction=0.8, rng=0)


def _method(data, seed: int = 0, **options) -> DiffSemMethod:
    context = method_context(
        data, {**MODEL, "batch_size": 32}, seed=seed, options={**TINY, **options}
    )
    return make_method("diffsem", context)  # type: ignore[return-value]


@pytest.mark.parametrize("group_size", [1, 2])
def test_noise_measured_on_the_label_tail(group_size):
    """The reals of the tail that carry no label measure the noise variance per real."""
    g = np.random.default_rng(0)
    labels = g.integers(0, 10, size=(group_size, 4000))
    weights = np.full(group_size, 1.0 / group_size)
    clean = np.einsum("k,kbc->bc", weights, label_tail(labels, 10))
    noise_var = 0.004
    received = clean + g.normal(0.0, np.sqrt(noise_var), clean.shape)
    assert tail_noise_var(received, 10, group_size) == pytest.approx(noise_var, rel=0.05)
    np.testing.assert_allclose(user_channel_nsr(noise_var, weights), 2 * noise_var / weights**2)


@pytest.mark.parametrize("r_c", [0.01, 0.5, 5.0])
def test_one_user_marginal_is_the_receivers_when_the_user_adapted(r_c):
    """K = 1, the user adapted to the channel: the slot's marginal is exactly the
    diffusion receiver's (scale sqrt(2 / (1 + r_c)), abar = 1 / (1 + max(r_T, r_c)))."""
    r_t = 3.0
    y = torch.randn(8, 16)
    keep = self_noise_keep(np.array([r_c]), r_t)
    x_t, a = slot_marginal(y, 0.5 * r_c, np.ones(1), keep)
    torch.testing.assert_close(x_t, y * receiver_scale(np.full(8, r_c)))
    assert a == pytest.approx(1.0 / (1.0 + float(effective_nsr(r_c, r_t))))
    assert float(abar(timestep_for_abar(np.array([a])))[0]) == pytest.approx(a, rel=1e-4)


def test_closed_loop_self_noise_follows_the_measured_channel(data, one_thread):
    """After a round on AWGN, each user adapts its self-noise to the ratio the receiver
    measured (its feedback), and that ratio falls as the SNR rises."""
    told = {}
    for snr_db in (7.0, 23.0):
        method = _method(data)
        result = run_method(method, make_channel("awgn", snr_db=snr_db, rng=0), 1, group_size=2)
        assert [user.nsr for user in result.users] == pytest.approx(list(method.told))
        told[snr_db] = float(np.mean(method.told))
    assert told[7.0] > 10 * told[23.0] > 0  # 16 dB apart: a factor of about 40


def test_same_seed_same_metrics_and_simix_slots(data, one_thread):
    """Same seed: the same evaluations and losses; ``slots = "simix"`` puts the group in
    one slot (half the slots of one user per slot)."""
    runs = [
        run_method(_method(data, seed=5), make_channel("fading", snr_db=15, rng=1), 1)
        for _ in range(2)
    ]
    assert runs[0].evaluations == runs[1].evaluations
    assert runs[0].losses == runs[1].losses
    assert runs[0].accuracy > 0.3  # chance 0.1
    simix = run_method(
        _method(data, seed=5, slots="simix"),
        make_channel("fading", snr_db=15, rng=1),
        1,
        group_size=2,
    )
    assert (
        simix.slots * 2
        == run_method(
            _method(data, seed=5), make_channel("fading", snr_db=15, rng=1), 1, group_size=2
        ).slots
    )


@pytest.mark.parametrize(("link", "peer"), [("plain", "semantic_plain"), ("ibal", "semantic_ibal")])
def test_baseline_links_send_no_self_noise(data, link, peer, one_thread):
    """The plain and information-bottleneck links keep the whole signal whatever the
    channel, chosen by the ``link`` option or as peer methods; DiffSem keeps
    (1 + r_c) / (1 + r_T) of it."""
    context = method_context(data, {**MODEL, "batch_size": 32}, options=TINY)
    for method in (_method(data, link=link), make_method(peer, context)):
        assert method.link.name == link
        np.testing.assert_allclose(method.keep(np.array([0.0, 1.0])), 1.0)
    assert "noise_level" not in METHODS[peer].options
    diffsem = _method(data, noise_level=3.0)
    np.testing.assert_allclose(diffsem.keep(np.array([0.0, 1.0])), [0.25, 0.5])

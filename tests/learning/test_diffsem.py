"""DiffSem on the air (learning.diffsem): the self-noise rule measured through the radio
model, the diffusion receiver against its first pass, seeding, and settings errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learning.attacks.inversion import train_evaluation_classifier
from learning.data import load_dataset, split_users
from learning.diffsem import DiffSemSettings, SettingsError, air, link_accuracy, make_link
from learning.diffsem.base import air_pass
from learning.diffsem.eavesdropper import attack_figures
from learning.diffsem.schedule import abar, timestep_for_nsr
from learning.diffsem.selfnoise import (
    add_self_noise,
    effective_nsr,
    receiver_scale,
    self_noise_keep,
)
from learning.models import PowerNormalize
from phy.link_budget import subcarrier_noise_var

TINY = {
    "encoder": "mlp",
    "feature_dim": 32,
    "epochs": 10,
    "denoiser_epochs": 60,
    "denoiser_width": 128,
    "head_epochs": 10,
    "noise_level": 4.0,
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; the machine is shared
    yield
    torch.set_num_threads(threads)


def _features(n: int = 4000, d: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return PowerNormalize()(torch.randn(n, d, generator=g))


def _measured_nsr(clean: torch.Tensor, received: np.ndarray) -> float:
    """Noise-to-signal ratio of ``received`` as an affine copy of ``clean``: regress out
    the signal, noise power over signal power."""
    x = clean.double().numpy().ravel()
    y = np.asarray(received, float).ravel()
    gain = float(x @ y / (x @ x))
    residual = y - gain * x
    return float(residual.var() / (gain**2 * x.var()))


def test_self_noise_rule_closed_form():
    r_c = np.array([0.0, 0.5, 1.0, 2.0, 10.0])
    np.testing.assert_allclose(self_noise_keep(r_c, 1.0), np.minimum(1, (1 + r_c) / 2))
    np.testing.assert_allclose(effective_nsr(r_c, 1.0), np.maximum(r_c, 1.0))
    np.testing.assert_allclose(self_noise_keep(r_c, 0.0), 1.0)  # no target: no self-noise


@pytest.mark.parametrize(
    ("snr_db", "noise_level"), [(7.0, 1.0), (23.0, 1.0), (7.0, 0.05), (15.0, 4.0)]
)
def test_total_noise_follows_the_documented_rule_through_the_radio_model(snr_db, noise_level):
    """Through the OFDM model, the received features carry exactly max(r_T, r_c) of
    noise per unit signal, with r_c = 2 nv / |g|^2 from the link budget; the transmit
    power stays 0.5 per real."""
    x = _features()
    g = np.random.default_rng(1)
    gains = air.legit_gains(x.shape[0], snr_db, rng=g)
    r_c = air.channel_nsr(gains, snr_db)
    np.testing.assert_allclose(r_c, 2 * subcarrier_noise_var(snr_db))  # awgn: |g| = 1
    sent = add_self_noise(x, r_c, noise_level, torch.Generator().manual_seed(2))
    assert float(sent.pow(2).mean()) == pytest.approx(0.5, rel=0.02)
    received = air.receive(sent, gains, snr_db, rng=g)
    expected = max(noise_level, float(r_c[0]))
    assert _measured_nsr(x, received.numpy()) == pytest.approx(expected, rel=0.05)
    # the receiver's scaling turns it into the diffusion marginal at abar = 1/(1+r)
    x_t = received * receiver_scale(r_c)
    assert float(x_t.pow(2).mean()) == pytest.approx(1.0, rel=0.03)
    t = timestep_for_nsr(effective_nsr(r_c, noise_level))
    a = float(abar(t[:1]))
    assert a == pytest.approx(1 / (1 + expected), rel=1e-4)


def test_eavesdropper_at_the_same_snr_sees_the_same_total_noise():
    x = _features(seed=3)
    snr_db, r_t = 11.0, 1.5
    r_c = air.channel_nsr(air.legit_gains(x.shape[0], snr_db), snr_db)
    sent = add_self_noise(x, r_c, r_t, torch.Generator().manual_seed(4))
    view = air.eavesdropper_view(sent.numpy(), snr_db, snr_db, rng=5)
    assert _measured_nsr(x, view.payload) == pytest.approx(r_t, rel=0.06)
    better = air.eavesdropper_view(sent.numpy(), snr_db, snr_db + 5.0, rng=5)
    assert _measured_nsr(x, better.payload) < r_t


def test_schedule_inverse_is_exact():
    t = torch.linspace(0.0, 0.95, 20)
    a = abar(t)
    back = timestep_for_nsr((1 - a) / a)
    np.testing.assert_allclose(back.numpy(), t.numpy(), atol=1e-4)


@pytest.mark.parametrize(
    ("field", "value"),
    [("noise_level", -1.0), ("conditioning", "bogus"), ("label_iterations", 0)],
)
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(SettingsError, match=f"^{field}:"):
        DiffSemSettings(**{field: value})
    with pytest.raises(SettingsError, match=f"^{field}:"):
        make_link("diffsem", (1, 8, 8), 10, {field: value})


def test_unknown_setting_and_link_are_named():
    with pytest.raises(SettingsError, match="^noise_levl:"):
        make_link("diffsem", (1, 8, 8), 10, {"noise_levl": 1.0})
    with pytest.raises(ValueError, match="method: unknown link 'nope'"):
        make_link("nope", (1, 8, 8), 10)
    with pytest.raises(ValueError, match="noise_level"):
        add_self_noise(_features(4), np.zeros(4), -0.5)


@pytest.fixture(scope="module")
def digits():
    train, test = load_dataset("digits")
    split = split_users(train, 1, auxiliary_fraction=0.3, rng=0)
    return train.subset(split.users[0]), train.subset(split.auxiliary), test


def _fit(digits, conditioning: str, seed: int = 7):
    legit, _, _ = digits
    link = make_link("diffsem", legit.input_shape, 10, {**TINY, "conditioning": conditioning}, seed)
    return link.fit(legit)


@pytest.fixture(scope="module")
def label_link(digits):
    return _fit(digits, "label")


def test_diffusion_receiver_beats_its_first_pass_on_noisy_features(digits, label_link):
    """At r_T = 4 (features at -6 dB), the U-Net's estimate of the clean features is
    closer to them than the linear MMSE estimate, and the receiver classifies better
    after diffusion than on its first pass (the same head on the linear estimate)."""
    _, _, test = digits
    receiver = label_link.receiver
    with torch.no_grad():
        step = air_pass(label_link, test.x, 15.0, rng=8)
    passes = receiver.passes(step.received, step.channel_nsr)
    acc = {k: float((v.argmax(1) == test.y).float().mean()) for k, v in passes.items()}
    assert list(acc) == ["first_pass", "link_head", "unconditional", "label_1", "label_2"]
    assert acc["label_2"] > acc["first_pass"]
    assert acc["unconditional"] > acc["first_pass"]
    assert acc["label_2"] > 0.5  # far above chance (0.1)
    x_t, t = receiver.diffusion_input(step.received, step.channel_nsr)
    clean = step.features.detach()
    mse_linear = float((receiver.linear(x_t, t) - clean).pow(2).mean())
    mse_diffusion = float((receiver.last_features(x_t, t) - clean).pow(2).mean())
    assert mse_diffusion < 0.9 * mse_linear


def test_same_seed_same_metrics(digits, label_link):
    legit, aux, test = digits
    again = _fit(digits, "label")
    assert link_accuracy(again, test, 11.0, rng=3) == link_accuracy(label_link, test, 11.0, rng=3)
    evaluator = train_evaluation_classifier(aux.x.numpy(), aux.y.numpy(), 10, epochs=3, rng=1)
    kwargs = {"epochs": 3}
    first = attack_figures(label_link, aux, test, 11.0, 16.0, evaluator, kwargs, rng=4)
    second = attack_figures(again, aux, test, 11.0, 16.0, evaluator, kwargs, rng=4)
    assert first == second
    assert 0.0 <= first["task_accuracy"] <= 1.0 and "task_accuracy_chance" in first
    third = attack_figures(again, aux, test, 11.0, 16.0, evaluator, kwargs, rng=5)
    assert third != first

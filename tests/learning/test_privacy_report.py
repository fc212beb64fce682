"""Group composition, the observation process, privacy figures and the report/plot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learning.data import Dataset
from learning.privacy_report import (
    compose_groups,
    group_truth,
    grouped_privacy_figures,
    observe_groups,
    plot_privacy_utility,
    privacy_utility_report,
)
from phy.rng import make_rng
from tests.learning.test_attacks import N_CLASSES, tiny_images


def test_compose_groups_schemes():
    y = np.repeat(np.arange(5), 6)
    for scheme in ("identical", "random", "distinct"):
        idx = compose_groups(y, 3, 400, scheme, 5, rng=0)
        assert idx.shape == (3, 400)
        srt = np.sort(idx, axis=0)
        assert np.all(srt[1:] != srt[:-1]), "a sample appears twice in a group"
        labels = np.sort(y[idx], axis=0)
        same = labels[1:] == labels[:-1]
        if scheme == "identical":
            assert np.all(same)
        elif scheme == "distinct":
            assert not np.any(same)
        else:
            assert np.any(same) and not np.all(same)
    np.testing.assert_array_equal(
        compose_groups(y, 3, 5, "distinct", 5, rng=1), compose_groups(y, 3, 5, "distinct", 5, rng=1)
    )
    with pytest.raises(ValueError, match="scheme"):
        compose_groups(y, 3, 5, "orthogonal", 5)
    with pytest.raises(ValueError, match="classes"):
        compose_groups(y, 6, 5, "distinct", 5)
    with pytest.raises(ValueError, match="no class"):
        compose_groups(y, 7, 5, "identical", 5)
    with pytest.raises(ValueError, match="labels"):
        compose_groups(np.array([0, 9]), 1, 5, "random", 5)


def test_observe_groups_ideal_and_ota():
    gen = make_rng(0)
    payloads = gen.normal(0, np.sqrt(0.5), size=(20, 8)).astype(np.float32)
    labels = np.arange(20) % 4
    idx = compose_groups(labels, 3, 50, "random", 4, rng=1)
    ideal = observe_groups(payloads, labels, idx, 4, channel="ideal", mixing="dirichlet", rng=2)
    w = ideal.weights
    assert w.shape == (3, 50) and np.allclose(w.sum(0), 1)
    np.testing.assert_allclose(ideal.payload, np.einsum("kb,kbd->bd", w, payloads[idx]), atol=1e-5)
    np.testing.assert_allclose(
        ideal.mixed_label, np.einsum("kb,kbc->bc", w, np.eye(4)[labels[idx]]), atol=1e-6
    )
    ota = observe_groups(payloads, labels, idx, 4, channel="ota", snr_db=40.0, rng=3)
    err = np.mean((ota.payload - payloads[idx].mean(0)) ** 2)
    assert 0 < err < 1e-2  # high SNR: close to the ideal mixture, but noisy
    noisy = observe_groups(payloads, labels, idx, 4, channel="ota", snr_db=0.0, rng=3)
    assert np.mean((noisy.payload - payloads[idx].mean(0)) ** 2) > 10 * err
    no_label = observe_groups(payloads, labels, idx, 4, send_label=False, weights_known=False)
    assert no_label.mixed_label is None and no_label.weights is None
    with pytest.raises(ValueError, match="channel"):
        observe_groups(payloads, labels, idx, 4, channel="wired")
    with pytest.raises(ValueError, match="finite"):
        observe_groups(np.full_like(payloads, np.nan), labels, idx, 4)


def test_observe_groups_eavesdropper():
    """The eavesdropper's view: one user comes through at its SNR; several users
    pre-compensated for someone else arrive misaligned (far worse than the server's
    mixture at the same SNR); labels are the raw tail (can be negative), weights unknown,
    the draws reproducible from the seed."""
    gen = make_rng(0)
    payloads = gen.normal(0, np.sqrt(0.5), size=(200, 16)).astype(np.float32)
    labels = np.arange(200) % 5
    one = compose_groups(labels, 1, 300, "random", 5, rng=1)
    single = observe_groups(payloads, labels, one, 5, channel="eavesdropper", snr_db=30.0, rng=2)
    assert single.weights is not None  # weights_known defaults to True
    # (per group: the eavesdropper's own Rayleigh fade sets its SNR)
    assert np.median(np.mean((single.payload - payloads[one[0]]) ** 2, axis=1)) < 0.003
    label_error = np.abs(single.mixed_label - np.eye(5)[labels[one[0]]])
    assert np.median(label_error) < 0.02
    idx = compose_groups(labels, 4, 2000, "random", 5, rng=1)
    kw = {"snr_db": 30.0, "weights_known": False, "rng": 3}
    eve = observe_groups(payloads, labels, idx, 5, channel="eavesdropper", **kw)
    server = observe_groups(payloads, labels, idx, 5, channel="ota", **kw)
    ideal = payloads[idx].mean(0)
    eve_err = np.median(np.mean((eve.payload - ideal) ** 2, axis=1))
    server_err = np.median(np.mean((server.payload - ideal) ** 2, axis=1))
    assert eve_err > 20 * server_err
    assert eve.weights is None and eve.mixed_label.shape == (2000, 5)
    assert eve.mixed_label.min() < -0.1  # complex weights leak between pair members
    # the tail's entries sum to the total weight 1 on average (composite equalisation)
    assert np.median(eve.mixed_label.sum(1)) == pytest.approx(1.0, abs=0.1)
    again = observe_groups(payloads, labels, idx, 5, channel="eavesdropper", **kw)
    np.testing.assert_array_equal(again.payload, eve.payload)
    # Eve at a lower SNR than the receiver: noisier
    far = observe_groups(
        payloads, labels, one, 5, channel="eavesdropper", snr_db=30.0, eavesdropper_snr_db=5.0
    )
    assert np.median(np.mean((far.payload - payloads[one[0]]) ** 2, axis=1)) > 0.03


def test_grouped_figures_report_and_plot(tmp_path):
    x, y = tiny_images(240, rng=0)
    aux = Dataset(torch.from_numpy(x[:120]), torch.from_numpy(y[:120]), N_CLASSES, "tiny")
    vic = Dataset(torch.from_numpy(x[120:]), torch.from_numpy(y[120:]), N_CLASSES, "tiny")
    fast = {
        "model_inversion": {"epochs": 8, "batch_size": 64, "hidden": 64, "evaluator_epochs": 20},
        "label_inference": {"epochs": 8, "batch_size": 64, "hidden": 64},
    }
    figs = grouped_privacy_figures(
        aux,
        vic,
        lambda t: t.flatten(1) - 0.5,
        group_size=2,
        n_aux_groups=600,
        n_victim_groups=100,
        attack_kwargs=fast,
        rng=0,
        channel="ota",
        snr_db=20.0,
    )
    assert set(figs) == {"identical", "random", "distinct"}
    for per_attack in figs.values():
        inv, li = per_attack["model_inversion"], per_attack["label_inference"]
        assert 0 <= inv["task_accuracy"] <= 1 and 0 <= inv["task_accuracy_chance"] <= 1
        assert li["per_user_accuracy"] > li["per_user_accuracy_chance"]
    # identical pairs: the mixed label names the one class
    assert figs["identical"]["label_inference"]["exact_set_accuracy"] >= 0.9
    report = privacy_utility_report(0.9, figs)
    assert report["legitimate_accuracy"] == 0.9
    assert len(report["rows"]) == 3 * 3
    row = report["rows"][0]
    assert row["advantage"] == pytest.approx(row["success"] - row["chance"])
    assert row["utility_minus_success"] == pytest.approx(0.9 - row["success"])
    png = plot_privacy_utility(report, tmp_path / "sub" / "report.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="legitimate_accuracy"):
        privacy_utility_report(1.5, figs)
    with pytest.raises(ValueError, match="chance"):
        privacy_utility_report(0.9, {"s": {"model_inversion": {"task_accuracy": 0.5}}})


def test_group_truth_layout():
    x, y = tiny_images(8, rng=1)
    idx = np.array([[0, 1], [2, 3]])
    truth = group_truth(x, y, idx, N_CLASSES)
    assert truth.inputs.shape == (2, 2, 1, 6, 6)
    np.testing.assert_array_equal(truth.labels, y[idx])


def test_observe_groups_draws_weights_with_the_given_policy():
    """The attacker's simulated slots use the runtime's MixingPolicy (object or name)."""
    from learning.mixup import DirichletWeights

    gen = make_rng(4)
    payloads = gen.normal(0, np.sqrt(0.5), size=(30, 6)).astype(np.float32)
    labels = np.arange(30) % 3
    idx = compose_groups(labels, 3, 400, "random", 3, rng=5)
    kw = {"channel": "ideal", "rng": 6}
    peaked = observe_groups(payloads, labels, idx, 3, mixing=DirichletWeights(0.05), **kw).weights
    flat = observe_groups(payloads, labels, idx, 3, mixing=DirichletWeights(200.0), **kw).weights
    equal = observe_groups(payloads, labels, idx, 3, mixing="equal", **kw).weights
    assert peaked.max(axis=0).mean() > 0.8 and flat.max(axis=0).mean() < 0.45
    np.testing.assert_allclose(equal, 1 / 3, rtol=1e-6)
    with pytest.raises(KeyError):
        observe_groups(payloads, labels, idx, 3, mixing="no_such_policy", **kw)


def test_observe_groups_models_the_configured_time_base():
    """On the stream time base users whose acquisition burst is not detected are silent:
    at 5 dB many more groups lose a user's label than on the ideal (cyclic) loop."""
    gen = make_rng(0)
    payloads = gen.normal(0, np.sqrt(0.5), size=(300, 8)).astype(np.float32)
    labels = np.arange(300) % 10
    idx = compose_groups(labels, 3, 4000, "distinct", 10, rng=1)
    lost = {}
    for time_base in ("ideal", "stream"):
        obs = observe_groups(payloads, labels, idx, 10, snr_db=5.0, time_base=time_base, rng=3)
        mass = np.take_along_axis(obs.mixed_label, labels[idx].T, axis=1)  # (B, K)
        lost[time_base] = np.mean(mass.min(axis=1) < 0.02)
    assert lost["stream"] > 3 * lost["ideal"]
    with pytest.raises(ValueError, match="time base"):
        observe_groups(payloads, labels, idx, 10, time_base="cyclic")

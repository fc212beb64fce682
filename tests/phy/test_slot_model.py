"""phy.slot_model: the time bases' slot as the attackers model it (silence below the
acquisition detector, power control on estimated gains) and ota_mixture planning on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phy.channel import make_channel_model
from phy.link_budget import subcarrier_noise_var
from phy.ota import ACQUISITION_THRESHOLD, PROBE_REPS
from phy.ota_model import ota_mixture
from phy.slot_model import acquisition_heard, gain_observations, receiver_gains
from phy.waveform import OfdmConfig

CFG = OfdmConfig()
#: the per-sample SNR at which the noise-free Schmidl-Cox metric meets the threshold
RHO = np.sqrt(ACQUISITION_THRESHOLD) / (1 - np.sqrt(ACQUISITION_THRESHOLD))


def test_acquisition_heard_at_the_detector_threshold():
    nv = subcarrier_noise_var(10.0)
    gain_at = np.sqrt(RHO * CFG.n_fft * nv / CFG.used_bins.size)  # per-sample SNR = RHO
    h = np.array([[0.98 * gain_at, 1.02 * gain_at, 1j * 1.02 * gain_at, 0.0]])
    np.testing.assert_array_equal(acquisition_heard(h, nv, CFG), [[False, True, True, False]])
    assert acquisition_heard(h, nv, CFG, p_max=1.1)[0, 0]  # more transmit power: heard


def test_receiver_gains_ideal_exact_stream_estimated_with_silence():
    snr_db, k = 5.0, 4
    nv = subcarrier_noise_var(snr_db)
    h = make_channel_model("rayleigh").generate((20000, k), np.random.default_rng(1))
    np.testing.assert_array_equal(receiver_gains(h, nv, "ideal"), h)
    est = receiver_gains(h, nv, "stream", CFG, rng=2)
    silent = est == 0
    # Rayleigh |h|^2 ~ Exp(1): silent when the burst's per-sample SNR is below RHO
    p_silent = 1 - np.exp(-RHO * CFG.n_fft * nv / CFG.used_bins.size)
    assert silent.mean() == pytest.approx(p_silent, abs=0.01)
    np.testing.assert_array_equal(silent, ~acquisition_heard(h, nv, CFG))
    error = (est - h)[~silent]
    n_obs = gain_observations("stream", k, CFG)
    assert n_obs == PROBE_REPS * CFG.used_bins.size / k
    assert np.mean(np.abs(error) ** 2) == pytest.approx(nv / n_obs, rel=0.05)
    assert abs(np.mean(error)) < 0.05 * np.sqrt(nv / n_obs)  # unbiased
    assert gain_observations("tdd", 2, CFG) == 2 * n_obs
    with pytest.raises(ValueError, match="time base"):
        receiver_gains(h, nv, "cyclic")


def test_ota_mixture_plans_on_known_gains_and_silences_unheard_users():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 8, dtype=torch.float64, generator=gen)
    w = np.full(3, 1 / 3)
    h = np.array([0.9 + 0.3j, -0.5j, 1.2])
    base, res = ota_mixture(x, w, h, 0.0)
    same, res_same = ota_mixture(x, w, h, 0.0, h_known=h)
    torch.testing.assert_close(same, base)
    known = h.copy()
    known[1] = 0  # user 1 not heard at acquisition
    out, res_known = ota_mixture(x, w, h, 0.0, h_known=known)
    assert res_known.tx_scaling[1] == 0
    sym = torch.view_as_complex(x.reshape(3, 5, 4, 2)).numpy()
    np.testing.assert_allclose(
        torch.view_as_complex(out.reshape(5, 4, 2)).numpy(),
        (res_known.rx_scaling * h[0] * res_known.tx_scaling[0]) * sym[0]
        + (res_known.rx_scaling * h[2] * res_known.tx_scaling[2]) * sym[2],
        atol=1e-12,
    )
    # planning on a wrong gain misaligns the user: its coefficient is h / h_known times w
    off = h * np.array([1.0, 1.0, 1.1])
    _, res_off = ota_mixture(x, w, h, 0.0, h_known=off)
    coef = res_off.rx_scaling * h * res_off.tx_scaling
    assert coef[2] == pytest.approx(w[2] / 1.1)

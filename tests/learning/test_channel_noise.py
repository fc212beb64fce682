"""The in-process channel (:mod:`learning.channels`) delivers the noise per real of the
documented SNR convention (:mod:`phy.link_budget`: ``subcarrier_noise_var`` per
unit-power complex symbol, reals packed as the waveform packs them), the same as the
radios' model of a one-user slot (:mod:`learning.diffsem.air`, :mod:`phy.eavesdropper`)
and the waveform itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learning.channels import make_channel
from learning.diffsem import air
from phy.link_budget import subcarrier_noise_var
from phy.waveform import OfdmConfig, payload_to_symbols, symbols_to_payload

B, D = 4000, 64


def _noise_per_real(received: np.ndarray, sent: np.ndarray) -> float:
    return float(np.mean((np.asarray(received, float) - sent) ** 2))


@pytest.mark.parametrize("snr_db", [7.0, 15.0])
def test_in_process_channel_and_radio_model_deliver_the_same_noise_per_real(snr_db):
    rng = np.random.default_rng(0)
    sent = rng.standard_normal((B, D))  # unit-power reals: unit-power subcarrier symbols
    nv = subcarrier_noise_var(snr_db)
    # in-process loop: one user, weight 1, unit gain, inverted exactly (receive scale 1)
    channel = make_channel("awgn", snr_db=snr_db, power_policy="channel_inversion", rng=1)
    out = channel.transmit(torch.as_tensor(sent)[None], np.ones(1))
    in_process = _noise_per_real(out.estimate.numpy(), sent)
    # the radios' one-user slot model (what learning.diffsem trains and attacks on)
    gains = air.legit_gains(B, snr_db, "awgn", "channel_inversion", rng=2)
    radio_model = _noise_per_real(air.receive(torch.as_tensor(sent), gains, snr_db, 3), sent)
    # the waveform: reals -> symbols, CN(0, nv) per symbol, symbols -> reals
    cfg = OfdmConfig()
    row = sent[0]
    symbols = np.stack([payload_to_symbols(x, cfg) for x in sent])
    noise = np.sqrt(nv / 2) * (
        rng.standard_normal(symbols.shape) + 1j * rng.standard_normal(symbols.shape)
    )
    waveform = np.stack([symbols_to_payload(s, row.size, cfg) for s in symbols + noise])
    by_waveform = _noise_per_real(waveform, sent)
    for measured in (in_process, radio_model, by_waveform):
        assert measured == pytest.approx(nv, rel=0.02)
    assert out.mse == pytest.approx(nv, rel=1e-9)  # per complex symbol = per unit-power real

"""phy.link_budget: the one SNR convention, realised by the medium and used per subcarrier."""

import math

import numpy as np
import pytest

from phy.link_budget import PATH_LOSS_DB, noise_dbfs_for, subcarrier_noise_var
from phy.medium import SharedMedium
from phy.waveform import OfdmConfig


@pytest.mark.parametrize("snr_db", [-5.0, 10.0, 20.0, 35.0])
def test_medium_noise_realises_the_per_sample_snr(snr_db):
    config = OfdmConfig()
    medium = SharedMedium(
        seed=0, noise_dbfs=noise_dbfs_for(snr_db, config), default_path_loss_db=PATH_LOSS_DB
    )
    rx = medium.add_radio("rx")
    tx = medium.add_radio("tx")
    tx.tx_attenuation_db = 0.0  # full power; the RX gain scales signal and noise alike
    gain_db = -PATH_LOSS_DB - tx.tx_attenuation_db + rx.rx_gain_db  # unit-gain channel
    signal = config.amplitude**2 * 10 ** (gain_db / 10)
    assert 10 * math.log10(signal / medium.noise_power("rx")) == pytest.approx(snr_db)


def test_subcarrier_noise_is_the_per_sample_noise_on_the_used_bins():
    config = OfdmConfig()
    ratio = config.used_bins.size / config.n_fft
    assert subcarrier_noise_var(20.0) == pytest.approx(0.01 * ratio)
    assert subcarrier_noise_var(0.0, config) == pytest.approx(ratio)
    assert np.isclose(subcarrier_noise_var(10.0) / subcarrier_noise_var(20.0), 10.0)
    with pytest.raises(ValueError, match="finite"):
        subcarrier_noise_var(float("nan"))
    with pytest.raises(ValueError, match="finite"):
        noise_dbfs_for(float("inf"))

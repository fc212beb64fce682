"""The run's radios on the simulated medium: the passive eavesdropper."""

from __future__ import annotations

import numpy as np

from orchestrator import experiment as ex
from orchestrator.config import resolve_experiment
from orchestrator.radios import SimRunRadios, radio_config
from phy.sync import detect_frames
from phy.waveform import modulate

WINDOW = 6000  # covers any start latency (< 2 ms at 1 MS/s) plus the frame


def _round(eavesdropper: bool, snr_db: float = 30.0) -> tuple[np.ndarray, np.ndarray | None]:
    """Round 0 of a 2-user run: user 0 plays a cyclic frame, the receiver reads one
    buffer; returns (receiver's first WINDOW samples, the eavesdropper's capture)."""
    config = resolve_experiment(
        {
            "users": {"count": 2, "group_size": 2, "node_processes": 1},
            "channel": {"snr_db": snr_db},
            "attacks": {"eavesdropper": eavesdropper},
        }
    )
    radios = SimRunRadios(config, f"radios-test-{eavesdropper}")
    try:
        radios.start_round(0)
        ofdm = ex.ofdm_config(config)
        payload = np.random.default_rng(0).standard_normal(480) / np.sqrt(2)
        buffer = np.zeros(WINDOW + 4000, np.complex64)
        frame = modulate(payload, ofdm)
        buffer[: frame.size] = frame
        user = radios.service.open(ex.user_ids(config)[0])
        user.configure(radio_config(config))
        user.transmit(buffer, cyclic=True)
        heard = radios.receiver.receive(radios.receiver.config.rx_buffer_size)
        return heard[:WINDOW], radios.eavesdrop(WINDOW)
    finally:
        radios.close()


def test_eavesdropper_leaves_the_receiver_untouched_and_hears_its_window():
    without, none = _round(False)
    heard, eve = _round(True)
    assert none is None
    np.testing.assert_array_equal(heard, without)  # same seeded channel with Eve on the air
    assert eve is not None and eve.shape == (WINDOW,) and eve.dtype == np.complex64
    config = ex.ofdm_config(resolve_experiment({}))
    at_rx, at_eve = detect_frames(heard, config), detect_frames(eve, config)
    assert len(at_rx) == 1 and len(at_eve) == 1
    assert abs(at_rx[0].start - at_eve[0].start) < 0.5  # the same stretch of air
    assert abs(at_rx[0].gain) != abs(at_eve[0].gain)  # through its own channel

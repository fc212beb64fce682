"""The lab-real time bases (radio.time_base) on PlutoRadios: real radios named by
``AIRMIX_PLUTO_URIS`` (comma-separated; the second is the receiver, the others users, as
in test_hil.py; run with ``-m hardware``; wiring and sync pulse in
hardware/LAB_GUIDE.md) or, behind ``-m slow``, the same checks on virtual Plutos.

``tdd`` on real radios needs firmware v0.39+ on every radio and the sync pulse wired
to all of them; ``AIRMIX_SYNC_PERIOD_S`` gives its period (default 1.0: a GPSDO's
1 PPS). Without a receiver reference the checks are relative: the mixup estimate must
carry the weighted sum far above its error (no genie on real radios)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

from radio.base import RadioConfig, TimeBaseUnsupported
from radio.pluto import PlutoRadio
from radio.time_base import TimeBaseSession

LO_HZ = 915e6
CFG = RadioConfig(
    center_hz=LO_HZ, sample_rate_hz=1e6, tx_attenuation_db=10.0, rx_gain_db=30.0,
    rx_buffer_size=16384,
)  # fmt: skip
VIRTUAL_SYNC_PERIOD_S = 0.02
N_REALS = 960


def _sync_period(kind: str) -> float:
    if kind == "virtual":
        return VIRTUAL_SYNC_PERIOD_S
    return float(os.environ.get("AIRMIX_SYNC_PERIOD_S", "1.0"))


@pytest.fixture(
    params=[
        pytest.param(("virtual", "stream"), marks=pytest.mark.slow),
        pytest.param(("virtual", "tdd"), marks=pytest.mark.slow),
        pytest.param(("real", "stream"), marks=pytest.mark.hardware),
        pytest.param(("real", "tdd"), marks=pytest.mark.hardware),
    ],
    ids=["virtual-stream", "virtual-tdd", "real-stream", "real-tdd"],
)
def bench(request) -> Iterator[tuple[str, PlutoRadio, list[PlutoRadio]]]:
    """(time base, receiver, users): PlutoRadios on real radios or on 1+3 virtual
    Plutos (+-25 ppm, millisecond start jitter, a sync line for tdd)."""
    kind, time_base = request.param
    if kind == "real":
        uris = [u.strip() for u in os.environ.get("AIRMIX_PLUTO_URIS", "").split(",") if u.strip()]
        if len(uris) < 2:
            pytest.skip("set AIRMIX_PLUTO_URIS=uri_user,uri_rx[,uri_user...] for real Plutos")
        radios = [PlutoRadio(u, config=CFG) for u in uris]
        try:
            yield time_base, radios[1], [radios[0], *radios[2:]]
        finally:
            for radio in radios:
                radio.close()
        return
    from hardware.virtual_pluto import VirtualPlutoLab

    medium = {"sync_period_s": VIRTUAL_SYNC_PERIOD_S} if time_base == "tdd" else {}
    with VirtualPlutoLab(4, seed=31, medium_name=None, **medium) as lab:
        for user in ("pluto0", "pluto2", "pluto3"):
            lab.medium.set_link(user, "pluto1", path_loss_db=40.0)
        radios = [PlutoRadio(u, config=CFG) for u in lab.uris]
        try:
            yield time_base, radios[1], [radios[0], *radios[2:]]
        finally:
            for radio in radios:
                radio.close()


def _session(time_base: str, rx: PlutoRadio, users: list[PlutoRadio], kind: str):
    period = _sync_period(kind) if time_base == "tdd" else None
    try:
        return TimeBaseSession(
            rx, users, time_base=time_base, carrier_hz=LO_HZ, sync_period_s=period
        )
    except TimeBaseUnsupported as error:  # firmware before v0.39: the cause is named
        assert "v0.39" in str(error) or "TDD engine" in str(error)
        pytest.skip(f"tdd not available on these radios: {error}")


def test_time_base_mixup_holds_and_acquires_once(bench, request):
    time_base, rx, users = bench
    kind = "real" if "real" in request.node.callspec.id else "virtual"
    session = _session(time_base, rx, users, kind)
    rng = np.random.default_rng(0)
    w = np.full(len(users), 1.0 / len(users))
    outs = [session.mixup(rng.standard_normal((len(users), N_REALS)), w) for _ in range(3)]
    for out in outs:  # the weighted sum carried 13 dB above the estimate's error
        assert out.mse_vs_target < 0.05 * np.mean(out.target**2)
    # acquisition once per user (no underflow or overflow on a healthy link)
    assert session.air.reacquisitions == 0
    assert session.air.acquisition == 2 * len(users) * session.rx.burst_len
    assert session.air.payload > 0 and session.air.probe > 0
    if time_base == "stream":  # the sticky flags read through direct_reg_access
        assert set(rx.status()) == {"tx_underflow", "rx_overflow"}


def test_stream_underflow_is_flagged_and_the_user_reacquired(bench, request):
    time_base, rx, users = bench
    if time_base != "stream":
        pytest.skip("underflow recovery is the stream time base's")
    kind = "real" if "real" in request.node.callspec.id else "virtual"
    session = _session(time_base, rx, users, kind)
    rng = np.random.default_rng(1)
    w = np.full(len(users), 1.0 / len(users))
    session.mixup(rng.standard_normal((len(users), N_REALS)), w)
    feeder = users[0]._feeder
    feeder.running = False  # the host stalls: the queue runs dry, the DAC underflows
    feeder.thread.join(timeout=5.0)
    session.skip(200_000)  # the receiver reads on for 0.2 s
    users[0].start_stream()
    out = session.mixup(rng.standard_normal((len(users), N_REALS)), w)
    assert session.air.underflows + session.air.lost_tracking >= 1
    assert session.air.reacquisitions >= 1
    assert out.mse_vs_target < 0.05 * np.mean(out.target**2)

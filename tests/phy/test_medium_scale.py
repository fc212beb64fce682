"""The simulated medium at population scale (phy.medium): a render's cost follows the
transmissions on the air, shared interpolators, independent windows rendered in
parallel with the values of one-after-another captures."""

from __future__ import annotations

import numpy as np

from phy.medium import SharedMedium


def _frame(rng: np.random.Generator, n: int = 1500) -> np.ndarray:
    return (0.3 * (rng.standard_normal(n) + 1j * rng.standard_normal(n))).astype(np.complex64)


def _air(idle: int, seed: int = 11) -> tuple[SharedMedium, list[float]]:
    """A receiver, 8 users sending one-shot frames in two groups (disjoint in time), then
    ``idle`` radios that never transmit; returns the medium and each group's start."""
    medium = SharedMedium(seed=seed, timing="ideal", noise_dbfs=-60.0)
    medium.add_radio("rx")
    users = [medium.add_radio(f"u{k}") for k in range(8)]
    for k in range(idle):
        medium.add_radio(f"idle{k}")
    rng = np.random.default_rng(3)
    starts = []
    for group in (users[:4], users[4:]):
        starts.append(medium.now_s)
        for port in group:
            port.transmit(_frame(rng))
        medium.advance(0.01)
    return medium, starts


def test_idle_radios_cost_nothing_and_change_nothing():
    small, starts = _air(idle=0)
    crowded, _ = _air(idle=2000)
    for start in starts:
        window = (start, 4096)
        np.testing.assert_array_equal(
            small.port("rx").capture(*window), crowded.port("rx").capture(*window)
        )
        rx = crowded.port("rx")
        end = start + 4096 / rx.actual_sample_rate_hz
        assert len(crowded._jobs(rx, start, end)) == 4  # the group on the air, not 2008 radios


def test_windows_rendered_in_parallel_equal_captures_one_after_another():
    medium, starts = _air(idle=10)
    windows = [("rx", start, 4096) for start in starts] * 3
    alone = [medium.port("rx").capture(start, n) for _, start, n in windows]
    for workers in (1, 2, 4):
        together = medium.capture_many(windows, workers=workers)
        for a, b in zip(alone, together, strict=True):
            np.testing.assert_array_equal(a, b)
    again, _ = _air(idle=10)  # same seed, same air
    np.testing.assert_array_equal(again.capture_many(windows[:2])[1], alone[1])
    assert np.abs(alone[0]).max() > 20 * 10 ** (-60 / 20)  # frames, not only noise


def test_a_pilot_many_radios_push_builds_one_interpolator():
    medium = SharedMedium(seed=2, timing="ideal")
    medium.add_radio("rx")
    pilot = _frame(np.random.default_rng(9), 4000)
    sent = []
    for k in range(50):
        port = medium.add_radio(f"u{k}")
        sent.append(port.transmit(pilot, cyclic=True))
        port.stop_transmit()
    assert len({id(tr.interpolator) for tr in sent}) == 1
    other = medium.port("u0").transmit(pilot * 0.5, cyclic=True)
    assert other.interpolator is not sent[0].interpolator


def test_the_start_time_index_finds_every_transmission_a_window_hears():
    """A planned wave's windows look transmissions up in a start-time index instead of
    visiting every one: it must return a superset of those overlapping the window, also
    after cyclic buffers are cut and a feeder stall moves queued stream buffers later."""
    medium = SharedMedium(seed=5, timing="ideal", noise_dbfs=-60.0)
    medium.add_radio("rx")
    rng = np.random.default_rng(9)
    ports = [medium.add_radio(f"u{k}") for k in range(40)]
    for k, port in enumerate(ports[:30]):  # scheduled, some cyclic, over 3 s
        for j in range(5):
            push = 0.1 * j + k * 0.003 + 1.0 * (j % 2)
            end = push + rng.uniform(0.001, 0.05) if j % 3 == 0 else None
            port.transmit_at(_frame(rng, 200), push, end)
    ports[30].transmit(_frame(rng, 300), cyclic=True)  # plays until cut
    streamer = ports[31]
    streamer.start_stream(block=1024, buffers=4)
    placed = streamer.place(_frame(rng, 500), streamer.earliest_index() + 400_000)  # 0.4 s on

    def check() -> None:
        middles = [(tr.start_s + min(tr.end_s, tr.start_s + 1.0)) / 2 for _, tr in medium._on_air]
        for start in [*rng.uniform(0.0, 3.0, 300), *middles]:
            end = start + rng.uniform(1e-4, 0.02)
            found = {id(tr) for _, tr in medium._on_air_between(start, end)}
            for _, tr in medium._on_air:
                if tr.start_s < end + 1e-6 and tr.end_s > start - 1e-6:
                    assert id(tr) in found

    check()
    medium.advance(0.2)
    ports[30].stop_transmit()  # cut: only shrinks
    before = placed.start_s
    assert streamer.stall_feeder(0.5) > 0.1 and placed.start_s > before + 0.1  # moved later
    check()

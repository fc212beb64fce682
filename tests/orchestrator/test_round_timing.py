"""The round's time split and progress lines (orchestrator.round_timing)."""

from __future__ import annotations

import time

import numpy as np

from orchestrator.round_timing import PARTS, RoundProgress, RoundTimer
from phy.medium import SharedMedium, medium_seconds


def test_nested_spans_count_once_and_the_parts_add_up_to_the_round():
    medium = SharedMedium(seed=1)
    rx, tx = medium.add_radio("rx"), medium.add_radio("tx")
    timer = RoundTimer(medium_seconds)
    with timer.span("phy"):
        tx.transmit(np.full(4096, 0.5 + 0.5j), cyclic=True)
        rx.receive(16384)  # rendered by the medium inside the phy span
    with timer.span("training"):
        with timer.span("requests"):
            time.sleep(0.05)
    with timer.span("grouping"):
        time.sleep(0.01)
    split = timer.split(messaging_s=0.01, served_s=0.03)
    assert list(split) == list(PARTS)
    assert timer.seconds["requests"] >= 0.05
    assert timer.seconds["training"] < timer.seconds["requests"]  # the inner span apart
    assert split["medium"] > 0 and split["grouping"] >= 0.01
    assert split["phy"] < timer.seconds["phy"]  # the medium's rendering taken out
    assert split["nodes"] <= 0.03 and split["messaging"] == 0.01
    elapsed = time.perf_counter() - timer.started
    assert sum(split.values()) <= elapsed + 1e-3


def test_progress_lines_count_slots_and_estimate_the_rest():
    lines: list[str] = []
    progress = RoundProgress(2, 10, lines.append, every_s=0.0)
    for _ in range(4):
        progress.slot_done()
    assert len(lines) == 4
    assert lines[-1].startswith("round 3: 4/10 slots (40%), ")
    assert lines[-1].endswith(" s") and "slots/s, ETA " in lines[-1]
    quiet: list[str] = []
    slow = RoundProgress(0, 10, quiet.append, every_s=3600.0)
    slow.slot_done()
    assert quiet == [] and slow.done == 1 and slow.slots_per_second > 0

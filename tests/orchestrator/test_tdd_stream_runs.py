"""``airmix run`` on the lab-real time bases (channel.time_base): the default ``stream``
and ``tdd`` end to end through real node processes, with realistic (millisecond-jitter)
buffer timing on the simulated medium and through virtual Plutos; acquisition once per
run and a short probe per slot, booked apart from the payload."""

from __future__ import annotations

import json

import pytest

from tests.orchestrator.test_main_job import (  # noqa: F401 - airmix_runs: the fixture
    airmix_runs,
    finished_run,
    kill_mid_round,
    read_metrics,
    wait_until,
    write_experiment,
)


def _run(tmp_path, airmix_runs, rounds: int = 2, **sections) -> list[dict]:  # noqa: F811
    out = tmp_path / "runs"
    experiment = write_experiment(tmp_path / "tb.toml", out, rounds=rounds, **sections)
    return read_metrics(finished_run(airmix_runs(str(experiment), out_dir=out)))


def test_default_stream_time_base_runs_with_acquisition_once(tmp_path, airmix_runs):  # noqa: F811
    metrics = _run(tmp_path, airmix_runs, rounds=3)
    assert all(r["missed_slots"] == 0 for r in metrics)
    assert metrics[-1]["accuracy"] > 0.5  # it learns (chance: 0.1)
    pilot = [r["round_pilot_channel_uses"] for r in metrics]
    # round 1 acquires every user (two short bursts each) and probes; later rounds only
    # probe, a small fraction of the payload air time
    assert pilot[1] == pilot[2] < pilot[0]
    assert pilot[1] < 0.1 * metrics[1]["round_channel_uses"]


@pytest.mark.slow
def test_tdd_time_base_runs(tmp_path, airmix_runs):  # noqa: F811
    metrics = _run(tmp_path, airmix_runs, channel={"time_base": "tdd"})
    assert sum(r["slots"] for r in metrics) > 0


@pytest.mark.slow
def test_stream_time_base_runs_on_virtual_plutos(tmp_path, airmix_runs):  # noqa: F811
    metrics = _run(tmp_path, airmix_runs, rounds=1, channel={"radio": "virtual-pluto"})
    assert metrics[0]["missed_slots"] <= 1


@pytest.mark.slow
def test_stream_resume_continues_the_receivers_link_state(tmp_path, airmix_runs):  # noqa: F811
    """SIGKILL mid-round 2, resume: the checkpoint carries the stream receiver's link
    knowledge and counters; the resumed run's new streams re-acquire each user once (a
    counted re-acquisition) and the run ends learning with every slot received."""
    out = tmp_path / "runs"
    experiment = write_experiment(tmp_path / "tb.toml", out, rounds=3)
    first = airmix_runs(str(experiment), "--out", str(out), out_dir=out)
    run_dir = wait_until(first.run_dir, 120, "the run directory")
    kill_mid_round(first, run_dir, 2, out)
    resumed = airmix_runs("--resume", str(run_dir), out_dir=out)
    assert finished_run(resumed) == run_dir
    metrics = read_metrics(run_dir)
    assert [m["round"] for m in metrics] == [0, 1, 2]
    assert all(m["missed_slots"] == 0 for m in metrics) and metrics[-1]["accuracy"] > 0.5
    rows = [json.loads(line) for line in (run_dir / "live" / "link_state.jsonl").open()]
    before = next(r for r in rows if r["round"] == 1)["users"]
    after = [r for r in rows if r["round"] == 2][-1]["users"]
    for user, row in after.items():
        assert row["reacquisitions"] == before[user]["reacquisitions"] + 1

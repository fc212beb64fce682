"""``airmix sweep``: grid expansion, validation, naming, resumability, determinism."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from orchestrator.cli import main as cli_main
from orchestrator.config import load_experiment
from orchestrator.grouping import LabelIdenticalGrouping, get_grouping_policy
from orchestrator.rundir import SUMMARY_FILE
from studies.sweep import (
    INDEX_FILE,
    SweepError,
    inprocess_runner,
    load_sweep,
    parse_sweep,
    point_state,
    run_sweep,
)

REPO = Path(__file__).resolve().parents[2]
TINY = {
    "experiment": {"rounds": 2},
    "users": {"count": 4, "group_size": 2, "node_processes": 1},
    "channel": {"fading": "awgn"},
    "attacks": {"enabled": []},
    "link": {"curve": False},
}


def sweep_of(grid: dict, tmp_path: Path, **sections) -> dict:
    raw = {"sweep": {"name": "t", "grid": grid}}
    raw.update(sections)
    return raw


# --------------------------------------------------------------------------- expansion


def test_grid_is_the_product_with_orthogonal_normalised_and_merged(tmp_path):
    grid = {
        "users.grouping": ["label_aware", "random", "orthogonal"],
        "users.group_size": [2, 4, 8],
        "channel.snr_db": [0, 30],
    }
    sweep = parse_sweep(sweep_of(grid, tmp_path), out_dir=tmp_path)
    # 2 mixing policies x 3 sizes x 2 SNRs + orthogonal (size 1) x 2 SNRs
    assert len(sweep.points) == 2 * 3 * 2 + 2
    orthogonal = [p for p in sweep.points if p.config.users.grouping == "orthogonal"]
    assert {p.config.users.group_size for p in orthogonal} == {1}
    assert all(len(p.aliases) == 3 for p in orthogonal)  # sizes 2, 4, 8 collapse
    assert sorted(i for p in sweep.points for i in p.aliases) == list(range(18))
    names = [p.name for p in sweep.points]
    assert len(set(names)) == len(names)
    assert all(p.config.experiment.out_dir == str(sweep.path) for p in sweep.points)
    assert sweep.path == tmp_path / "t"


def test_section_axis_sets_fields_together_and_split_ignores_irrelevant_fields(tmp_path):
    grid = {
        "data": [{"split": "iid"}, {"split": "dirichlet", "alpha": 0.1}],
        "data.alpha": [0.1, 1.0],
    }
    sweep = parse_sweep(sweep_of(grid, tmp_path), out_dir=tmp_path)
    splits = sorted((p.config.data.split, p.config.data.alpha) for p in sweep.points)
    # iid ignores alpha (both iid points are one experiment); dirichlet keeps the axis value
    assert splits == [("dirichlet", 0.1), ("dirichlet", 1.0), ("iid", 1.0)]
    iid = next(p for p in sweep.points if p.config.data.split == "iid")
    assert "data.alpha" not in iid.overrides and iid.name.startswith("split-iid")


def test_joint_axis_sets_fields_of_different_sections_together(tmp_path):
    grid = {
        "channel.snr_db+attacks.eavesdropper_snr_db": [[7, 12], [23, 28]],
        "experiment.seed": [0, 1],
    }
    sweep = parse_sweep(sweep_of(grid, tmp_path), out_dir=tmp_path)
    pairs = sorted(
        (p.config.channel.snr_db, p.config.attacks.eavesdropper_snr_db, p.config.experiment.seed)
        for p in sweep.points
    )
    assert pairs == [(7, 12, 0), (7, 12, 1), (23, 28, 0), (23, 28, 1)]
    assert all("snr_db-" in p.name and "eavesdropper_snr_db-" in p.name for p in sweep.points)


def test_point_names_are_deterministic_and_follow_the_experiment(tmp_path):
    grid = {"users.grouping": ["label_aware", "random"], "experiment.seed": [0, 1]}
    first = parse_sweep(sweep_of(grid, tmp_path, users={"count": 4}), out_dir=tmp_path)
    again = parse_sweep(sweep_of(grid, tmp_path, users={"count": 4}), out_dir=tmp_path / "x")
    assert [p.name for p in first.points] == [p.name for p in again.points]
    assert first.points[0].name.startswith("grouping-label_aware_seed-0-")
    other = parse_sweep(sweep_of(grid, tmp_path, users={"count": 6}), out_dir=tmp_path)
    assert {p.name for p in other.points}.isdisjoint(p.name for p in first.points)


def test_base_file_is_merged_and_the_written_sweep_reloads_identically(tmp_path):
    sweep = load_sweep(REPO / "experiments" / "sweeps" / "smoke.toml", out_dir=tmp_path)
    assert sweep.name == "smoke" and len(sweep.points) == 4
    assert {p.config.users.count for p in sweep.points} == {4}
    assert {p.config.experiment.rounds for p in sweep.points} == {3}
    (tmp_path / "copy.toml").write_text(sweep.to_toml())
    copy = load_sweep(tmp_path / "copy.toml", out_dir=tmp_path)
    assert [p.name for p in copy.points] == [p.name for p in sweep.points]


@pytest.mark.parametrize(
    "name",
    ["smoke", "medium", "full", "virtual_pluto", "snr", "paper", "diffsem", "diffsem_smoke"],
)
def test_shipped_sweeps_validate(name, tmp_path):
    sweep = load_sweep(REPO / "experiments" / "sweeps" / f"{name}.toml", out_dir=tmp_path)
    assert sweep.points and all(
        p.config.users.group_size <= p.config.users.count for p in sweep.points
    )


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("grid", "sections", "field", "words"),
    [
        ({"users.grouping": ["label_aware", "label_awre"]}, {}, "users.grouping", "label_awre"),
        ({"users.gruping": ["random"]}, {}, "sweep.grid.users.gruping", "unknown field"),
        ({"channel.snr_db": []}, {}, "sweep.grid.channel.snr_db", "non-empty"),
        ({"users.group_size": [2, 8]}, {"users": {"count": 4}}, "users.group_size", "<= users"),
        ({"channel.snr_db": ["loud"]}, {}, "channel.snr_db", "expected float"),
        ({"data": [{"split": "iid", "alfa": 1}]}, {}, "sweep.grid.data.alfa", "unknown field"),
        ({"model.mode": ["raw"]}, {"modle": {"mode": "raw"}}, "modle", "unknown section"),
        (
            {"channel.snr_db+attacks.eavesdropper_snr_db": [[7, 12], [23]]},
            {},
            "sweep.grid.channel.snr_db+attacks.eavesdropper_snr_db",
            "lists of 2 values",
        ),
        (
            {"channel.snr_db+attacks.eavsdropper_snr_db": [[7, 12]]},
            {},
            "sweep.grid.attacks.eavsdropper_snr_db",
            "unknown field",
        ),
        # a method's own fields are checked against the method the point names
        (
            {"method": [{"name": "diffsem", "link_epochs": 2}, {"name": "semantic_plain", "x": 1}]},
            {"model": {"mode": "features"}},
            "method.x",
            "unknown field",
        ),
    ],
)
def test_invalid_points_name_the_field(tmp_path, grid, sections, field, words):
    with pytest.raises(SweepError) as caught:
        parse_sweep(sweep_of(grid, tmp_path, **sections), out_dir=tmp_path)
    assert caught.value.field == field
    assert words in str(caught.value)
    assert not (tmp_path / "t").exists()  # nothing written


def test_method_axis_carries_each_method_its_own_options(tmp_path):
    grid = {
        "method": [{"name": "diffsem", "link_epochs": 2}, {"name": "semantic_plain"}],
        "method.link_epochs": [3],
    }
    sweep = parse_sweep(sweep_of(grid, tmp_path, model={"mode": "features"}), out_dir=tmp_path)
    methods = {p.config.method.name: p.config.method for p in sweep.points}
    assert set(methods) == {"diffsem", "semantic_plain"}
    assert methods["diffsem"].link_epochs == 3  # the later axis wins


def test_invalid_point_message_names_the_grid_point(tmp_path):
    grid = {"channel.snr_db": [10, 20], "users.group_size": [2, 9]}
    with pytest.raises(SweepError, match=r"sweep point 1: channel.snr_db=10, users.group_size=9"):
        parse_sweep(sweep_of(grid, tmp_path), out_dir=tmp_path)


def test_cli_reports_bad_sweep_with_exit_code_2(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('[sweep]\n[sweep.grid]\n"channel.radio" = ["plutto"]\n')
    assert cli_main(["sweep", str(path), "--out", str(tmp_path)]) == 2
    assert "channel.radio" in capsys.readouterr().err


# --------------------------------------------------------------------------- running (fake)


class FakeRunner:
    """Writes a metrics line and a summary like a run; can be told to interrupt or fail."""

    def __init__(self, interrupt_at: int | None = None, fail_at: int | None = None):
        self.calls: list[tuple[str, bool]] = []
        self.interrupt_at, self.fail_at = interrupt_at, fail_at

    def __call__(self, config, run, resuming):
        self.calls.append((run.path.name, resuming))
        if len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        if len(self.calls) == self.fail_at:
            raise RuntimeError("radio on fire")
        run.append_metrics({"round": 0, "accuracy": 0.5 + config.experiment.seed / 10})
        summary = {"headline": {"final_accuracy": 0.5 + config.experiment.seed / 10}}
        run.write_summary(summary)
        return summary


def test_interrupted_sweep_skips_finished_points_and_resumes_checkpoints(tmp_path):
    raw = sweep_of({"experiment.seed": [0, 1, 2]}, tmp_path)
    sweep = parse_sweep(raw, out_dir=tmp_path)
    names = [p.name for p in sweep.points]
    lines: list[str] = []
    runner = FakeRunner(interrupt_at=2)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(parse_sweep(raw, out_dir=tmp_path), runner, progress=lines.append)
    assert runner.calls == [(names[0], False), (names[1], False)]
    index = json.loads((sweep.path / INDEX_FILE).read_text())
    assert [p["status"] for p in index["points"]] == ["done", "interrupted", "pending"]
    assert point_state(sweep.path / names[0]) == "done"
    # point 1 was killed after its first checkpoint: it must be resumed, not restarted
    (sweep.path / names[1] / "checkpoint.pt").write_bytes(b"x")
    runner = FakeRunner()
    result = run_sweep(parse_sweep(raw, out_dir=tmp_path), runner, progress=lines.append)
    assert runner.calls == [(names[1], True), (names[2], False)]
    assert result.skipped == [names[0]] and result.resumed == [names[1]]
    assert result.ran == [names[2]] and result.remaining == 0
    assert any("skipped" in line for line in lines)
    assert any("[3/3]" in line and "ETA" in line for line in lines)
    index = json.loads((sweep.path / INDEX_FILE).read_text())
    assert index["n_done"] == 3
    assert [p["headline"]["final_accuracy"] for p in index["points"]] == [0.5, 0.6, 0.7]
    assert tomllib.loads((sweep.path / "sweep.toml").read_text())["sweep"]["name"] == "t"


def test_point_without_checkpoint_restarts_clean_and_failures_are_recorded(tmp_path):
    raw = sweep_of({"experiment.seed": [0, 1]}, tmp_path)
    sweep = parse_sweep(raw, out_dir=tmp_path)
    stale = sweep.path / sweep.points[0].name
    stale.mkdir(parents=True)
    (stale / "config.toml").write_text("")
    (stale / "metrics.jsonl").write_text('{"round": 0, "accuracy": 0.1}\n{"round": 1}\n')
    runner = FakeRunner(fail_at=2)
    result = run_sweep(sweep, runner, progress=None)
    assert runner.calls == [(sweep.points[0].name, False), (sweep.points[1].name, False)]
    assert len((stale / "metrics.jsonl").read_text().splitlines()) == 1  # restarted clean
    assert result.failed == [sweep.points[1].name] and result.remaining == 1
    index = json.loads((sweep.path / INDEX_FILE).read_text())
    assert "radio on fire" in index["points"][1]["error"]
    result = run_sweep(parse_sweep(raw, out_dir=tmp_path), FakeRunner(), progress=None)
    assert result.ran == [sweep.points[1].name] and result.remaining == 0


def test_max_points_stops_early(tmp_path):
    sweep = parse_sweep(sweep_of({"experiment.seed": [0, 1, 2]}, tmp_path), out_dir=tmp_path)
    runner = FakeRunner()
    result = run_sweep(sweep, runner, progress=None, max_points=1)
    assert len(runner.calls) == 1 and result.remaining == 2


# --------------------------------------------------------------------------- grouping


def test_label_identical_grouping_puts_alike_users_together():
    hist = {f"u{i}": np.eye(4)[i % 4] * 10 for i in range(8)}  # u0,u4 hold class 0, ...
    identical = LabelIdenticalGrouping(group_size=2)
    groups = identical.group(sorted(hist), label_histograms=hist, rng=0)
    assert sorted(groups) == [["u0", "u4"], ["u1", "u5"], ["u2", "u6"], ["u3", "u7"]]
    aware = get_grouping_policy("label_aware", group_size=2)
    for group in aware.group(sorted(hist), label_histograms=hist, rng=0):
        assert int(group[0][1:]) % 4 != int(group[1][1:]) % 4
    # groups of 4 over 8 users with 2 classes each: identical puts same-class users together
    hist = {f"u{i}": np.eye(2)[i % 2] * 10 for i in range(8)}
    for group in LabelIdenticalGrouping(group_size=4).group(sorted(hist), label_histograms=hist):
        assert len({int(u[1:]) % 2 for u in group}) == 1


# --------------------------------------------------------------------------- running (real)


#: wall-clock dependent: round time and its split, and digital-link counters that include
#: heartbeats
TIMING = {
    "seconds",
    "messaging_seconds",
    "time_split",
    "slots_per_second",
    "digital_bytes",
    "round_digital_bytes",
    "digital_messages",
}


def _metrics(path: Path) -> list[dict]:
    lines = (path / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def test_real_sweep_resumes_after_interruption_and_is_deterministic(tmp_path):
    raw = sweep_of({"users.grouping": ["label_aware", "random"]}, tmp_path, **TINY)
    lines: list[str] = []
    # the first point in a child process (the default), the rest in this process (faster)
    first = run_sweep(parse_sweep(raw, out_dir=tmp_path), progress=lines.append, max_points=1)
    assert len(first.ran) == 1 and first.remaining == 1
    fast = inprocess_runner()
    second = run_sweep(parse_sweep(raw, out_dir=tmp_path), fast, progress=lines.append)
    assert second.skipped == first.ran and len(second.ran) == 1 and second.remaining == 0
    sweep = parse_sweep(raw, out_dir=tmp_path)
    for point in sweep.points:
        run_dir = sweep.path / point.name
        assert point_state(run_dir) == "done"
        assert load_experiment(run_dir / "config.toml") == point.config
        assert len(_metrics(run_dir)) == 2
        assert json.loads((run_dir / SUMMARY_FILE).read_text())["rounds"] == 2
    # the same point (same seed) in another sweep directory: identical metrics
    again = parse_sweep(
        sweep_of({"users.grouping": ["label_aware"]}, tmp_path, **TINY), out_dir=tmp_path / "b"
    )
    run_sweep(again, fast, progress=None)
    name = again.points[0].name
    assert name == sweep.points[0].name
    metrics = _metrics(sweep.path / name)
    assert {"accuracy", "loss", "predicted_mixup_mse_db", "channel_uses", "groups"} <= set(
        metrics[0]
    )
    assert _metrics(again.path / name) == metrics


@pytest.mark.slow
def test_sweep_killed_mid_point_resumes_from_its_checkpoint(tmp_path):
    """SIGKILL an ``airmix sweep`` process (and its nodes) once its first point has
    checkpointed a few rounds; the rerun resumes that point and ends with the metrics of
    an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    body = dict(TINY, experiment={"rounds": 6})
    sweep_file = tmp_path / "kill.toml"
    sweep_file.write_text(
        tomli_w.dumps({"sweep": {"name": "kill", "grid": {"experiment.seed": [3]}}, **body})
    )
    command = [sys.executable, "-m", "orchestrator.cli", "sweep", str(sweep_file)]
    command += ["--out", str(tmp_path / "a")]
    sweep = load_sweep(sweep_file, out_dir=tmp_path / "a")
    metrics_path = sweep.path / sweep.points[0].name / "metrics.jsonl"
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            if metrics_path.exists() and len(metrics_path.read_text().splitlines()) >= 3:
                break
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert point_state(metrics_path.parent) == "checkpoint"
    # the rerun and the uninterrupted reference run the same way (same interpreter and code)
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming" in rerun.stdout and "1 resumed" in rerun.stdout
    reference = [*command[:-1], str(tmp_path / "b")]
    assert subprocess.run(reference, cwd=REPO, capture_output=True, timeout=300).returncode == 0
    resumed = _metrics(metrics_path.parent)
    assert [m["round"] for m in resumed] == list(range(6))
    assert resumed == _metrics(tmp_path / "b" / "kill" / sweep.points[0].name)

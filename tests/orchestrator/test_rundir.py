import json

import pytest
import torch

from orchestrator.rundir import RunDirectory, atomic_write_text


def test_create_writes_config_and_unique_names(tmp_path):
    first = RunDirectory.create(tmp_path, "exp", "a = 1\n")
    second = RunDirectory.create(tmp_path, "exp", "a = 2\n")
    assert first.path != second.path
    assert first.config_path.read_text() == "a = 1\n"
    assert RunDirectory.open_existing(first.path).path == first.path
    with pytest.raises(FileNotFoundError, match="not an airmix run directory"):
        RunDirectory.open_existing(tmp_path)


def test_metrics_append_and_truncate(tmp_path):
    run = RunDirectory.create(tmp_path, "exp", "")
    for round_index in range(5):
        run.append_metrics({"round": round_index, "accuracy": round_index / 10})
    assert [r["round"] for r in run.read_metrics()] == [0, 1, 2, 3, 4]
    run.truncate_metrics(2)
    assert [r["round"] for r in run.read_metrics()] == [0, 1, 2]
    assert all(json.loads(line) for line in run.metrics_path.read_text().splitlines())


def test_checkpoint_round_trip_and_absence(tmp_path):
    run = RunDirectory.create(tmp_path, "exp", "")
    assert run.load_checkpoint() is None
    run.save_checkpoint({"round": 3, "weights": torch.arange(4.0)})
    state = run.load_checkpoint()
    assert state["round"] == 3 and torch.equal(state["weights"], torch.arange(4.0))


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "file.txt"
    atomic_write_text(target, "old")

    def fail(*_args):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", fail)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]  # no temporary left behind

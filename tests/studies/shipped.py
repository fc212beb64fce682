"""The sweeps shipped in ``experiments/sweeps``, run for real, then reported on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from studies.report import build_report
from studies.sweep import inprocess_runner, load_sweep, run_sweep

SWEEPS = Path(__file__).resolve().parents[2] / "experiments" / "sweeps"


def run_and_report(
    name: str, tmp_path: Path, in_process: bool = False
) -> tuple[Path, dict[str, Any]]:
    """Run every point of the shipped sweep ``name`` under ``tmp_path`` (none may fail;
    each in a child process as ``airmix sweep`` does, or ``in_process``: cheaper to
    start), then build its report in ``tmp_path / "report"``. Returns the sweep
    directory and the report's ``report.json`` data."""
    sweep = load_sweep(SWEEPS / f"{name}.toml", out_dir=tmp_path)
    runner = inprocess_runner() if in_process else None
    result = run_sweep(sweep, runner, progress=None)
    assert result.remaining == 0 and not result.failed
    path = build_report([sweep.path], tmp_path / "report")
    return sweep.path, json.loads((path.parent / "report.json").read_text())

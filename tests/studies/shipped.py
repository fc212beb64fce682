"""The sweeps shipped in ``experiments/sweeps``, run for real, then reported on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from studies.report import build_report
from studies.sweep import load_sweep, run_sweep

SWEEPS = Path(__file__).resolve().parents[2] / "experiments" / "sweeps"


def run_and_report(name: str, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """Run every point of the shipped sweep ``name`` under ``tmp_path`` (none may fail),
    then build its report in ``tmp_path / "report"``. Returns the sweep directory and
    the report's ``report.json`` data."""
    sweep = load_sweep(SWEEPS / f"{name}.toml", out_dir=tmp_path)
    result = run_sweep(sweep, progress=None)
    assert result.remaining == 0 and not result.failed
    path = build_report([sweep.path], tmp_path / "report")
    return sweep.path, json.loads((path.parent / "report.json").read_text())

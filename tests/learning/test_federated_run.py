"""``airmix run`` with the fedavg method end to end (orchestrator, node processes, sim
radios): slow, run with ``-m slow``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_airmix_run_trains_fedavg_over_the_air(tmp_path):
    experiment = (
        (ROOT / "experiments" / "fedavg.toml").read_text().replace("rounds = 5", "rounds = 2")
    )
    path = tmp_path / "fedavg.toml"
    path.write_text(experiment)
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", str(path), "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    rounds = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rounds) == 2
    assert rounds[-1]["accuracy"] > 0.3  # chance 0.1; two rounds of 4 users
    assert rounds[-1]["channel_uses"] > rounds[0]["channel_uses"] > 0
    # the audit inverted the over-the-air updates the server and the eavesdropper saw
    inversion = json.loads((run_dir / "summary.json").read_text())["privacy"]["gradient_inversion"]
    assert inversion["server"]["kinds"] == ["ota_sum"]
    assert inversion["eavesdropper"]["kinds"] == ["ota_sum"]
    assert inversion["eavesdropper"]["frames_found"] > 0
    for party in ("server", "eavesdropper"):
        figures = inversion[party]["figures"]
        assert {"task_accuracy", "task_accuracy_chance", "psnr_db_chance"} <= set(figures)

"""Reference reproduction: run (or resume) ``experiments/sweeps/paper.toml`` and its
report, then summarise the claim verdicts.

Prints the claim table (verdict per SIMix claim, seeds behind it), the measured mixup
MSE against the closed form per SNR, the time per run and the projected time of the full
grid against the one-hour budget, and ends with one JSON line holding
``claims_holding``, ``claims_refuted``, ``claims_inconclusive``,
``measured_over_closed_form_mse_db`` (measured payload MSE minus the closed form, dB,
mean over the MMSE settings of an SNR; the SNR with the largest magnitude; ``null`` when
no run measured it) and ``seeds_per_point`` (the fewest seeds behind any setting).

``--reduced`` runs only the raw-payload, IID points (30 of 120 runs), for machines where
the full hour is not available; the projection then scales the measured time per run
(raw IID runs only, so feature-mode and Dirichlet points, which take longer, are
underestimated; the line says so).

Run: ``nice -n 10 .venv/bin/python benchmarks/reproduction.py [--reduced] [--max-points N]``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

# this folder holds a script named like the ``phy`` package: keep it off the import path
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from studies.report import build_report  # noqa: E402
from studies.sweep import parse_sweep, run_sweep  # noqa: E402

PAPER = _HERE.parent / "experiments" / "sweeps" / "paper.toml"
BUDGET_S = 3600.0
REDUCED = {"model.mode": ["raw"], "data": [{"split": "iid"}]}


def load(path: Path, reduced: bool, out_dir: Path):
    """The paper sweep, or its reduced part (named ``paper-reduced``)."""
    raw = tomllib.loads(path.read_text())
    full = parse_sweep(raw, path.parent, out_dir, path.stem)
    if not reduced:
        return full, full
    raw["sweep"]["grid"].update(REDUCED)
    raw["sweep"]["name"] = f"{raw['sweep'].get('name', path.stem)}-reduced"
    return parse_sweep(raw, path.parent, out_dir, path.stem), full


def worst_mse_gap(report: dict) -> tuple[float | None, dict[float, float]]:
    """(signed gap of the SNR with the largest |gap|, gap per SNR): measured payload MSE
    minus the closed form, mean over the MMSE settings at each SNR."""
    per_snr: dict[float, list[float]] = defaultdict(list)
    for row in report.get("mse", []):
        gap = (row.get("gap_db") or {}).get("mean")
        if row.get("power_control") == "mmse" and gap is not None:
            per_snr[row["snr_db"]].append(gap)
    means = {snr: sum(v) / len(v) for snr, v in sorted(per_snr.items())}
    if not means:
        return None, {}
    return max(means.values(), key=abs), means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduced", action="store_true", help="raw-payload IID points only")
    parser.add_argument("--max-points", type=int, help="stop after running N points")
    parser.add_argument("--out", type=Path, default=Path("sweeps"), help="sweeps directory")
    parser.add_argument("--report", type=Path, help="report directory (default reports/NAME)")
    args = parser.parse_args()
    sweep, full = load(PAPER, args.reduced, args.out)
    print(f"{sweep.name}: {len(sweep.points)} runs (full grid {len(full.points)}) -> {sweep.path}")
    result = run_sweep(sweep, max_points=args.max_points)
    report_dir = args.report or Path("reports") / sweep.name
    path = build_report([sweep.path], report_dir)
    report = json.loads((path.parent / "report.json").read_text())
    print(f"report: {path}")
    for claim in report["claims"]:
        print(f"  {claim['verdict']:>14}  {claim['claim']} (seeds {claim['seeds']})")
    worst, per_snr = worst_mse_gap(report)
    for snr, gap in per_snr.items():
        print(f"  measured mixup MSE - closed form at {snr:g} dB: {gap:+.2f} dB (mean over MMSE)")
    index = json.loads((sweep.path / "index.json").read_text())
    seconds = [p["seconds"] for p in index["points"] if p["status"] == "done" and p["seconds"]]
    per_run = sum(seconds) / len(seconds) if seconds else math.nan
    projected = per_run * len(full.points)
    note = (
        " (from raw IID runs only: feature and Dirichlet runs take longer)" if args.reduced else ""
    )
    print(
        f"time per run {per_run:.1f} s over {len(seconds)} runs; full grid of "
        f"{len(full.points)} runs projected at {projected / 3600:.2f} h = "
        f"{projected / BUDGET_S:.2f} x the one-hour budget{note}"
    )
    seeds = [s["stats"]["n"] for s in report["settings"]]
    tally = report["tally"]
    print(
        json.dumps(
            {
                "claims_holding": tally["holds"],
                "claims_refuted": tally["does not hold"],
                "claims_inconclusive": tally["inconclusive"],
                "claims_not_measured": tally["not measured"],
                "measured_over_closed_form_mse_db": worst,
                "seeds_per_point": min(seeds) if seeds else 0,
                "runs_done": index["n_done"],
                "runs_failed": len(result.failed),
                "runs_in_grid": len(sweep.points),
                "reduced": args.reduced,
                "seconds_per_run": per_run,
                "projected_full_hours": projected / 3600,
            }
        )
    )


if __name__ == "__main__":
    main()

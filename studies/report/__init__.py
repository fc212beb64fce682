"""``airmix report RUNDIR...``: one self-contained Markdown report over many runs.

Arguments are run directories, sweep directories or folders holding run directories.
Runs whose resolved configs differ only in ``experiment.seed`` form one *setting*.
The report is built in four steps, one module each:

* :mod:`~studies.report.loading`: run discovery and loading;
* :mod:`~studies.report.statistics`: per-run figures (a pandas table), settings and
  estimates over seeds with 95% Student-t confidence intervals;
  :mod:`~studies.report.comparisons` pairs settings, :mod:`~studies.report.reference`
  holds the closed-form MSE;
* :mod:`~studies.report.claims`: SIMix's claims with verdicts (holds / does not hold /
  inconclusive / not measured) read from the intervals;
* :mod:`~studies.report.plots` and :mod:`~studies.report.render`: the figures and the
  Jinja2 template ``templates/report.md.j2``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.config import ConfigError
from studies.report.render import build_report

__all__ = ["add_arguments", "build_report", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUNDIR",
        help="run directories, sweep directories, or folders of run directories",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("report"), help="report directory (default: ./report)"
    )


def main(args: argparse.Namespace) -> int:
    try:
        path = build_report(args.runs, args.out)
    except (FileNotFoundError, ConfigError) as error:
        print(f"airmix report: {error}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0

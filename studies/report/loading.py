"""Run discovery and loading for the report.

Inputs are run directories (``config.toml`` + ``summary.json``, see
:mod:`orchestrator.rundir`), sweep directories (their ``index.json`` lists the points,
see :mod:`studies.sweep`) or folders holding run directories. Output: :class:`Run`
objects with the resolved config, per-round metrics and the summary.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import provenance as prov
from orchestrator.config import ExperimentConfig, load_experiment
from orchestrator.rundir import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE

INDEX_FILE = "index.json"


@dataclass
class Run:
    """One finished run.

    Attributes:
        path: the run directory.
        config: its resolved experiment.
        metrics: one dict per round (``metrics.jsonl``).
        summary: ``summary.json``.
        provenance: ``provenance.json`` when the run wrote one (else empty).
    """

    path: Path
    config: ExperimentConfig
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return int(self.config.experiment.seed)

    @property
    def fields(self) -> dict[str, Any]:
        """Dotted field -> value (lists as tuples, so values are hashable)."""
        return {
            f"{section}.{name}": tuple(value) if isinstance(value, list) else value
            for section, body in self.config.as_dict().items()
            for name, value in body.items()
        }


def is_run(path: Path) -> bool:
    """A finished run directory: resolved config and summary present."""
    return (path / CONFIG_FILE).is_file() and (path / SUMMARY_FILE).is_file()


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories named by ``paths`` (runs, sweep dirs, or parents of runs), resolved
    and without duplicates, in the order given.

    Raises:
        FileNotFoundError: a path is none of these.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if is_run(path):
            found.append(path)
        elif (path / INDEX_FILE).is_file():
            index = json.loads((path / INDEX_FILE).read_text())
            found += [path / e["dir"] for e in index.get("points", []) if is_run(path / e["dir"])]
        elif path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_dir() and is_run(p))
        else:
            raise FileNotFoundError(f"{path} is not a run directory, sweep directory or folder")
    return list(dict.fromkeys(p.resolve() for p in found))


def sweep_problems(paths: Iterable[str | Path]) -> list[str]:
    """Points of the sweep directories among ``paths`` that did not finish, with why."""
    problems = []
    for path in map(Path, paths):
        index_path = path / INDEX_FILE
        if not index_path.is_file():
            continue
        for entry in json.loads(index_path.read_text()).get("points", []):
            if entry.get("status") != "done":
                error = entry.get("error", "")
                problems.append(f"{path.name}/{entry['name']}: {entry.get('status')} {error}")
    return problems


def degraded(run: Run) -> str | None:
    """Why a run is not clean (users lost), or None."""
    count = run.config.users.count
    lost = [m["round"] for m in run.metrics if m.get("alive_users", count) < count]
    if lost:
        alive = min(m["alive_users"] for m in run.metrics)
        return f"users lost from round {lost[0]} on ({alive}/{count} left)"
    return None


def load_run(path: str | Path) -> Run:
    """Read one finished run directory."""
    path = Path(path)
    lines = (path / METRICS_FILE).read_text().splitlines() if (path / METRICS_FILE).exists() else []
    return Run(
        path=path,
        config=load_experiment(path / CONFIG_FILE),
        metrics=[json.loads(line) for line in lines if line.strip()],
        summary=json.loads((path / SUMMARY_FILE).read_text()),
        provenance=prov.read(path),
    )


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Every finished run named by ``paths`` (see :func:`find_run_dirs`)."""
    return [load_run(path) for path in find_run_dirs(paths)]


def provenance_groups(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Runs grouped by the code that produced them (:func:`orchestrator.provenance.
    version_key`): per group a one-line description, the run count, the run names and
    the machines. Runs without provenance form their own group."""
    groups: dict[tuple, dict[str, Any]] = {}
    for run in runs:
        key = prov.version_key(run.provenance) if run.provenance else ("none",)
        group = groups.setdefault(
            key,
            {"description": prov.describe(run.provenance), "runs": [], "machines": set()},
        )
        group["runs"].append(run.path.name)
        machine = (run.provenance.get("machine") or {}).get("cpu")
        if machine:
            group["machines"].add(machine)
    return [
        {**g, "count": len(g["runs"]), "machines": sorted(g["machines"])} for g in groups.values()
    ]


def provenance_warnings(groups: Sequence[dict[str, Any]]) -> list[str]:
    """Warnings when the runs compared come from different code or package versions, or
    some have no provenance."""
    warnings = []
    if len(groups) > 1:
        warnings.append(
            f"the runs compared come from {len(groups)} different code or package versions "
            "(see Provenance): differences between them may come from the code, not the "
            "setting"
        )
    if any(g["description"] == prov.describe({}) for g in groups):
        warnings.append("some runs have no provenance.json (written by older code)")
    return warnings

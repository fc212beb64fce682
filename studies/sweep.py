"""``airmix sweep SWEEP.toml``: run a grid of experiments, resumably, with progress.

A sweep file is an experiment file (sections ``[experiment]``, ``[data]``, ... as in
:mod:`orchestrator.config`) plus a ``[sweep]`` table::

    [sweep]
    name = "grouping"                    # sweep directory name (default: the file's stem)
    base = "../default.toml"             # optional base experiment, relative to this file;
                                         # the sections of this file override it
    out_dir = "sweeps"                   # parent of the sweep directory (--out overrides)
    description = "..."                  # free text, copied to the index

    [sweep.grid]                         # axis -> list of values; the grid is their product
    "users.grouping" = ["label_aware", "random", "orthogonal"]
    "channel.snr_db" = [0, 10, 20, 30]
    "experiment.seed" = [0, 1, 2]
    # an axis named after a section takes tables: fields that change together
    "data" = [{split = "iid"}, {split = "dirichlet", alpha = 0.1}]
    # fields of different sections that change together: joined by "+", each value a
    # list with one entry per field (here the eavesdropper always 5 dB better)
    "channel.snr_db+attacks.eavesdropper_snr_db" = [[7, 12], [23, 28]]

Every point is resolved with :func:`orchestrator.config.resolve_experiment` before
anything runs; an invalid point stops the sweep with a message naming the point and the
field. Points are *normalised* so the resolved config is valid and meaningful:
orthogonal grouping means ``users.group_size = 1`` whatever the grid says; fields the
data split ignores (``data.alpha`` unless ``split = "dirichlet"``,
``data.labels_per_user`` unless ``split = "shards"``) are reset to their defaults.
Points that normalise to the same experiment are run once (the index lists the aliases).

Layout of the sweep directory ``<out_dir>/<name>/``::

    sweep.toml     the sweep as resolved (base inlined): rerun with ``airmix sweep DIR``
    provenance.json  code, packages, machine, command of each invocation
                   (:mod:`orchestrator.provenance`)
    index.json     every point: name, overrides, status, seconds, headline figures
    <point>/       one run directory per point (see :mod:`orchestrator.rundir`)

Point names are deterministic: the effective value of every axis plus a hash of the
point's experiment, e.g. ``grouping-random_snr_db-20_seed-1-5c0a31e2``.

Each point runs in its own interpreter (:func:`default_runner`). Resuming: rerunning
the same command skips finished points (``summary.json`` and
``DONE`` present), resumes a point that has a checkpoint with
``run_experiment(..., resuming=True)`` (it ends with the same metrics as an
uninterrupted run), and restarts a point that never reached its first checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from orchestrator import provenance
from orchestrator.config import SCHEMA, ConfigError, ExperimentConfig, resolve_experiment
from orchestrator.rundir import CONFIG_FILE, SUMMARY_FILE, RunDirectory, atomic_write_text

INDEX_FILE = "index.json"
SWEEP_FILE = "sweep.toml"
DONE_FILE = "DONE"
SWEEP_KEYS = ("name", "base", "out_dir", "description", "grid")
#: fields that do not name or place a run, left out of a point's hash
_PLACEMENT = (("experiment", "name"), ("experiment", "out_dir"))


# --------------------------------------------------------------------------- sweep files


class SweepError(ValueError):
    """A sweep file or one of its points is invalid; ``field`` is the dotted bad field."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field = field_path


@dataclass(frozen=True)
class SweepPoint:
    """One experiment of the grid.

    Attributes:
        index: position in the grid (after duplicates are merged).
        name: deterministic directory name.
        overrides: effective value of every axis field (dotted path -> value).
        raw: the point's experiment mapping (sections -> fields), normalised.
        config: the resolved experiment (``experiment.out_dir`` = the sweep directory).
        aliases: grid positions that normalised to this same experiment.
    """

    index: int
    name: str
    overrides: dict[str, Any]
    raw: dict[str, dict[str, Any]]
    config: ExperimentConfig
    aliases: tuple[int, ...] = ()


@dataclass
class Sweep:
    """A parsed sweep: its directory, base experiment, axes and points."""

    name: str
    path: Path
    base: dict[str, dict[str, Any]]
    axes: list[tuple[str, list[Any]]]
    points: list[SweepPoint]
    description: str = ""
    out_dir: str = "sweeps"
    source: str = ""

    def to_toml(self) -> str:
        """The sweep as one self-contained file (base inlined, no ``base`` key)."""
        body: dict[str, Any] = {
            "sweep": {
                "name": self.name,
                "out_dir": self.out_dir,
                "description": self.description,
                "grid": {key: values for key, values in self.axes},
            }
        }
        body.update({section: dict(fields) for section, fields in self.base.items()})
        return tomli_w.dumps(body)


def _merge(base: dict[str, dict[str, Any]], over: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {section: dict(fields) for section, fields in base.items()}
    for section, fields in over.items():
        if not isinstance(fields, dict):
            raise SweepError(section, "must be a table ([section])")
        out.setdefault(section, {}).update(fields)
    return out


def _check_axis_key(key: str, values: Any) -> list[Any]:
    where = f"sweep.grid.{key}"
    if not isinstance(values, list) or not values:
        raise SweepError(where, "must be a non-empty list of values")
    if "+" in key:  # a joint axis: one value list per field
        fields = key.split("+")
        for item in values:
            if not isinstance(item, list) or len(item) != len(fields):
                raise SweepError(
                    where, f"a joint axis takes lists of {len(fields)} values, one per field"
                )
        for n, name in enumerate(fields):
            if len(name.split(".")) != 2:
                raise SweepError(where, "a joint axis joins 'section.field' names with '+'")
            _check_axis_key(name, [item[n] for item in values])
        return values
    parts = key.split(".")
    if parts[0] not in SCHEMA:
        raise SweepError(where, f"unknown section {parts[0]!r}; allowed: {sorted(SCHEMA)}")
    # a method's own fields depend on its name: resolve_experiment checks them per point
    open_section = parts[0] == "method"
    if len(parts) == 1:
        for item in values:
            if not isinstance(item, dict) or not item:
                raise SweepError(where, "a section axis takes non-empty tables of its fields")
            for name in item:
                if name not in SCHEMA[key] and not open_section:
                    raise SweepError(
                        f"{where}.{name}", f"unknown field; allowed: {sorted(SCHEMA[key])}"
                    )
    elif len(parts) == 2:
        if parts[1] not in SCHEMA[parts[0]] and not open_section:
            raise SweepError(where, f"unknown field; allowed: {sorted(SCHEMA[parts[0]])}")
        if any(isinstance(item, dict) for item in values):
            raise SweepError(where, "a field axis takes values, not tables")
    else:
        raise SweepError(where, "an axis is 'section.field' or 'section'")
    return values


def _assignments(key: str, value: Any) -> dict[str, Any]:
    """Dotted field -> value set by one axis value."""
    if "+" in key:
        return dict(zip(key.split("+"), value, strict=True))
    if isinstance(value, dict):
        return {f"{key}.{name}": item for name, item in value.items()}
    return {key: value}


def normalize(raw: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Make a point's experiment valid and canonical (see the module docstring)."""
    out = {section: dict(fields) for section, fields in raw.items()}
    users = out.setdefault("users", {})
    if users.get("grouping", SCHEMA["users"]["grouping"].default) == "orthogonal":
        users["group_size"] = 1
    data = out.get("data", {})
    split = data.get("split", SCHEMA["data"]["split"].default)
    if split != "dirichlet":
        data.pop("alpha", None)
    if split != "shards":
        data.pop("labels_per_user", None)
    return {section: fields for section, fields in out.items() if fields}


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, list):
        text = "+".join(_format_value(v) for v in value) or "none"
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.+]+", "_", text).strip("_") or "_"


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Dotted field -> its last component, or the full path where that is ambiguous."""
    last = [k.split(".")[-1] for k in keys]
    return {
        k: (s if last.count(s) == 1 else k.replace(".", "_"))
        for k, s in zip(keys, last, strict=True)
    }


def _hash(raw: dict[str, dict[str, Any]]) -> str:
    kept = {
        section: {k: v for k, v in fields.items() if (section, k) not in _PLACEMENT}
        for section, fields in raw.items()
    }
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _effective(config: ExperimentConfig, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def expand(
    base: dict[str, dict[str, Any]], axes: list[tuple[str, list[Any]]], sweep_dir: Path
) -> list[SweepPoint]:
    """Every point of the grid, validated, normalised and named (duplicates merged).

    Raises:
        SweepError: a point does not resolve; names the point and the field.
    """
    points: list[SweepPoint] = []
    by_name: dict[str, int] = {}
    fields: list[str] = []  # axis order, then field order within a section axis
    for key, values in axes:
        for value in values:
            fields += [f for f in _assignments(key, value) if f not in fields]
    short = _short_keys(fields)
    combos = itertools.product(*[[(key, v) for v in values] for key, values in axes])
    for position, combo in enumerate(combos):
        over: dict[str, dict[str, Any]] = {}
        assigned: set[str] = set()
        for key, value in combo:
            for dotted, item in _assignments(key, value).items():
                section, name = dotted.split(".")
                over.setdefault(section, {})[name] = item
                assigned.add(dotted)
        raw = normalize(_merge(base, over))
        label = ", ".join(f"{k}={v!r}" for k, v in combo)
        try:
            config = resolve_experiment(raw)
        except ConfigError as error:
            raise SweepError(error.field, f"{error} (sweep point {position}: {label})") from error
        # the fields this point sets and normalisation kept, with their effective values
        overrides = {
            f: _effective(config, f)
            for f in fields
            if f in assigned and f.split(".")[1] in raw.get(f.split(".")[0], {})
        }
        slug = "_".join(f"{short[f]}-{_format_value(v)}" for f, v in overrides.items())
        name = f"{slug}-{_hash(raw)}" if slug else _hash(raw)
        if name in by_name:
            kept = points[by_name[name]]
            points[by_name[name]] = SweepPoint(
                kept.index,
                kept.name,
                kept.overrides,
                kept.raw,
                kept.config,
                (*kept.aliases, position),
            )
            continue
        placed = _merge(raw, {"experiment": {"name": name, "out_dir": str(sweep_dir)}})
        by_name[name] = len(points)
        points.append(
            SweepPoint(len(points), name, overrides, raw, resolve_experiment(placed), (position,))
        )
    return points


def parse_sweep(
    raw: dict[str, Any], base_dir: Path = Path("."), out_dir: Path | None = None, stem: str = ""
) -> Sweep:
    """Build a :class:`Sweep` from a parsed sweep file (``base_dir``: where ``base`` is)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("sweep"), dict):
        raise SweepError("sweep", "a sweep file needs a [sweep] table with a [sweep.grid]")
    table = raw["sweep"]
    for key in table:
        if key not in SWEEP_KEYS:
            raise SweepError(f"sweep.{key}", f"unknown field; allowed: {sorted(SWEEP_KEYS)}")
    name = table.get("name", stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", name or ""):
        raise SweepError("sweep.name", f"must be a non-empty name of [A-Za-z0-9._-], got {name!r}")
    base: dict[str, dict[str, Any]] = {}
    if "base" in table:
        base_path = Path(base_dir) / str(table["base"])
        base = _read_toml(base_path, "sweep.base")
    sections = {k: v for k, v in raw.items() if k != "sweep"}
    for section in list(base) + list(sections):
        if section not in SCHEMA:
            raise SweepError(section, f"unknown section; allowed sections: {sorted(SCHEMA)}")
    base = _merge(base, sections)
    grid = table.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise SweepError("sweep.grid", "must be a table of axis = [values, ...]")
    axes = [(key, _check_axis_key(key, values)) for key, values in grid.items()]
    parent = Path(out_dir) if out_dir is not None else Path(str(table.get("out_dir", "sweeps")))
    path = parent / name
    try:
        resolve_experiment(normalize(base))
    except ConfigError as error:
        raise SweepError(error.field, f"{error} (base experiment)") from error
    return Sweep(
        name=name,
        path=path,
        base=base,
        axes=axes,
        points=expand(base, axes, path),
        description=str(table.get("description", "")),
        out_dir=str(table.get("out_dir", "sweeps")),
    )


def _read_toml(path: Path, field: str) -> dict[str, Any]:
    """Parse the TOML file ``path``; a :class:`SweepError` naming ``field`` when it cannot
    be read, is not UTF-8 text or is not TOML."""
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as error:
        raise SweepError(field, f"cannot read {path}: {error}") from error
    except UnicodeDecodeError as error:
        raise SweepError(field, f"{path} is not UTF-8 text: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise SweepError(field, f"{path} is not valid TOML: {error}") from error


def check_points_against_data(sweep: Sweep) -> None:
    """Every point passes the checks only the data can refute
    (:func:`orchestrator.preflight.check_data`; each distinct data setting once).

    Raises:
        SweepError: naming the field and the point.
    """
    from orchestrator.preflight import check_data

    checked: set[str] = set()
    for point in sweep.points:
        config = point.config
        key = repr((vars(config.data), config.users.count, config.experiment.seed))
        if key in checked:
            continue
        try:
            check_data(config)
        except ConfigError as error:
            label = ", ".join(f"{k}={v!r}" for k, v in point.overrides.items())
            problem = str(error).removeprefix(f"{error.field}: ")
            message = f"{problem} (sweep point {point.index}: {label})"
            raise SweepError(error.field, message) from error
        checked.add(key)


def load_sweep(path: str | Path, out_dir: Path | None = None) -> Sweep:
    """Read a sweep file, or the ``sweep.toml`` of an existing sweep directory."""
    path = Path(path)
    if path.is_dir():
        if not (path / SWEEP_FILE).is_file():
            raise SweepError("<file>", f"{path} is not a sweep directory (no {SWEEP_FILE})")
        raw = _read_toml(path / SWEEP_FILE, "<file>")
        sweep = parse_sweep(raw, path, out_dir if out_dir is not None else path.parent, path.name)
    else:
        raw = _read_toml(path, "<file>")
        sweep = parse_sweep(raw, path.parent, out_dir, path.stem)
    sweep.source = str(path)
    return sweep


# --------------------------------------------------------------------------- running


def point_state(path: Path) -> str:
    """``"done"`` (summary and DONE written), ``"checkpoint"`` (resumable), ``"started"``
    (directory without a checkpoint) or ``"new"``."""
    if (path / SUMMARY_FILE).is_file() and (path / DONE_FILE).is_file():
        return "done"
    if (path / "checkpoint.pt").is_file():
        return "checkpoint"
    return "started" if path.exists() else "new"


Runner = Callable[[ExperimentConfig, RunDirectory, bool], dict[str, Any]]


def inprocess_runner(verbose: bool = False) -> Runner:
    """Run a point in this process with :func:`orchestrator.main_job.run_experiment`.

    Cheaper to start, but a run leaves memory behind (about 2 GB for a 40-round,
    8-user run), so long sweeps use :func:`default_runner`."""

    def run(config: ExperimentConfig, run_dir: RunDirectory, resuming: bool) -> dict[str, Any]:
        from orchestrator.main_job import run_experiment

        return run_experiment(config, run_dir, resuming, progress=verbose)

    return run


def default_runner(verbose: bool = False) -> Runner:
    """Run a point in a fresh interpreter: ``python -m orchestrator.cli run --resume
    RUNDIR`` (the same code as this process). ``--resume`` calls
    ``run_experiment(config, run, resuming=True)``, which continues from the checkpoint
    when there is one and starts at round 0 when there is none. The child's output goes
    to ``RUNDIR/logs/sweep.log`` (to the terminal with ``verbose``).

    Raises:
        RuntimeError: the run exited with an error (the message ends with its log tail).
    """
    root = str(Path(__file__).resolve().parent.parent)

    def run(config: ExperimentConfig, run_dir: RunDirectory, resuming: bool) -> dict[str, Any]:
        command = [sys.executable, "-m", "orchestrator.cli", "run", "--resume", str(run_dir.path)]
        if not verbose:
            command.append("--quiet")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        log_path = run_dir.path / "logs" / "sweep.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a") as log_file:
            output = None if verbose else log_file
            process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
            try:
                code = process.wait()
            except BaseException:  # Ctrl-C or kill: stop the run (it checkpoints per round)
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                raise
        if code != 0:
            tail = log_path.read_text().strip().splitlines()[-3:]
            raise RuntimeError(f"airmix run exited with code {code}: {' / '.join(tail)}")
        return json.loads((run_dir.path / SUMMARY_FILE).read_text())

    return run


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: points run, skipped, resumed, failed, left."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    remaining: int = 0
    index: dict[str, Any] = field(default_factory=dict)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _index_entry(sweep: Sweep, point: SweepPoint, old: dict[str, Any]) -> dict[str, Any]:
    entry = {
        "index": point.index,
        "name": point.name,
        "dir": point.name,
        "overrides": point.overrides,
        "grid_positions": list(point.aliases),
        "status": "pending",
        "seconds": None,
        "headline": None,
    }
    for key in ("seconds", "error", "resumed"):
        if key in old:
            entry[key] = old[key]
    path = sweep.path / point.name
    if point_state(path) == "done":
        entry["status"] = "done"
        entry["headline"] = _read_json(path / SUMMARY_FILE).get("headline")
    return entry


def write_index(sweep: Sweep, entries: list[dict[str, Any]]) -> dict[str, Any]:
    index = {
        "name": sweep.name,
        "description": sweep.description,
        "source": sweep.source,
        "axes": {key: values for key, values in sweep.axes},
        "n_points": len(sweep.points),
        "n_done": sum(e["status"] == "done" for e in entries),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "points": entries,
    }
    atomic_write_text(sweep.path / INDEX_FILE, json.dumps(index, indent=2, default=str))
    return index


def run_sweep(
    sweep: Sweep,
    runner: Runner | None = None,
    progress: Callable[[str], None] | None = print,
    max_points: int | None = None,
    fail_fast: bool = False,
) -> SweepResult:
    """Run every point not yet done (see the module docstring); returns what happened.

    Args:
        runner: runs one point (default: :func:`default_runner`, a child process).
        progress: receives one line per point with k/N and the ETA (None: silent).
        max_points: stop after running this many points (the rest stay pending).
        fail_fast: re-raise a point's exception instead of recording it and going on.
    """
    say = progress or (lambda _line: None)
    runner = runner or default_runner()
    sweep.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(sweep.path / SWEEP_FILE, sweep.to_toml())
    provenance.write(sweep.path, experiment_file=sweep.path / SWEEP_FILE)
    old = {e.get("name"): e for e in _read_json(sweep.path / INDEX_FILE).get("points", [])}
    entries = [_index_entry(sweep, p, old.get(p.name, {})) for p in sweep.points]
    write_index(sweep, entries)
    result = SweepResult()
    total = len(sweep.points)
    todo = [p for p in sweep.points if entries[p.index]["status"] != "done"]
    durations: list[float] = []
    for point in sweep.points:
        entry = entries[point.index]
        k = point.index + 1
        if entry["status"] == "done":
            result.skipped.append(point.name)
            say(f"[{k}/{total}] {point.name}: done earlier, skipped")
            continue
        if max_points is not None and len(result.ran) + len(result.failed) >= max_points:
            break
        run_dir, resuming = _open_point(sweep, point, say)
        entry.update(status="running", resumed=resuming)
        write_index(sweep, entries)
        left = len(todo) - len(durations)
        eta = f", ETA {_format_seconds(np.mean(durations) * left)}" if durations else ""
        verb = "resuming" if resuming else "running"
        say(f"[{k}/{total}] {verb} {point.name} ({left} to run{eta})")
        started = time.perf_counter()
        try:
            summary = runner(point.config, run_dir, resuming)
        except KeyboardInterrupt:
            entry.update(status="interrupted", seconds=time.perf_counter() - started)
            write_index(sweep, entries)
            raise
        except Exception as error:  # a failed point is recorded; the sweep goes on
            entry.update(status="failed", error=f"{type(error).__name__}: {error}")
            entry["seconds"] = time.perf_counter() - started
            write_index(sweep, entries)
            result.failed.append(point.name)
            say(f"[{k}/{total}] {point.name} FAILED: {entry['error']}")
            if fail_fast:
                raise
            continue
        seconds = time.perf_counter() - started
        durations.append(seconds)
        atomic_write_text(
            run_dir.path / DONE_FILE, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        )
        headline = (summary or {}).get("headline") or _read_json(run_dir.path / SUMMARY_FILE).get(
            "headline"
        )
        entry.update(status="done", seconds=seconds, headline=headline)
        entry.pop("error", None)
        write_index(sweep, entries)
        (result.resumed if resuming else result.ran).append(point.name)
        accuracy = (headline or {}).get("final_accuracy")
        shown = f"accuracy {accuracy:.3f}, " if isinstance(accuracy, float) else ""
        say(f"[{k}/{total}] {point.name}: {shown}{seconds:.0f} s")
    result.remaining = sum(e["status"] != "done" for e in entries)
    result.index = write_index(sweep, entries)
    return result


def _open_point(sweep: Sweep, point: SweepPoint, say: Callable[[str], None]):
    """The point's run directory and whether to resume it (fresh start otherwise)."""
    path = sweep.path / point.name
    state = point_state(path)
    expected = point.config.to_toml()
    if state == "checkpoint":
        run = RunDirectory.open_existing(path)
        if run.config_path.read_text() != expected:
            say(f"  note: {point.name} was started with a different resolved config; resuming it")
        return run, True
    if state == "started":  # never reached a checkpoint: nothing worth keeping
        if not (path / CONFIG_FILE).exists() and any(path.iterdir()):
            raise SweepError(point.name, f"{path} exists and is not a run directory")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    run = RunDirectory(path)
    atomic_write_text(run.config_path, expected)
    return run, False


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", type=Path, help="sweep TOML file, or an existing sweep directory")
    parser.add_argument("--out", type=Path, help="parent directory of the sweep directory")
    parser.add_argument("--list", action="store_true", help="list the points and their state")
    parser.add_argument("--max-points", type=int, metavar="N", help="stop after running N points")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failed point")
    parser.add_argument("--verbose", action="store_true", help="per-round progress of each point")


def main(args: argparse.Namespace) -> int:
    try:
        sweep = load_sweep(args.sweep, args.out)
        check_points_against_data(sweep)
    except SweepError as error:
        print(f"airmix sweep: {error}", file=sys.stderr)
        return 2
    print(f"airmix sweep: {sweep.name}: {len(sweep.points)} points -> {sweep.path}")
    if args.list:
        for point in sweep.points:
            state = point_state(sweep.path / point.name)
            print(f"  {point.index + 1:4d}  {state:10s}  {point.name}")
        return 0
    result = run_sweep(
        sweep,
        default_runner(args.verbose),
        max_points=args.max_points,
        fail_fast=args.fail_fast,
    )
    print(
        f"sweep {sweep.name}: {len(result.ran)} run, {len(result.resumed)} resumed, "
        f"{len(result.skipped)} skipped, {len(result.failed)} failed, "
        f"{result.remaining} not done -> {sweep.path / INDEX_FILE}"
    )
    if result.remaining and not result.failed:
        print(f"rerun `airmix sweep {sweep.path}` to continue")
    return 1 if result.failed else 0


__all__ = [
    "Sweep",
    "SweepError",
    "SweepPoint",
    "SweepResult",
    "expand",
    "load_sweep",
    "normalize",
    "parse_sweep",
    "point_state",
    "run_sweep",
]

"""Read a run directory (running or finished) into the live view's snapshot.

:func:`read_snapshot` is the only source of what the page shows; it reads files the run
writes anyway (``config.toml``, ``metrics.jsonl``, ``summary.json``) and the live
records (:mod:`orchestrator.live.recorder`). It never reads ``audit/`` or ``nodes/``
(the ground truth kept for attack scoring), so the page cannot show a user's data.

A line being written (no newline yet) or a file not yet created is simply absent from
the snapshot; NaN and infinities become ``null`` so any JSON parser accepts it.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any

from orchestrator.live.recorder import LAST_SLOT_FILE, LINK_STATE_FILE, LIVE_DIR
from orchestrator.rundir import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE

#: per-round metrics the page plots (missing ones are left out)
ROUND_FIELDS = (
    "round",
    "accuracy",
    "loss",
    "channel_uses",
    "pilot_channel_uses",
    "round_channel_uses",
    "round_pilot_channel_uses",
    "slots",
    "missed_slots",
    "alive_users",
    "predicted_mixup_mse_db",
    "seconds",
)
#: per-user link-state fields kept as history for the sparklines
LINK_FIELDS = ("timing_samples", "cfo_hz", "gain", "snr_db", "underflows", "reacquisitions")
WATCHED = (
    CONFIG_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    f"{LIVE_DIR}/{LINK_STATE_FILE}",
    f"{LIVE_DIR}/{LAST_SLOT_FILE}",
)


def clean(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (recursively)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Complete JSON lines of ``path`` (a trailing partial line is skipped)."""
    try:
        text = path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return []
    rows = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # still being written
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None


def change_token(run_path: Path) -> tuple:
    """Size and modification time of every watched file: changes when the run writes."""
    token = []
    for name in WATCHED:
        try:
            stat = os.stat(run_path / name)
        except FileNotFoundError:
            token.append((name, None))
            continue
        token.append((name, stat.st_size, stat.st_mtime_ns))
    return tuple(token)


def _privacy_rows(summary: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Attack success next to its chance level, per view: rows of
    ``{"view", "attack", "figure", "value", "chance"}`` (figures ending in ``_chance``
    are the chance levels of the figure named without that suffix)."""
    if not summary:
        return []
    privacy = summary.get("privacy") or {}
    views = [("server", privacy.get("attacks") or {})]
    eavesdropper = privacy.get("eavesdropper") or {}
    if eavesdropper.get("attacks"):
        views.append(("eavesdropper", eavesdropper["attacks"]))
    for name, block in privacy.items():  # further views (e.g. membership) as peers
        if isinstance(block, dict) and name not in ("attacks", "eavesdropper"):
            attacks = block.get("attacks")
            if isinstance(attacks, dict):
                views.append((name, attacks))
    rows = []
    for view, attacks in views:
        for attack, figures in attacks.items():
            if not isinstance(figures, dict):
                continue
            for figure, value in figures.items():
                chance = figures.get(f"{figure}_chance")
                if figure.endswith("_chance") or chance is None:
                    continue
                rows.append(
                    {
                        "view": view,
                        "attack": attack,
                        "figure": figure,
                        "value": value,
                        "chance": chance,
                    }
                )
    return rows


def _link_state(records: list[dict[str, Any]]) -> dict[str, Any]:
    users = sorted({user for record in records for user in (record.get("users") or {})})
    history = {user: {field: [] for field in LINK_FIELDS} for user in users}
    rounds = []
    for record in records:
        rounds.append(record.get("round"))
        states = record.get("users") or {}
        for user in users:
            row = states.get(user) or {}
            for field in LINK_FIELDS:
                history[user][field].append(row.get(field))
    latest = {}
    for user in users:
        for record in reversed(records):
            if user in (record.get("users") or {}):
                latest[user] = record["users"][user]
                break
    return {"users": users, "rounds": rounds, "latest": latest, "history": history}


def read_snapshot(run_path: str | Path) -> dict[str, Any]:
    """Everything the live page shows for the run in ``run_path`` (JSON-ready).

    Keys: ``run`` (name, planned rounds, radio, method, status), ``rounds`` (one dict of
    :data:`ROUND_FIELDS` per completed round), ``groups`` (latest round's groups),
    ``link_state`` (users, per-round history, latest row), ``last_slot`` (spectrum and
    constellation, or None), ``privacy`` (attack rows, empty until the audit ran),
    ``headline`` (the summary's, or None)."""
    run_path = Path(run_path)
    try:
        config = tomllib.loads((run_path / CONFIG_FILE).read_text())
    except (FileNotFoundError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        config = {}
    metrics = read_jsonl(run_path / METRICS_FILE)
    summary = _read_json(run_path / SUMMARY_FILE)
    experiment = config.get("experiment", {})
    rounds = [{k: m[k] for k in ROUND_FIELDS if k in m} for m in metrics]
    snapshot = {
        "run": {
            "name": experiment.get("name", run_path.name),
            "directory": run_path.name,
            "rounds_planned": experiment.get("rounds"),
            "radio": config.get("channel", {}).get("radio"),
            "method": (config.get("method") or {}).get("name")
            or config.get("model", {}).get("mode"),
            "status": "finished" if summary is not None else "running",
        },
        "rounds": rounds,
        "groups": metrics[-1].get("groups", []) if metrics else [],
        # frames the orchestrator's link refused so far, by cause (someone knocking)
        "link_rejects": metrics[-1].get("link_rejects", {}) if metrics else {},
        "link_state": _link_state(read_jsonl(run_path / LIVE_DIR / LINK_STATE_FILE)),
        "last_slot": _read_json(run_path / LIVE_DIR / LAST_SLOT_FILE),
        "privacy": _privacy_rows(summary),
        "headline": (summary or {}).get("headline"),
    }
    return clean(snapshot)

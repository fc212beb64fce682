"""Synthetic run directories of known outcome for report tests.

A run directory written here has what a real run writes for the report: the resolved
``config.toml``, ``metrics.jsonl`` (accuracy, channel uses, groups, MSE per round) and
``summary.json`` (attack figures with chance levels); every figure is chosen by the
test, so each claim's verdict is known in advance.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.config import resolve_experiment

USERS = 4
#: fields that name a synthetic run directory
NAMED = (
    *("seed", "grouping", "group_size", "snr_db", "radio", "split"),
    *("name", "link", "eavesdropper_snr_db"),
)


def write_run(
    root: Path,
    *,
    seed: int,
    grouping: str = "label_aware",
    group_size: int = 2,
    accuracy: Sequence[float] = (0.95,),
    round_channel_uses: float = 100.0,
    mse_db: Sequence[float | None] | float | None = None,
    measured_mse_db: float | None = None,
    attacks: dict[str, dict[str, float]] | None = None,
    measured: dict[str, Any] | None = None,
    sections: dict[str, dict[str, Any]] | None = None,
    provenance: dict[str, Any] | None = None,
    membership: dict[str, float] | None = None,
    eavesdropper: dict[str, dict[str, float]] | None = None,
) -> Path:
    """One finished run under ``root``; returns its directory.

    Args:
        accuracy: test accuracy after each round (its length is the number of rounds).
        round_channel_uses: payload channel uses per round.
        mse_db: predicted mixup MSE (dB) per round, or one value for every round.
        measured_mse_db: measured payload MSE (dB) of every round (label tail 3 dB
            below), as :func:`orchestrator.mixup_error.score_run` writes it.
        attacks: ``summary.privacy.attacks`` (attack -> figure -> value).
        measured: extra keys for every metrics line (e.g. measured MSE).
        sections: experiment fields beyond grouping, group size and seed.
        provenance: written as ``provenance.json`` when given.
        membership: the strongest membership attack's figures
            (``summary.privacy.membership.best``), when given.
        eavesdropper: the eavesdropper view's ``attacks`` (attack -> figure -> value,
            ``summary.privacy.eavesdropper.attacks``), when given.
    """
    size = 1 if grouping == "orthogonal" else group_size
    raw: dict[str, dict[str, Any]] = {
        "experiment": {"seed": seed, "rounds": len(accuracy), "target_accuracy": 0.9},
        "users": {"count": USERS, "group_size": size, "grouping": grouping},
        "channel": {"fading": "awgn"},
    }
    for section, fields in (sections or {}).items():
        raw.setdefault(section, {}).update(fields)
    config = resolve_experiment(raw)
    name = "_".join(f"{k}-{v}" for k, v in sorted(_flat(raw).items())) or "run"
    path = root / name
    path.mkdir(parents=True)
    (path / "config.toml").write_text(config.to_toml())
    users = [f"u{i}" for i in range(USERS)]
    groups = [users[i : i + size] for i in range(0, USERS, size)]
    per_round = mse_db if isinstance(mse_db, list | tuple) else [mse_db] * len(accuracy)
    lines = []
    for i, acc in enumerate(accuracy):
        line = {
            "round": i,
            "accuracy": acc,
            "loss": 1.0,
            "slots": len(groups),
            "channel_uses": round_channel_uses * (i + 1),
            "pilot_channel_uses": 10 * (i + 1),
            "round_channel_uses": round_channel_uses,
            "predicted_mixup_mse_db": per_round[i],
            "measured_mixup_mse_db": measured_mse_db,
            "measured_label_mse_db": None if measured_mse_db is None else measured_mse_db - 3,
            "groups": groups,
            "alive_users": USERS,
            "digital_bytes": 1000 * (i + 1),
        }
        line.update(measured or {})
        lines.append(json.dumps(line))
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    summary = {"rounds": len(accuracy), "privacy": {"attacks": attacks or {}}}
    if eavesdropper is not None:
        summary["privacy"]["eavesdropper"] = {"attacks": eavesdropper}
    if membership is not None:
        summary["privacy"]["membership"] = {"best_attack": "lira_online", "best": membership}
    (path / "summary.json").write_text(json.dumps(summary))
    if provenance is not None:
        (path / "provenance.json").write_text(json.dumps(provenance))
    return path


def _flat(raw: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        name: value for fields in raw.values() for name, value in fields.items() if name in NAMED
    }


def attacks(inversion: float, label_set: float, chance: float = 0.1) -> dict[str, dict]:
    """Attack figures with one chance level for both."""
    return {
        "model_inversion": {"task_accuracy": inversion, "task_accuracy_chance": chance},
        "label_inference": {
            "exact_set_accuracy": label_set,
            "exact_set_accuracy_chance": chance,
            "per_user_accuracy": label_set,
            "per_user_accuracy_chance": chance,
        },
    }


def inversion(task_accuracy: float, chance: float = 0.1) -> dict[str, dict[str, float]]:
    """An eavesdropper's model-inversion figures (PSNR and SSIM fixed) with chance."""
    return {
        "model_inversion": {
            "task_accuracy": task_accuracy,
            "task_accuracy_chance": chance,
            "psnr_db": 13.0,
            "psnr_db_chance": 8.5,
            "ssim": 0.7,
            "ssim_chance": 0.4,
        }
    }

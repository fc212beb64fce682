"""Run directories: resolved config, per-round metrics, summary, plots, checkpoints.

Layout of ``runs/<name>-<UTC time>/``::

    config.toml      the resolved experiment (every default filled in)
    metrics.jsonl    one JSON object per round
    checkpoint.pt    the latest complete checkpoint (model, optimizer, rng states, round)
    summary.json     final figures, written when the run ends
    plots/*.png      accuracy, attack success and channel uses per round

Every file is written atomically (temporary file + ``os.replace``), so a run killed at
any moment leaves either the previous or the new version, never half a file; a resumed
run drops metric lines newer than its checkpoint, so it ends with the same metrics as
an uninterrupted run.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
SUMMARY_FILE = "summary.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never a mix."""
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Like :func:`atomic_write_bytes`, with ``write(handle)`` writing the content into
    the open binary file (e.g. ``torch.save(state, handle)``: no copy of it in memory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


class RunDirectory:
    """One experiment run's directory (see the module docstring for its layout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, out_dir: str | Path, name: str, config_toml: str) -> RunDirectory:
        """Make ``out_dir/<name>-<UTC time>`` and write the resolved config into it.

        Raises:
            ValueError: ``name`` would place the directory outside ``out_dir``.
        """
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        base = Path(out_dir) / f"{name}-{stamp}"
        if base.resolve().parent != Path(out_dir).resolve():
            raise ValueError(f"run name {name!r} places the run outside {out_dir}")
        path, suffix = base, 1
        while path.exists():
            suffix += 1
            path = Path(f"{base}-{suffix}")
        path.mkdir(parents=True)
        run = cls(path)
        atomic_write_text(run.config_path, config_toml)
        return run

    @classmethod
    def open_existing(cls, path: str | Path) -> RunDirectory:
        """Open a run directory to resume it; it must hold a config file."""
        run = cls(path)
        if not run.config_path.is_file():
            raise FileNotFoundError(f"{run.path} is not an airmix run directory (no {CONFIG_FILE})")
        return run

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def plots_dir(self) -> Path:
        return self.path / "plots"

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one round's metrics as a JSON line (rewritten atomically)."""
        lines = self.metrics_path.read_text().splitlines() if self.metrics_path.exists() else []
        lines.append(json.dumps(record, sort_keys=True))
        atomic_write_text(self.metrics_path, "\n".join(lines) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line]

    def truncate_metrics(self, last_round: int) -> None:
        """Keep only metric lines with ``round <= last_round`` (used when resuming)."""
        kept = [r for r in self.read_metrics() if r.get("round", -1) <= last_round]
        atomic_write_text(
            self.metrics_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept)
        )

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Save a checkpoint (plain ``state``: tensors, numbers, strings, lists and dicts
        of them, see :mod:`orchestrator.checkpoints`) atomically."""
        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.checkpoint_path, buffer.getvalue())

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The latest checkpoint, or None when the run never reached one."""
        import torch

        if not self.checkpoint_path.exists():
            return None
        return torch.load(self.checkpoint_path, weights_only=True)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.path / SUMMARY_FILE, json.dumps(summary, indent=2, sort_keys=True))

"""Measured mixup error: the receiver's estimate against the true weighted sum.

During a run two parties keep what they had anyway, each in its own files of the run
directory, and nothing travels on the digital link:

* the engine (the receiver) logs each slot's estimate of ``sum_k w_k x_k`` (float32
  ``(n_reals,)``), the group, the mixing weights ``w`` and the power policy's predicted
  MSE (``receiver/estimates.*``, :meth:`MixupLog.receiver`);
* each node logs the exact slot vector ``x_k`` it put on the air for each of its users
  (``audit/payloads/<node>.*``, :meth:`MixupLog.node`), next to the dataset indices it
  already records for attack scoring.

After the run, :func:`score_run` joins them: per slot the squared error of the estimate
against ``sum_k w_k x_k``, averaged over the payload reals and, separately, over the
label tail (the one-hot label scaled as sent, see :func:`orchestrator.experiment.
pack_payload`), in the same units as the predicted MSE (per real of unit-power payloads,
which equals per complex symbol: :func:`phy.waveform.payload_to_symbols` packs two
reals into one symbol with ``1/sqrt 2``). Rounds average their slots linearly. The result
goes to ``mixup_error.json`` and, per round, into ``metrics.jsonl``
(``measured_mixup_mse_db``, ``measured_label_mse_db``) beside ``predicted_mixup_mse_db``.

A log is an append-only float32 file plus a JSON-lines index (offset and length of each
vector); a resumed run appends the replayed slots again, and the last entry of a
(round, slot, user) wins.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from learning.figures import save_figure
from orchestrator.rundir import METRICS_FILE, atomic_write_text

RESULT_FILE = "mixup_error.json"
RECEIVER_LOG = ("receiver", "estimates")


def _db(value: float) -> float | None:
    return 10 * math.log10(value) if value > 0 and math.isfinite(value) else None


class MixupLog:
    """Append-only log of float32 vectors with a JSON-lines index.

    Files: ``<directory>/<name>.f32`` (the vectors back to back) and
    ``<directory>/<name>.jsonl`` (one record per vector, plus ``offset`` and ``length``
    in floats)."""

    def __init__(self, directory: str | Path, name: str) -> None:
        self.directory = Path(directory)
        self.name = name
        self.directory.mkdir(parents=True, exist_ok=True)

    @classmethod
    def receiver(cls, run_dir: str | Path) -> MixupLog:
        """The engine's log of per-slot estimates."""
        return cls(Path(run_dir) / RECEIVER_LOG[0], RECEIVER_LOG[1])

    @classmethod
    def node(cls, run_dir: str | Path, node_id: str) -> MixupLog:
        """Node ``node_id``'s log of the slot vectors it transmitted."""
        return cls(Path(run_dir) / "audit" / "payloads", node_id)

    @property
    def data_path(self) -> Path:
        return self.directory / f"{self.name}.f32"

    @property
    def index_path(self) -> Path:
        return self.directory / f"{self.name}.jsonl"

    def append(self, record: dict[str, Any], vector: np.ndarray) -> None:
        """Append ``vector`` (any shape, stored flat as float32) with ``record``."""
        flat = np.ascontiguousarray(np.asarray(vector, dtype=np.float32).reshape(-1))
        with self.data_path.open("ab") as handle:
            offset = handle.tell() // 4
            handle.write(flat.tobytes())
        entry = {**record, "offset": offset, "length": int(flat.size)}
        with self.index_path.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")

    def slot(
        self, round_id: int, slot_id: int, users: list[str], vector: np.ndarray, **extra: Any
    ) -> None:
        """Append one slot's vector: the receiver's estimate (``extra``: ``weights``,
        ``predicted_mse``, ``batch``, ``dim``) or one user's sent vector (``users`` of
        one)."""
        record = {"round": int(round_id), "slot": int(slot_id), "users": list(users)}
        for key, value in extra.items():
            record[key] = np.asarray(value).tolist() if isinstance(value, np.ndarray) else value
        self.append(record, vector)

    def entries(self) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
        """Every (record, vector) in the order written."""
        if not self.index_path.is_file():
            return
        data = np.fromfile(self.data_path, dtype=np.float32)
        for line in self.index_path.read_text().splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            start = record["offset"]
            yield record, data[start : start + record["length"]]


def _sent_vectors(run_dir: Path) -> dict[tuple[int, int, str], np.ndarray]:
    """(round, slot, user) -> the slot vector the user sent (last entry wins)."""
    sent: dict[tuple[int, int, str], np.ndarray] = {}
    for index in sorted((run_dir / "audit" / "payloads").glob("*.jsonl")):
        log = MixupLog(index.parent, index.stem)
        for record, vector in log.entries():
            sent[(record["round"], record["slot"], record["users"][0])] = vector
    return sent


def score_slots(run_dir: str | Path) -> list[dict[str, Any]]:
    """Per received slot: round, slot, users, payload and label-tail MSE of the estimate
    against the true weighted sum, the predicted MSE; slots with a missing user vector
    (e.g. a remote node's audit is elsewhere) are left out."""
    run_dir = Path(run_dir)
    sent = _sent_vectors(run_dir)
    latest: dict[tuple[int, int], tuple[dict[str, Any], np.ndarray]] = {}
    for record, estimate in MixupLog.receiver(run_dir).entries():
        latest[(record["round"], record["slot"])] = (record, estimate)
    rows = []
    for (round_id, slot_id), (record, estimate) in sorted(latest.items()):
        vectors = [sent.get((round_id, slot_id, u)) for u in record["users"]]
        if any(v is None or v.size != estimate.size for v in vectors):
            continue
        target = np.asarray(record["weights"], dtype=np.float64) @ np.stack(vectors)
        dim = record.get("dim")  # None: a method without a label tail
        # without a label tail the vector need not be laid out per sample (a model update)
        batch = (record.get("batch") or 1) if dim is not None else 1
        error = (estimate.astype(np.float64) - target).reshape(batch, -1)
        tail = error[:, dim:] if dim is not None else error[:, :0]
        rows.append(
            {
                "round": round_id,
                "slot": slot_id,
                "users": record["users"],
                "payload_mse": float(np.mean(error[:, :dim] ** 2)),
                "label_mse": float(np.mean(tail**2)) if tail.size else None,
                "predicted_mse": float(record["predicted_mse"]),
            }
        )
    return rows


def score_run(run_dir: str | Path) -> dict[str, Any]:
    """Score the run (:func:`score_slots`), write ``mixup_error.json`` and add the
    per-round measured figures to ``metrics.jsonl``; returns the result
    (``slots``, ``rounds``, and ``overall`` means in dB)."""
    run_dir = Path(run_dir)
    slots = score_slots(run_dir)
    by_round: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in slots:
        by_round[row["round"]].append(row)

    def mean_db(rows: list[dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None]
        return _db(float(np.mean(values))) if values else None

    def means(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "slots": len(rows),
            "measured_mixup_mse_db": mean_db(rows, "payload_mse"),
            "measured_label_mse_db": mean_db(rows, "label_mse"),
            "predicted_mixup_mse_db": mean_db(rows, "predicted_mse"),
        }

    rounds = {r: means(rows) for r, rows in sorted(by_round.items())}
    result = {
        "units": "mean squared error per real of unit-power payloads (= per complex symbol)",
        "overall": means(slots) if slots else {"slots": 0},
        "rounds": {str(r): v for r, v in rounds.items()},
        "slots": slots,
    }
    atomic_write_text(run_dir / RESULT_FILE, json.dumps(result, indent=1))
    _annotate_metrics(run_dir / METRICS_FILE, rounds)
    return result


def _annotate_metrics(path: Path, rounds: dict[int, dict[str, Any]]) -> None:
    if not path.is_file():
        return
    lines = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        scored = rounds.get(record.get("round"), {})
        record["measured_mixup_mse_db"] = scored.get("measured_mixup_mse_db")
        record["measured_label_mse_db"] = scored.get("measured_label_mse_db")
        lines.append(json.dumps(record))
    atomic_write_text(path, "\n".join(lines) + "\n")


def plot(result: dict[str, Any], path: str | Path) -> Path | None:
    """Measured (payload, label tail) and predicted MSE per round; None without slots."""
    rounds = result.get("rounds") or {}
    if not rounds:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [int(r) for r in rounds]
    figure, axis = plt.subplots(figsize=(7, 4))
    for key, style, name in (
        ("measured_mixup_mse_db", "o-", "measured, payload"),
        ("measured_label_mse_db", "s--", "measured, label tail"),
        ("predicted_mixup_mse_db", "k:", "predicted by the power policy"),
    ):
        values = [v.get(key) for v in rounds.values()]
        axis.plot(x, [np.nan if v is None else v for v in values], style, ms=3, label=name)
    axis.set(xlabel="round", ylabel="mixup MSE (dB per real)")
    axis.set_title("receiver estimate vs true weighted sum, per round")
    axis.legend(fontsize=8)
    return save_figure(figure, path)

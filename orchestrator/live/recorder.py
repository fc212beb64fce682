"""What a run records for its live view (``RUNDIR/live/``), written once per round.

``link_state.jsonl``
    one JSON object per round: ``{"round": r, "users": {user_id: {...}}}`` with each
    user's latest link estimate as the receiver measured it (timing offset in samples,
    CFO in Hz, gain magnitude and phase, SNR in dB) and its counters (underflows,
    re-acquisitions) when the radio back-end reports them.
``last_slot.json``
    the last recorded slot: its round and slot, the received window's power spectral
    density (Welch, dB, centred on the carrier) and the receiver's estimate of the mixed
    payload as complex points (the analog constellation the server trained on).

Files are written atomically (see :mod:`orchestrator.rundir`), so the view never reads
half a record. Nothing here is a user's raw data: both files hold only what the
receiver measured or estimated.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal

from orchestrator.rundir import atomic_write_text

LIVE_DIR = "live"
LINK_STATE_FILE = "link_state.jsonl"
LAST_SLOT_FILE = "last_slot.json"

#: frequency bins of the recorded spectrum and points of the recorded constellation
SPECTRUM_BINS = 256
CONSTELLATION_POINTS = 512


def _number(value: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def link_state(
    timing_samples: float | None,
    cfo_hz: float | None,
    gain: complex,
    snr_db: float | None,
    counters: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """One user's row of ``link_state.jsonl``: timing offset (samples), CFO (Hz), gain
    magnitude and phase (rad), SNR (dB), and counters such as ``underflows`` and
    ``reacquisitions`` when the time base keeps them."""
    gain = complex(gain)
    row = {
        "timing_samples": _number(timing_samples),
        "cfo_hz": _number(cfo_hz),
        "gain": _number(abs(gain)),
        "gain_phase_rad": _number(math.atan2(gain.imag, gain.real)),
        "snr_db": _number(snr_db),
    }
    for name, value in (counters or {}).items():
        row[name] = int(value)
    return row


def link_state_of(estimate: Any, counters: Mapping[str, int] | None = None) -> dict[str, Any]:
    """:func:`link_state` from a :class:`phy.estimation.LinkEstimate` (the cyclic loop's
    acquisition: ``delay_samples``, ``cfo_hz``, ``gain``, ``snr_db``)."""
    return link_state(
        getattr(estimate, "delay_samples", None),
        getattr(estimate, "cfo_hz", None),
        getattr(estimate, "gain", float("nan")),
        getattr(estimate, "snr_db", None),
        counters,
    )


def spectrum_db(samples: np.ndarray, sample_rate_hz: float) -> dict[str, list[float]]:
    """Welch power spectral density of complex baseband ``samples`` (shape (n,)).

    Returns ``{"freq_hz": [...], "psd_db": [...]}``, ``SPECTRUM_BINS`` points (fewer for
    short windows) ordered from -fs/2 to fs/2, in dB relative to full scale per Hz."""
    samples = np.asarray(samples, dtype=np.complex128).ravel()
    if samples.size < 2:
        return {"freq_hz": [], "psd_db": []}
    nperseg = min(SPECTRUM_BINS, samples.size)
    freq, psd = signal.welch(
        samples, fs=sample_rate_hz, nperseg=nperseg, return_onesided=False, detrend=False
    )
    freq, psd = np.fft.fftshift(freq), np.fft.fftshift(psd)
    psd_db = 10.0 * np.log10(np.maximum(psd, 1e-30))
    return {"freq_hz": freq.round(3).tolist(), "psd_db": psd_db.round(2).tolist()}


def constellation(estimate_reals: np.ndarray) -> dict[str, list[float]]:
    """The receiver's real-valued mixture estimate packed as complex points
    (``x[0::2] + 1j x[1::2]``, the way the waveform packs reals), at most
    ``CONSTELLATION_POINTS`` of them, evenly spaced."""
    reals = np.asarray(estimate_reals, dtype=np.float64).ravel()
    reals = reals[: reals.size - reals.size % 2]
    points = reals[0::2] + 1j * reals[1::2]
    if points.size > CONSTELLATION_POINTS:
        points = points[np.linspace(0, points.size - 1, CONSTELLATION_POINTS).astype(int)]
    return {"i": points.real.round(4).tolist(), "q": points.imag.round(4).tolist()}


class LiveRecorder:
    """Writes ``RUNDIR/live/`` for :mod:`orchestrator.live.server` (see module docstring).

    ``run_path``: the run directory. A resumed run appends to ``link_state.jsonl``;
    rounds already recorded are dropped first so each round appears once."""

    def __init__(self, run_path: str | Path) -> None:
        self.dir = Path(run_path) / LIVE_DIR
        self.dir.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, last_round: int) -> None:
        """Drop link-state records newer than ``last_round`` (used on resume)."""
        path = self.dir / LINK_STATE_FILE
        if not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["round"] <= last_round:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue
        atomic_write_text(path, "".join(f"{line}\n" for line in kept))

    def record_link_state(self, round_id: int, users: Mapping[str, dict[str, Any]]) -> None:
        """Append one round's per-user link state (rows from :func:`link_state_of`)."""
        line = json.dumps({"round": int(round_id), "users": dict(users)}, allow_nan=False)
        with open(self.dir / LINK_STATE_FILE, "a") as handle:
            handle.write(line + "\n")

    def record_slot(
        self,
        round_id: int,
        slot_id: int,
        received: np.ndarray,
        sample_rate_hz: float,
        estimate_reals: np.ndarray | None,
        group: list[str],
    ) -> None:
        """Replace ``last_slot.json`` with this slot's spectrum and constellation.

        ``received``: complex samples of the receiver's window (shape (n,));
        ``estimate_reals``: the receiver's mixture estimate, None when the frame was missed."""
        record = {
            "round": int(round_id),
            "slot": int(slot_id),
            "group": list(group),
            "sample_rate_hz": float(sample_rate_hz),
            "spectrum": spectrum_db(received, sample_rate_hz),
            "constellation": constellation(estimate_reals) if estimate_reals is not None else None,
        }
        atomic_write_text(self.dir / LAST_SLOT_FILE, json.dumps(record, allow_nan=False))

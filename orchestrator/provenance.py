"""Provenance: what produced a run or sweep directory, written as ``provenance.json``.

Recorded (:func:`collect`):

* ``code``: the git commit of the checkout holding this package and whether its tree
  had uncommitted changes (``dirty``, with the changed paths), or why it is unknown;
* ``python`` and ``packages``: interpreter and installed versions of the packages a
  result depends on (:data:`PACKAGES`: torch, numpy, pyadi-iio, pylibiio, pyzmq, ...);
* ``libiio``: the libiio C library version reported by the ``iio`` binding;
* ``machine``: OS, kernel, CPU model and count;
* ``command``: the command line (``sys.argv``) and the working directory;
* ``experiment``: the SHA-256 of the run's resolved experiment file (``config.toml``,
  every default filled in, so equal hashes mean equal experiments);
* ``radios``: each radio's identity as its back-end reports it (:func:`radio_identity`):
  for libiio radios (``ip:``, ``usb:``) the context's ``hw_model``, ``hw_serial``,
  ``fw_version`` and the AD9361's ``xo_correction`` (calibration); for simulated radios
  the URI.

:func:`version_key` is the part two results must share to be compared as "the same
code": commit, dirty flag and package versions.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

PROVENANCE_FILE = "provenance.json"
#: distributions whose versions are recorded (missing ones as None)
PACKAGES = (
    "airmix",
    "torch",
    "numpy",
    "scipy",
    "scikit-learn",
    "pyadi-iio",
    "pylibiio",
    "pyzmq",
    "msgpack",
    "pandas",
    "matplotlib",
)
_REPO = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=_REPO, capture_output=True, text=True, timeout=20, check=True
    ).stdout.strip()


def code_version() -> dict[str, Any]:
    """``{"commit", "dirty", "changed"}`` of the checkout, or ``{"error": why}``."""
    try:
        commit = _git("rev-parse", "HEAD")
        status = _git("status", "--porcelain", "-uno").splitlines()
        changed = [line.split(maxsplit=1)[1] for line in status if line.strip()]
    except (OSError, subprocess.SubprocessError) as error:
        return {"commit": None, "dirty": None, "error": f"{type(error).__name__}: {error}"}
    return {"commit": commit, "dirty": bool(changed), "changed": changed[:50]}


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None: not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def libiio_version() -> str | None:
    """The libiio C library's version as the ``iio`` binding reports it, e.g. ``0.24
    (v0.24)``; None when the binding or the library is missing."""
    try:
        import iio
    except (ImportError, OSError):
        return None
    major, minor, tag = iio.version
    return f"{major}.{minor} ({tag})"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """OS, kernel, architecture, CPU model and logical CPU count."""
    return {
        "os": platform.platform(),
        "system": platform.system(),
        "release": platform.release(),
        "architecture": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "hostname": platform.node(),
    }


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def radio_identity(uri: str, role: str, timeout_ms: int = 3000) -> dict[str, Any]:
    """A radio's identity as its back-end reports it.

    libiio URIs (``ip:``, ``usb:``): a short-lived context (no buffers, so a radio in use
    by a node is not disturbed) gives ``hw_model``, ``hw_serial``, ``fw_version`` and
    the AD9361 ``xo_correction``; ``serial:`` URIs name the serial itself; simulated
    radios (``sim://``, ``simnet://``) report their URI only. Errors are recorded, not
    raised."""
    scheme = uri.split(":", 1)[0]
    out: dict[str, Any] = {"role": role, "uri": uri, "backend": scheme}
    if scheme == "serial":
        out["hw_serial"] = uri.split(":", 1)[1]
        return out
    if scheme not in ("ip", "usb"):
        out["model"] = "simulated"
        return out
    try:
        import iio

        context = iio.Context(uri)
        context.set_timeout(timeout_ms)
        attrs = dict(context.attrs)
        out.update({k: attrs.get(k) for k in ("hw_model", "hw_serial", "fw_version")})
        phy = context.find_device("ad9361-phy")
        if phy is not None and "xo_correction" in phy.attrs:
            out["xo_correction"] = phy.attrs["xo_correction"].value
    except Exception as error:  # an unreachable radio is recorded, never fatal
        out["error"] = f"{type(error).__name__}: {error}"
    return out


def collect(
    *,
    experiment_file: str | Path | None = None,
    radios: Sequence[tuple[str, str]] = (),
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Everything listed in the module docstring.

    Args:
        experiment_file: the resolved experiment file to hash (None: not recorded).
        radios: ``(role, uri)`` pairs, e.g. ``("receiver", "ip:127.0.0.1:30431")``.
        argv: the command line (default ``sys.argv``).
    """
    return {
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code": code_version(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": package_versions(),
        "libiio": libiio_version(),
        "machine": machine(),
        "command": {"argv": list(sys.argv if argv is None else argv), "cwd": os.getcwd()},
        "experiment": (
            {"file": Path(experiment_file).name, "sha256": file_sha256(experiment_file)}
            if experiment_file is not None
            else None
        ),
        "radios": [radio_identity(uri, role) for role, uri in radios],
    }


def write(directory: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Collect provenance (:func:`collect` arguments) into ``directory/provenance.json``
    (written atomically); returns what the file holds. A directory that already has one
    (a resumed run) keeps it and gains the new record under ``resumed``, so a run
    continued by other code shows it."""
    from orchestrator.rundir import atomic_write_text

    path = Path(directory) / PROVENANCE_FILE
    record = collect(**kwargs)
    if path.is_file():
        first = json.loads(path.read_text())
        first.setdefault("resumed", []).append(record)
        record = first
    atomic_write_text(path, json.dumps(record, indent=2))
    return record


def read(directory: str | Path) -> dict[str, Any]:
    """``directory/provenance.json`` (empty when there is none)."""
    path = Path(directory) / PROVENANCE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def run_radios(radios: Any, user_ids: Iterable[str]) -> list[tuple[str, str]]:
    """``(role, uri)`` of a run's radios (:class:`orchestrator.radios.RunRadios`): each
    user's URI and the receiver's when it is open."""
    pairs = [(f"user {u}", radios.user_uri(u)) for u in user_ids]
    receiver_uri = getattr(getattr(radios, "receiver", None), "uri", None)
    if isinstance(receiver_uri, str):
        pairs.append(("receiver", receiver_uri))
    return pairs


def _code_key(record: dict[str, Any]) -> tuple:
    code = record.get("code") or {}
    packages = tuple(sorted((record.get("packages") or {}).items()))
    return (code.get("commit"), code.get("dirty"), record.get("libiio"), packages)


def version_key(record: dict[str, Any]) -> tuple:
    """What two results must share to count as produced by the same code: commit, dirty
    flag and package versions (the libiio library included), over the first record and
    every resumption (a run resumed by the same code has the key of an uninterrupted one)."""
    keys = {_code_key(record), *(_code_key(r) for r in record.get("resumed", []))}
    return tuple(sorted(keys, key=str))


def describe(record: dict[str, Any]) -> str:
    """One line: commit (and dirty flag), Python, key package versions, libiio."""
    if not record:
        return "no provenance recorded"
    code = record.get("code") or {}
    commit = (code.get("commit") or "unknown")[:10] + (
        " (modified tree)" if code.get("dirty") else ""
    )
    packages = record.get("packages") or {}
    shown = ", ".join(
        f"{name} {packages.get(name)}"
        for name in ("torch", "numpy", "pyadi-iio", "pylibiio", "pyzmq")
        if name in packages
    )
    return f"commit {commit}; Python {record.get('python')}; {shown}; libiio {record.get('libiio')}"

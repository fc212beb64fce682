"""A local node process's lifeline to the orchestrator that spawned it.

A node must not outlive its orchestrator: killed before the node joined, nobody would
ever talk to it again. Two mechanisms, both ending the node with one log line:

* :func:`die_with_parent` runs in the child between ``fork`` and ``exec`` (Popen's
  ``preexec_fn``) and asks Linux to send it ``SIGTERM`` when the parent dies
  (``prctl(PR_SET_PDEATHSIG)``); the signal arrives even while the node is still
  importing torch, where the default action ends it silently;
* :func:`watch_parent`, called first thing in the node, installs a ``SIGTERM`` handler
  that logs one line and exits, and starts a thread that polls ``os.getppid()`` every
  :data:`POLL_S` seconds (for the window before ``prctl`` took effect, and for systems
  without it).

Remote nodes have no parent to watch; their join is bounded instead (see
:mod:`orchestrator.node`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger(__name__)

#: seconds between two checks of the parent process
POLL_S = 0.5
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel for ``SIGTERM`` when the parent dies (Linux; no-op elsewhere).
    Meant as ``subprocess.Popen(preexec_fn=die_with_parent)``."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


#: how long a SIGTERM waits to see whether the parent has died (seconds)
REPARENT_WAIT_S = 0.5


def _exit(name: str, parent_pid: int, why: str) -> None:
    log.warning("%s: orchestrator (pid %d) %s; exiting", name, parent_pid, why)
    logging.shutdown()
    os._exit(1)


def watch_parent(parent_pid: int, name: str) -> threading.Thread:
    """End this process (one warning line, exit code 1) when ``parent_pid`` is no longer
    its parent or a ``SIGTERM`` arrives. Returns the watching thread (a daemon).

    Must be called from the main thread (it installs a signal handler)."""

    def on_sigterm(signum: int, frame: object) -> None:
        # the kernel's parent-death SIGTERM can arrive before this process is
        # re-parented, so give getppid() a moment to tell the two causes apart
        deadline = time.monotonic() + REPARENT_WAIT_S
        while os.getppid() == parent_pid and time.monotonic() < deadline:
            time.sleep(0.01)
        gone = os.getppid() != parent_pid
        _exit(name, parent_pid, "is gone" if gone else "sent SIGTERM")

    signal.signal(signal.SIGTERM, on_sigterm)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(POLL_S)
        _exit(name, parent_pid, "is gone")

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread

"""Planned rounds: windows of air laid out ahead on a simulated medium's clock.

The ``ideal`` time base's cyclic loop plays one group at a time: start a pilot, capture
it, stop it, next user; then each slot's frames, capture, stop. Each step waits on a
round trip to a node, which at population scale is most of the round. On a simulated
medium with its deterministic clock nothing forces that order: slots of different groups
never overlap on the air, so a round can lay out every window of receiver air ahead of
the clock, tell each node in one request when each of its users plays what
(:meth:`radio.base.Radio.transmit_at`: a buffer counted as pushed at the window's first
sample, so it starts one start latency later, exactly as a buffer pushed just before that
capture in the sequential loop), then render every window and run the receiver's work
on it at once, in parallel: worker processes (:class:`InProcesses`), threads
(:func:`in_threads`) or Ray actors of the run's cluster
(:class:`orchestrator.ray_nodes.RayTasks`), since a window's
:class:`phy.medium.RenderJob` renders anywhere.

:class:`PlannedAir` keeps the layout: :meth:`PlannedAir.window` reserves the next window
(receiver clock, medium times), :meth:`PlannedAir.run` renders reserved windows and works
on them (:class:`WindowTask`), :meth:`PlannedAir.capture` and :meth:`PlannedAir.listen`
just render them (for the receiver and an eavesdropper), and :meth:`PlannedAir.finish`
moves the receiver's stream and clock past every window reserved so far, captured or not
(a failed wave leaves no scheduled buffer in the way of the next). Real radios cannot do
this: a pushed buffer has no start time (the ``stream`` and ``tdd`` time bases are the
lab's answer).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from phy.medium import MediumPort, RenderJob, account_render
from phy.ota import estimate_mixup
from phy.waveform import OfdmConfig
from radio.ota_session import OtaReceiver

__all__ = [
    "InProcesses",
    "Mapper",
    "PlannedAir",
    "Window",
    "WindowTask",
    "in_threads",
    "mixup_estimate",
    "prepare_air_worker",
]

#: chunks per parallel worker in a wave (balance, and no single huge pickled argument)
CHUNKS_PER_WORKER = 4

#: ``mapper(function, items) -> [function(item) for item in items]``, run wherever the
#: mapper runs it (threads of this process, Ray tasks); ``function`` and the items pickle
Mapper = Callable[[Callable[[Any], Any], list], list]


def in_threads(function: Callable[[Any], Any], items: list) -> list:
    """The default :data:`Mapper`: one thread per CPU (numpy releases the GIL in the
    rendering and the receiver's FFTs)."""
    with ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="air") as pool:
        return list(pool.map(function, items))


class InProcesses:
    """A :data:`Mapper` over a pool of worker processes started once (``spawn``: the
    orchestrator's threads and sockets are not forked), so rendering and the receiver's
    work use every core without the GIL. Each worker imports the PHY when it starts,
    while the run's nodes join; one BLAS thread each, as every run process."""

    def __init__(self, workers: int | None = None) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.parallel = workers or os.cpu_count() or 1
        self._pool = ProcessPoolExecutor(
            self.parallel, mp_context=multiprocessing.get_context("spawn"),
            initializer=prepare_air_worker,
        )  # fmt: skip
        for _ in range(self.parallel):  # start them now
            self._pool.submit(prepare_air_worker)

    def __call__(self, function: Callable[[Any], Any], items: list) -> list:
        """``[function(item) for item in items]`` in the worker processes."""
        return list(self._pool.map(function, items))

    def close(self) -> None:
        """Stop the workers."""
        self._pool.shutdown(cancel_futures=True)


def prepare_air_worker() -> None:
    """Set up a process that renders and estimates planned windows (a local worker or a
    Ray air worker): the PHY imported once, one BLAS thread (as every run process)."""
    from threadpoolctl import threadpool_limits

    import phy.medium  # noqa: F401 - imported while the run starts
    import phy.ota  # noqa: F401

    threadpool_limits(limits=1)


@dataclass(frozen=True)
class Window:
    """One reserved window of receiver air.

    Attributes:
        clock: receiver clock (:attr:`OtaReceiver.clock`) of its first sample.
        n: samples captured, what the PHY gets.
        length: receiver samples it takes (``n`` rounded up to whole RX buffers).
        push_s: medium time of its first sample, seconds: users' buffers for the window
            count as pushed then.
        end_s: medium time it ends, seconds: cyclic buffers stop then.
    """

    clock: int
    n: int
    length: int
    push_s: float
    end_s: float


@dataclass(frozen=True)
class WindowTask:
    """Receiver work on some windows of a planned wave: render ``windows`` (the first
    ``lengths[i]`` samples of each) and apply ``work`` to the list of captures. ``work``
    must pickle (a module function or a ``functools.partial`` of one) so the task can run
    in another process, e.g. :func:`phy.ota.estimate_links` with its arguments."""

    windows: Sequence[Window]
    lengths: Sequence[int]
    work: Callable[[list[np.ndarray]], Any]


def mixup_estimate(
    captures: list[np.ndarray],
    rx_scaling: complex,
    n_reals: int,
    config: OfdmConfig,
    frame_start: int,
) -> np.ndarray | ValueError:
    """:func:`phy.ota.estimate_mixup` of a slot's one capture, or the ValueError saying
    why no frame was found (a missed slot, returned so one miss does not stop a wave)."""
    try:
        return estimate_mixup(captures[0], rx_scaling, n_reals, config, frame_start=frame_start)
    except ValueError as error:
        return error


def _run_chunk(chunk: list[tuple[list[RenderJob], Callable]]) -> tuple[list[Any], float, float]:
    """Render and work through one chunk of tasks (in any process); returns the results
    and the seconds spent rendering and working."""
    results, render_s, work_s = [], 0.0, 0.0
    for jobs, work in chunk:
        started = time.perf_counter()
        captures = [job.render() for job in jobs]
        rendered = time.perf_counter()
        results.append(work(captures))
        render_s += rendered - started
        work_s += time.perf_counter() - rendered
    return results, render_s, work_s


def _spans(
    port: MediumPort, windows: Sequence[Window], lengths: Sequence[int] | None
) -> list[tuple[str, float, int]]:
    """``(port name, start, samples)`` of each window's capture (default: its ``n``)."""
    lengths = [w.n for w in windows] if lengths is None else lengths
    pairs = list(zip(windows, lengths, strict=True))
    if any(not 1 <= n <= w.n for w, n in pairs):
        raise ValueError("a capture is longer than its window")
    return [(port.name, w.push_s, int(n)) for w, n in pairs]


class PlannedAir:
    """Windows of ``receiver``'s air on its simulated medium port ``port``.

    Args:
        receiver: the round's cyclic-loop receiver; its clock counts the windows.
        port: the receiver radio's port on the medium (deterministic clock).
        listener: a passive port (an eavesdropper) that hears the same windows, or None.
        mapper: where :meth:`run` renders and works (default: threads of this process).
        parallel: workers behind the mapper (default: this machine's CPUs); a wave is
            cut into ``CHUNKS_PER_WORKER`` chunks per worker.
    """

    def __init__(
        self,
        receiver: OtaReceiver,
        port: MediumPort,
        listener: MediumPort | None = None,
        mapper: Mapper = in_threads,
        parallel: int | None = None,
    ) -> None:
        if port.medium.realtime:
            raise ValueError("planned rounds need the medium's deterministic clock")
        self.receiver = receiver
        self.port = port
        self.listener = listener
        self.mapper = mapper
        self.parallel = parallel or os.cpu_count() or 1
        self._cursor = receiver.clock  # receiver clock after the last reserved window
        self._origin: tuple[int, int] | None = None  # (receiver clock, RX stream index)

    def _stream_index(self, clock: int) -> int:
        if self._origin is None:
            if self.port.stream_position is None:  # start the RX stream (nothing rendered)
                self.port.discard(self.receiver.rx_block)
            self._origin = (self.receiver.clock, int(self.port.stream_position))
        clock0, index0 = self._origin
        return index0 + clock - clock0

    @property
    def clock(self) -> int:
        """Receiver clock of the next window :meth:`window` reserves."""
        return self._cursor

    def window(self, n: int) -> Window:
        """Reserve the next ``n`` samples of air (rounded up to whole RX buffers)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        block = self.receiver.rx_block
        length = -(-int(n) // block) * block
        clock = self._cursor
        first = self._stream_index(clock)
        window = Window(
            clock,
            int(n),
            length,
            self.port.stream_time_s(first),
            self.port.stream_time_s(first + length),
        )
        self._cursor += length
        return window

    def capture(self, windows: list[Window], lengths: list[int] | None = None) -> list[np.ndarray]:
        """What the receiver gets in each of ``windows``: complex64 ``(lengths[i],)`` from
        its start (default: its ``n``), rendered in parallel."""
        return self._render(self.port, windows, lengths)

    def listen(self, windows: list[Window], lengths: list[int] | None = None) -> list[np.ndarray]:
        """What the listener heard over the same medium time as :meth:`capture` (its own
        samples); empty without a listener."""
        return [] if self.listener is None else self._render(self.listener, windows, lengths)

    @staticmethod
    def _render(
        port: MediumPort, windows: Sequence[Window], lengths: Sequence[int] | None
    ) -> list[np.ndarray]:
        return port.medium.capture_many(_spans(port, windows, lengths))

    def run(self, tasks: list[WindowTask]) -> list[Any]:
        """Each task's ``work`` over the captures of its windows, in task order: the
        medium's state for every window is taken here (:meth:`phy.medium.SharedMedium.
        render_jobs`), then rendering and work run in ``parallel`` chunks through the
        mapper. The medium's share of the wall time is accounted as rendering."""
        if not tasks:
            return []
        started = time.perf_counter()
        spans = [span for t in tasks for span in _spans(self.port, t.windows, t.lengths)]
        jobs = iter(self.port.medium.render_jobs(spans))
        items = [([next(jobs) for _ in task.windows], task.work) for task in tasks]
        size = -(-len(items) // (CHUNKS_PER_WORKER * self.parallel))
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        done = self.mapper(_run_chunk, chunks)
        wall = time.perf_counter() - started
        render_s = sum(r for _, r, _ in done)
        busy = render_s + sum(w for _, _, w in done)
        account_render(wall * render_s / busy if busy > 0 else 0.0)
        return [result for results, _, _ in done for result in results]

    def finish(self) -> None:
        """Move the receiver's RX stream and clock past every reserved window."""
        ahead = self._cursor - self.receiver.clock
        if ahead > 0:
            self.port.discard(ahead)
            self.receiver.clock = self._cursor
        self._origin = None

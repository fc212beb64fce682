"""Node processes hosted as Ray actors (``users.backend = "ray"``).

:class:`RayNodes` is the Ray peer of :class:`orchestrator.main_job.NodeProcesses`: the
same three calls (``start``, ``all_running``, ``stop``), but each node process is a
Ray actor (:class:`NodeHost`) placed by Ray on a local cluster that the run starts
(``ray.address = ""``) or on an existing one (``ray.address``: ``"auto"``,
``"ray://HOST:PORT"``, ``"HOST:PORT"``). Inside its actor a node runs exactly what
``python -m orchestrator.node`` runs (:func:`orchestrator.node.main` with the same
arguments): it hosts many users, opens their radios and joins the orchestrator over
the same ZeroMQ/CurveZMQ link. Nothing of the protocol changes, so a node actor that
dies (killed, its machine lost, out of memory) falls silent on the link and is
dropped like any dead node: its users are silenced and regrouped, the run goes on.
Ray does not restart a node actor (``max_restarts=0``): a node that rejoined mid-run
would hold users the engine has already dropped.

What a node actor needs from the run: the run directory (``config.toml``, its users'
radio file, the CurveZMQ keys) at the same path, and the orchestrator's link address
reachable from where it runs. A local cluster has both; on a cluster of several
machines the run directory must be on a shared file system and ``link.endpoint`` a
LAN address (as for ``users.remote_nodes``). Each actor writes its output to
``logs/<node>.log`` in the run directory, as a local node process does.

Resources: each node actor reserves ``ray.cpus_per_node`` CPUs. A local cluster started
by the run offers ``ray.cluster_cpus`` CPUs (0: the machine's count, raised if needed so
every node actor fits); on an existing cluster a run whose node actors cannot all be
placed fails at start-up instead of waiting for the join timeout.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.config import ExperimentConfig
from orchestrator.main_job import NodeLaunch

__all__ = ["NodeHost", "RayNodes", "RayTasks"]

log = logging.getLogger(__name__)

#: object store of a local cluster started by a run: nodes exchange nothing through it,
#: but a planned wave's windows go to the air workers through it (a 10,000-user slot
#: wave carries about 400 MB of users' buffers)
OBJECT_STORE_BYTES = 1024 * 1024 * 1024


class NodeHost:
    """One airmix node process inside a Ray actor (its worker process is the node's)."""

    def pid(self) -> int:
        """The actor's process id."""
        return os.getpid()

    def serve(self, arguments: list[str], log_path: str) -> int:
        """Run :func:`orchestrator.node.main` with the command-line ``arguments`` of a
        node (:func:`orchestrator.main_job.node_arguments`), its output appended to
        ``log_path``; returns its exit code (0: shut down by the orchestrator)."""
        import argparse

        from threadpoolctl import threadpool_limits

        from orchestrator import node

        threadpool_limits(limits=1)  # as local node processes (main_job.SINGLE_THREADED_MATH)

        descriptor = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(descriptor, 1)
        os.dup2(descriptor, 2)
        os.close(descriptor)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - the fds stay
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        parser = argparse.ArgumentParser(prog="airmix node (ray actor)")
        node.add_arguments(parser)
        code = node.main(parser.parse_args(arguments))
        sys.stdout.flush()
        sys.stderr.flush()
        return code


class RayNodes:
    """The run's node processes as Ray actors (see the module docstring).

    Args:
        config: the resolved experiment (``ray.address``, ``ray.cpus_per_node``,
            ``ray.cluster_cpus``).
        node_count: how many node actors the run will start (sizes a local cluster).

    Connects to (or starts) the cluster on construction; :meth:`stop` disconnects, and
    shuts down a local cluster this object started. A process already connected to Ray
    (``ray.is_initialized()``) keeps its connection and its cluster.
    """

    def __init__(self, config: ExperimentConfig, node_count: int) -> None:
        import ray

        self._ray = ray
        self.cpus_per_node = float(config.ray.cpus_per_node)
        self.owned = False
        if not ray.is_initialized():
            common: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": False,
            }
            if config.ray.address:
                ray.init(address=config.ray.address, **common)
            else:
                needed = math.ceil(node_count * self.cpus_per_node)
                cpus = config.ray.cluster_cpus or max(os.cpu_count() or 1, needed)
                ray.init(num_cpus=cpus, object_store_memory=OBJECT_STORE_BYTES, **common)
            self.owned = True
        offered = float(ray.cluster_resources().get("CPU", 0.0))
        if node_count * self.cpus_per_node > offered + 1e-9:
            self.stop()
            raise RuntimeError(
                f"the Ray cluster offers {offered:g} CPUs; {node_count} node actors at "
                f"ray.cpus_per_node = {self.cpus_per_node:g} need "
                f"{node_count * self.cpus_per_node:g} (lower ray.cpus_per_node or "
                "users.node_processes)"
            )
        self.actors: dict[str, Any] = {}
        self.serving: dict[str, Any] = {}  # node id -> the ObjectRef of its serve call
        self.pids: dict[str, int] = {}
        self.logs: Path | None = None

    def start(self, launch: NodeLaunch) -> None:
        """Start one node actor per node of the launch (its ``remote`` must be empty: Ray
        places every node)."""
        run = launch.run
        if launch.remote:
            raise ValueError("users.remote_nodes cannot be combined with users.backend = 'ray'")
        ray = self._ray
        logs = self.logs = run.path / "logs"
        logs.mkdir(exist_ok=True)
        host = ray.remote(NodeHost)
        pids: dict[str, Any] = {}
        for node_id in launch.node_users:
            arguments = launch.arguments(node_id)
            actor = host.options(
                name=f"airmix-{run.path.name}-{node_id}",
                num_cpus=self.cpus_per_node,
                max_restarts=0,
            ).remote()
            self.actors[node_id] = actor
            pids[node_id] = actor.pid.remote()  # runs before serve: an actor runs in order
            self.serving[node_id] = actor.serve.remote(arguments, str(logs / f"{node_id}.log"))
        # actors start in parallel; waiting for each in turn would leave the first nodes'
        # requests unanswered while the rest start
        self.pids.update(zip(pids, ray.get(list(pids.values())), strict=True))

    def all_running(self) -> bool:
        """Whether no node actor has finished or died (the first that did has its exit
        code or error appended to its log and logged)."""
        refs = list(self.serving.values())
        if not refs:
            return True
        done, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        for node_id, ref in self.serving.items():
            if ref in done:
                self._report_end(node_id, ref)
                break
        return not done

    def _report_end(self, node_id: str, ref: Any) -> None:
        try:
            outcome = f"exited with code {self._ray.get(ref, timeout=1.0)}"
        except Exception as error:  # the actor died or node.main raised: say which
            outcome = f"failed: {type(error).__name__}: {error}"
        log.warning("node actor %s %s", node_id, outcome)
        if self.logs is not None:
            with (self.logs / f"{node_id}.log").open("a") as out:
                out.write(f"[ray] node actor {node_id} {outcome}\n")

    def kill(self, node_id: str) -> None:
        """Kill node ``node_id``'s actor at once (its process dies, as a crashed node's)."""
        self._ray.kill(self.actors[node_id], no_restart=True)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Wait up to ``timeout_s`` for the node actors to finish (they exit on the
        orchestrator's ``shutdown``), kill the rest, and leave the cluster (shutting it
        down if this object started it)."""
        ray = self._ray
        refs = list(getattr(self, "serving", {}).values())
        if refs:
            deadline = time.monotonic() + timeout_s
            ray.wait(refs, num_returns=len(refs), timeout=max(0.1, deadline - time.monotonic()))
        for actor in getattr(self, "actors", {}).values():
            ray.kill(actor, no_restart=True)
        self.actors, self.serving = {}, {}
        if self.owned and ray.is_initialized():
            ray.shutdown()
            self.owned = False


class AirWorker:
    """A Ray actor that runs a planned wave's window work (:class:`RayTasks`)."""

    def __init__(self) -> None:
        from radio.planned_air import prepare_air_worker

        prepare_air_worker()

    def run(self, function: Any, item: Any) -> Any:
        """``function(item)``."""
        return function(item)


class RayTasks:
    """A :data:`radio.planned_air.Mapper` that runs each item on one of the run's air
    workers, Ray actors on its cluster (``users.backend = "ray"``), so the simulated air
    and the receiver's work of a planned round spread over the cluster instead of the
    orchestrator's process.

    The workers are actors, not tasks, so they live through the run: on a cluster whose
    CPUs the node actors reserve, Ray kills idle task workers within a second and every
    wave would wait seconds for new ones to import numpy, scipy and torch. They reserve
    no CPU (``num_cpus=0``): the node actors hold the CPUs but wait while the air of a
    wave renders. :attr:`parallel` workers, one per CPU of the cluster. Make it in a
    process connected to the cluster (the run's :class:`RayNodes` connected it)."""

    def __init__(self) -> None:
        import ray

        if not ray.is_initialized():
            raise RuntimeError("RayTasks needs a process connected to a Ray cluster")
        self._ray = ray
        self.parallel = max(1, int(ray.cluster_resources().get("CPU", 1)))
        worker = ray.remote(num_cpus=0, max_restarts=0)(AirWorker)
        self.workers = [worker.remote() for _ in range(self.parallel)]

    def __call__(self, fn: Any, items: list) -> list:
        """``[fn(item) for item in items]``, the items dealt to the workers."""
        workers = self.workers
        refs = [workers[i % len(workers)].run.remote(fn, item) for i, item in enumerate(items)]
        return self._ray.get(refs)

    def close(self) -> None:
        """Stop the workers."""
        for worker in self.workers:
            self._ray.kill(worker, no_restart=True)
        self.workers = []

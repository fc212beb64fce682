"""``airmix run [EXPERIMENT.toml]``: the main job.

Starts the orchestrator and the local node processes, trains over the air for the
configured rounds (showing progress), runs the privacy attacks on what the server saw
and on what a passive eavesdropper radio heard (:mod:`orchestrator.privacy_audit`),
and writes a run directory (see :mod:`orchestrator.rundir`): resolved config, metrics
per round, checkpoints, summary and plots. ``airmix run --resume RUNDIR`` continues a
killed run from its last checkpoint and ends with the same final metrics.

The experiment file is validated before anything is written; an invalid one exits with
code 2 and a message naming the field and its allowed values.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits

from learning.attacks.base import success_figures
from learning.figures import save_figure
from orchestrator import experiment as ex
from orchestrator import mixup_error, provenance
from orchestrator.config import ConfigError, ExperimentConfig, load_experiment
from orchestrator.engine import Engine
from orchestrator.inversion_audit import (
    eavesdropper_inversion_figures,
    inversion_table,
    server_inversion_figures,
)
from orchestrator.inversion_audit import headline as inversion_headline
from orchestrator.keys import create_keys
from orchestrator.lifeline import die_with_parent
from orchestrator.link import TIMING_DEPENDENT, LinkConfig, OrchestratorLink
from orchestrator.membership_audit import membership_figures, membership_headline, membership_table
from orchestrator.metrics import channel_uses_to_target
from orchestrator.node import radios_file
from orchestrator.preflight import check_experiment
from orchestrator.privacy_audit import eavesdropper_view_figures, server_view_figures
from orchestrator.radios import RUN_RADIOS
from orchestrator.rundir import RunDirectory, atomic_write_text

DEFAULT_EXPERIMENT = Path(__file__).resolve().parent.parent / "experiments" / "default.toml"
JOIN_TIMEOUT_S = 120.0
#: node processes use one BLAS/OpenMP thread (see run_experiment)
SINGLE_THREADED_MATH = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "experiment",
        nargs="?",
        type=Path,
        help="experiment TOML file (default: experiments/default.toml)",
    )
    parser.add_argument("--resume", type=Path, metavar="RUNDIR", help="continue a killed run")
    parser.add_argument("--out", type=Path, help="parent directory of run directories")
    parser.add_argument("--quiet", action="store_true", help="no per-round progress lines")
    parser.add_argument(
        "--live",
        nargs="?",
        type=int,
        const=8765,
        metavar="PORT",
        help="serve a live view of the run at http://127.0.0.1:PORT/ (default port 8765)",
    )


def _link_config(config: ExperimentConfig) -> LinkConfig:
    return LinkConfig(
        heartbeat_s=config.link.heartbeat_s,
        liveness_s=config.link.liveness_s,
        request_timeout_s=config.link.request_timeout_s,
        retries=config.link.retries,
        capabilities=ex.link_capabilities(config),
    )


def node_arguments(
    run_path: Path,
    node_id: str,
    address: str,
    keys_dir: Path | None,
    users: list[str],
    uris: dict[str, str],
    restore_round: int | None,
) -> list[str]:
    """The command-line arguments of node ``node_id`` (``python -m orchestrator.node`` or
    ``airmix node``). Its users and their radio URIs go to a file in the run directory
    (:func:`orchestrator.node.radios_file`): the command line stays short for any number
    of users."""
    relative = radios_file(node_id)
    atomic_write_text(run_path / relative, json.dumps({u: uris[u] for u in users}))
    arguments = ["--run-dir", str(run_path), "--node-id", node_id, "--address", address]
    arguments += ["--radios-file", relative]
    if keys_dir is not None:
        arguments += ["--keys-dir", str(keys_dir)]
    if restore_round is not None:
        arguments += ["--restore-round", str(restore_round)]
    return arguments


@dataclass(frozen=True)
class NodeLaunch:
    """What starting a run's nodes needs, whichever hosts them (local processes or Ray
    actors: :func:`node_hosts`).

    Attributes:
        run: the run directory; node_users: node id -> the ids of the users it hosts.
        address: the orchestrator's link endpoint; keys_dir: the CurveZMQ key folder.
        uris: user id -> radio URI; restore_round: the checkpoint nodes resume from (None:
        a fresh start); remote: nodes started by hand on other machines.
    """

    run: RunDirectory
    node_users: dict[str, list[str]]
    address: str
    keys_dir: Path | None
    uris: dict[str, str]
    restore_round: int | None
    remote: tuple[str, ...] = ()

    def arguments(self, node_id: str) -> list[str]:
        """Node ``node_id``'s command-line arguments (:func:`node_arguments`)."""
        users = self.node_users[node_id]
        return node_arguments(
            self.run.path, node_id, self.address, self.keys_dir, users, self.uris,
            self.restore_round,
        )  # fmt: skip


class NodeProcesses:
    """The local node processes of a run (spawned with ``python -m orchestrator.node``)."""

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, launch: NodeLaunch) -> None:
        """Spawn every node of the launch except the remote ones, for which the command to
        run on their own machine is printed instead."""
        logs = launch.run.path / "logs"
        logs.mkdir(exist_ok=True)
        for node_id in launch.node_users:
            arguments = launch.arguments(node_id)
            if node_id in launch.remote:
                print(f"start remote node {node_id}: airmix node {shlex.join(arguments)}")
                continue
            lifeline = ["--parent-pid", str(os.getpid())]  # the node dies with this process
            with (logs / f"{node_id}.log").open("a") as log_file:
                self.processes[node_id] = subprocess.Popen(
                    [sys.executable, "-m", "orchestrator.node", *arguments, *lifeline],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=die_with_parent,
                    env={**os.environ, **SINGLE_THREADED_MATH},
                )

    def all_running(self) -> bool:
        return all(p.poll() is None for p in self.processes.values())

    def stop(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def node_hosts(config: ExperimentConfig, node_count: int) -> Any:
    """Where the run's ``node_count`` node processes live (``users.backend``): local
    processes (:class:`NodeProcesses`) or Ray actors (:class:`orchestrator.ray_nodes.
    RayNodes`, which joins or starts the cluster now). Both offer ``start``,
    ``all_running`` and ``stop``."""
    if config.users.backend == "ray":
        from orchestrator.ray_nodes import RayNodes  # optional extra: imported on demand

        return RayNodes(config, node_count)
    return NodeProcesses()


def _prepare(args: argparse.Namespace) -> tuple[ExperimentConfig, RunDirectory, bool]:
    """Resolve the experiment and open or create its run directory; a new run is
    checked against the data and the machine first (:mod:`orchestrator.preflight`), so
    an experiment they refute writes nothing."""
    if args.resume is not None:
        run = RunDirectory.open_existing(args.resume)
        return load_experiment(run.config_path), run, True
    config = load_experiment(args.experiment or DEFAULT_EXPERIMENT)
    out_dir = args.out or Path(config.experiment.out_dir)
    out_field = "--out" if args.out else "experiment.out_dir"
    check_experiment(config, out_dir, out_field)
    try:
        run = RunDirectory.create(out_dir, config.experiment.name, config.to_toml())
    except (OSError, ValueError) as error:
        raise ConfigError(out_field, f"cannot create the run directory: {error}") from error
    return config, run, False


def run_experiment(
    config: ExperimentConfig,
    run: RunDirectory,
    resuming: bool,
    progress: bool = True,
    *,
    link_class: type[OrchestratorLink] = OrchestratorLink,
    engine_class: type[Engine] = Engine,
) -> dict[str, Any]:
    """Run (or resume) the experiment in ``run``; returns the summary.

    ``link_class`` and ``engine_class`` let tests and benchmarks observe a real run
    (e.g. record every frame the nodes send, or time the link calls)."""
    say = print if progress else (lambda *_: None)
    torch.set_num_threads(1)
    # one BLAS thread: a second one spin-waits on a busy machine (a 220 x 454 matrix-vector
    # product of the receiver took 18 ms instead of 0.02 ms on two loaded cores)
    threadpool_limits(limits=1)
    node_users = ex.node_users(config)
    keys_dir = None
    if config.link.curve:
        keys_dir = run.path / "keys"
        if not (keys_dir / "server.key_secret").exists():
            create_keys(keys_dir, len(node_users), names=list(node_users))
    state = run.load_checkpoint() if resuming else None
    restore_round = int(state["round"]) if state is not None else None
    if state is not None:  # a node that died stays dead, as in the uninterrupted run
        node_users = {n: us for n, us in node_users.items() if set(us) & set(state["alive"])}
    radios = RUN_RADIOS[config.channel.radio](config, run.path.name)
    nodes = node_hosts(config, len(node_users))
    link = link_class(config.link.endpoint, keys_dir=keys_dir, config=_link_config(config))
    engine = None
    try:
        uris = {u: radios.user_uri(u) for u in ex.user_ids(config)}
        provenance.write(
            run.path,
            experiment_file=run.config_path,
            radios=provenance.run_radios(radios, ex.user_ids(config)),
        )
        remote = tuple(config.users.remote_nodes)
        launch = NodeLaunch(run, node_users, link.address, keys_dir, uris, restore_round, remote)
        nodes.start(launch)
        engine = engine_class(config, run, link, radios, node_users, progress=say)
        engine.wait_for_nodes(JOIN_TIMEOUT_S, nodes.all_running)
        start = 0
        if state is not None:
            start = engine.restore(state)
            say(f"resuming {run.path} at round {start}")
        elif resuming:  # killed before its first checkpoint: start over
            say(f"resuming {run.path} from the start (no checkpoint yet)")
        if resuming:  # drop metric lines of rounds the checkpoint does not cover
            run.truncate_metrics(start - 1)
            engine.live.truncate_after(start - 1)
        say(
            f"airmix: {config.users.count} users in groups of {config.users.group_size} "
            f"({config.users.grouping}), {config.model.mode} payloads, "
            f"{config.channel.radio} channel at {config.channel.snr_db:g} dB -> {run.path}"
        )
        for round_id in range(start, config.experiment.rounds):
            record = engine.run_round(round_id)
            run.append_metrics(record)
            engine.checkpoint(round_id)
            say(
                f"round {round_id + 1:3d}/{config.experiment.rounds}  "
                f"accuracy {record['accuracy']:.3f}  loss {record['loss']:.3f}  "
                f"slots {record['slots']}  channel uses {record['channel_uses']}  "
                f"({record['seconds']:.1f} s)"
            )
        engine.close()
        for node_id in link.alive_nodes():  # also nodes dropped after a request timeout
            link.send(node_id, "shutdown", {"reason": "run finished"})
        nodes.stop()  # local nodes write their link counters (logs/<node>.timing.json)
        measured = mixup_error.score_run(run.path)  # after the fact, from the nodes' audit
        mixup_error.plot(measured, run.plots_dir / "mixup_error.png")
        say("running privacy attacks on what the server saw ...")
        privacy = server_view_figures(
            config, engine.method, engine.data, engine.observations, run.path
        )
        eavesdropper = None
        updates_on_air = engine.method.air_view == "model_updates"
        inversion = {"server": None, "eavesdropper": None}
        if updates_on_air or engine.method.update_length:  # the server saw model updates
            say("running gradient inversion on the model updates the server saw ...")
            inversion["server"] = server_inversion_figures(
                config, engine.method, engine.data, run.path
            )
        if config.attacks.eavesdropper and updates_on_air:
            say("running gradient inversion on the model updates the eavesdropper heard ...")
            inversion["eavesdropper"] = eavesdropper_inversion_figures(
                config, engine.method, engine.data, engine.eavesdropped, run.path
            )
        elif config.attacks.eavesdropper:
            say("running privacy attacks on what the eavesdropper heard ...")
            eavesdropper = eavesdropper_view_figures(
                config, engine.method, engine.data, engine.eavesdropped, run.path
            )
        summary = summarize(
            config, run.read_metrics(), privacy, link_counters(link, run), eavesdropper
        )
        summary["mixup_error"] = measured["overall"]
        if inversion["server"] is not None:
            summary["privacy"]["gradient_inversion"] = inversion
            summary["headline"].update(inversion_headline(**inversion))
        if config.attacks.membership:  # the final server model, for membership of users' data
            say("running membership inference on the final server model ...")
            membership = membership_figures(
                config, engine.data, engine.method.model, run.plots_dir, say
            )
            summary["privacy"]["membership"] = membership
            summary["headline"].update(membership_headline(membership))
        run.write_summary(summary)
        write_plots(run, run.read_metrics(), privacy, eavesdropper)
        for line in attack_table(summary):
            say(line)
        for line in membership_table(summary["privacy"].get("membership")):
            say(line)
        for line in inversion_table(summary["privacy"].get("gradient_inversion")):
            say(line)
        say(json.dumps(summary["headline"]))
        return summary
    finally:
        if engine is not None:
            engine.close()
        nodes.stop()
        link.close()
        radios.close()


def link_counters(link: OrchestratorLink, run: RunDirectory) -> dict[str, Any]:
    """The orchestrator's link counters, with ``nodes``: node id -> the frames its link
    rejected by cause, from the ``logs/<node>.timing.json`` each local node writes as it
    exits (remote nodes keep theirs on their own machine)."""
    counters = link.counters.snapshot()
    counters["nodes"] = {}
    for path in sorted((run.path / "logs").glob("*.timing.json")):
        node_id = path.name.removesuffix(".timing.json")
        try:
            counters["nodes"][node_id] = json.loads(path.read_text()).get("link_rejects", {})
        except (OSError, ValueError):
            log.warning("cannot read %s: node %s's rejections are not reported", path, node_id)
    return counters


def _attack_rows(figures: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The numeric figures of each attack (success figures and their chance levels)."""
    return {
        attack: {k: v for k, v in values.items() if isinstance(v, int | float)}
        for attack, values in figures.items()
    }


def summarize(
    config: ExperimentConfig,
    metrics: list[dict[str, Any]],
    privacy: dict[str, Any],
    counters: dict[str, Any],
    eavesdropper: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Final figures: accuracy, channel uses to target, attack success with chance.

    ``privacy`` is the server's view (:func:`server_view_figures`), written as
    ``privacy.attacks``; ``eavesdropper`` (:func:`eavesdropper_view_figures`, None
    without an eavesdropper) as ``privacy.eavesdropper`` with its own ``attacks``, the
    slots it captured and the frames it found."""
    final = metrics[-1] if metrics else {}
    target = config.experiment.target_accuracy
    reached = channel_uses_to_target(metrics, target)
    attack_rows = _attack_rows(privacy.get("figures", {}))
    eve_rows = _attack_rows((eavesdropper or {}).get("figures", {}))
    eve_summary = None
    if eavesdropper is not None:
        slots = eavesdropper.get("slots", 0)
        eve_summary = {
            "group_size": eavesdropper.get("group_size"),
            "snr_db": eavesdropper.get("snr_db"),
            "slots": slots,
            "frames_found": eavesdropper.get("frames_found", 0),
            "frames_found_fraction": eavesdropper.get("frames_found", 0) / slots if slots else None,
            "n_observations": eavesdropper.get("n_observations", 0),
            "attacks": eve_rows,
        }
    return {
        "headline": {
            "final_accuracy": final.get("accuracy"),
            "channel_uses": final.get("channel_uses"),
            "channel_uses_to_target": reached["channel_uses"],
            "pilot_channel_uses_to_target": reached["pilot_channel_uses"],
            "target_accuracy": target,
            "digital_bytes": final.get("digital_bytes"),
            **_attack_headline(attack_rows, ""),
            **_attack_headline(eve_rows, "eavesdropper_"),
        },
        "rounds": len(metrics),
        "privacy": {
            "group_size": privacy.get("group_size"),
            "attacks": attack_rows,
            "eavesdropper": eve_summary,
        },
        "link": {
            **{k: v for k, v in counters.items() if not isinstance(v, dict)},
            # frames each end refused, by cause: {"orchestrator": {...}, "node0": {...}}
            "rejects": {"orchestrator": counters.get("rejects", {}), **counters.get("nodes", {})},
            "timing_dependent": [k for k in TIMING_DEPENDENT if k in counters],
        },
    }


def _attack_headline(rows: dict[str, dict[str, float]], prefix: str) -> dict[str, float | None]:
    """``<prefix><attack>_<figure>`` for every success figure each attack declares
    (:attr:`learning.attacks.base.Attack.success_figures`)."""
    return {
        f"{prefix}{attack}_{figure}": rows.get(attack, {}).get(figure)
        for attack, figures in success_figures().items()
        for figure in figures
        if attack in rows
    }


def attack_table(summary: dict[str, Any]) -> list[str]:
    """Lines comparing each attack's success on the server's and the eavesdropper's
    view, each next to its chance level (printed at the end of ``airmix run``)."""
    server = summary["privacy"]["attacks"]
    eve = summary["privacy"].get("eavesdropper")
    eve_attacks = (eve or {}).get("attacks", {})
    rows = [
        (attack, metric)
        for attack, figures in {**server, **eve_attacks}.items()
        for metric in success_figures().get(attack, ())
        if metric in figures
    ]

    def cell(figures: dict[str, float], metric: str) -> str:
        if metric not in figures:
            return "-"
        return f"{figures[metric]:.3f} (chance {figures.get(f'{metric}_chance', math.nan):.3f})"

    lines = [f"{'attack success':38s} {'server':>22s} {'eavesdropper':>22s}"] if rows else []
    for attack, metric in rows:
        lines.append(
            f"{attack + ' ' + metric:38s} {cell(server.get(attack, {}), metric):>22s} "
            f"{cell(eve_attacks.get(attack, {}), metric) if eve else 'off':>22s}"
        )
    if eve:
        lines.append(
            f"eavesdropper found the frame in {eve['frames_found']}/{eve['slots']} recorded "
            f"slots at {eve['snr_db']:g} dB"
        )
    return lines


def write_plots(
    run: RunDirectory,
    metrics: list[dict[str, Any]],
    privacy: dict,
    eavesdropper: dict | None = None,
) -> None:
    """Accuracy per round and vs channel uses, channel uses per round, attack success on
    the server's and (if any) the eavesdropper's view with chance levels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not metrics:
        return
    run.plots_dir.mkdir(exist_ok=True)
    rounds = [m["round"] + 1 for m in metrics]
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(rounds, [m["accuracy"] for m in metrics], marker="o")
    axes[0].set(xlabel="round", ylabel="test accuracy", title="accuracy per round")
    axes[1].plot([m["channel_uses"] for m in metrics], [m["accuracy"] for m in metrics], marker="o")
    axes[1].set(xlabel="channel uses (payload symbols)", ylabel="test accuracy")
    axes[1].set_title("accuracy vs channel uses")
    axes[2].bar(rounds, [m["round_channel_uses"] for m in metrics], label="payload")
    axes[2].bar(
        rounds,
        [m["round_pilot_channel_uses"] for m in metrics],
        bottom=[m["round_channel_uses"] for m in metrics],
        label="pilots",
    )
    axes[2].set(xlabel="round", ylabel="channel uses", title="channel uses per round")
    axes[2].legend()
    save_figure(figure, run.plots_dir / "training.png")
    views = [("server", privacy.get("figures", {}))]
    if eavesdropper is not None:
        views.append(("eavesdropper", eavesdropper.get("figures", {})))
    rows = sorted(
        {
            (attack, metric)
            for _, figures in views
            for attack, values in figures.items()
            for metric in values
            if metric in success_figures().get(attack, ())
        }
    )
    if rows:
        figure, axis = plt.subplots(figsize=(8, 4))
        width = 0.8 / len(views)
        for v, (view, figures) in enumerate(views):
            positions = [p - 0.4 + width * (v + 0.5) for p in range(len(rows))]
            values = [figures.get(a, {}).get(m, math.nan) for a, m in rows]
            chance = [figures.get(a, {}).get(f"{m}_chance", math.nan) for a, m in rows]
            axis.bar(positions, values, width, label=f"attack on the {view}'s view")
            axis.scatter(
                positions, chance, marker="_", s=400, color="k", label="chance" if v == 0 else None
            )
        axis.axhline(metrics[-1]["accuracy"], color="k", ls="--", label="legitimate accuracy")
        axis.set_xticks(list(range(len(rows))), [f"{a}\n{m}" for a, m in rows], fontsize=8)
        title = "attacks on what the server" + (
            " and an eavesdropper saw" if eavesdropper is not None else " saw"
        )
        axis.set(ylim=(0, 1.3), ylabel="success", title=title)
        axis.legend(fontsize=8, ncol=2, loc="upper right")
        save_figure(figure, run.plots_dir / "privacy.png")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    if getattr(args, "live", None) is not None and not 0 < args.live < 65536:
        print(f"airmix run: --live PORT must be 1-65535, got {args.live}", file=sys.stderr)
        return 2
    try:
        config, run, resuming = _prepare(args)
    except (ConfigError, FileNotFoundError) as error:
        print(f"airmix run: {error}", file=sys.stderr)
        return 2
    live = None
    if getattr(args, "live", None) is not None:
        from orchestrator.live.server import start_live_process

        live = start_live_process(run.path, args.live)
        print(f"live view: http://127.0.0.1:{args.live}/ (airmix view {run.path} replays it)")
        sys.stdout.flush()
    try:
        run_experiment(config, run, resuming, progress=not args.quiet)
    finally:
        if live is not None:
            live.terminate()
            live.wait(timeout=10)
    atomic_write_text(run.path / "DONE", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    print(f"run directory: {run.path}")
    return 0

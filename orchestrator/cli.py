"""The ``airmix`` command line.

Each sub-command lives in its own module, which provides

* ``add_arguments(parser: argparse.ArgumentParser) -> None`` and
* ``main(args: argparse.Namespace) -> int`` (the process exit code),

and is listed in :data:`COMMANDS`. Modules are imported only when their command runs,
so ``airmix --help`` stays fast and one broken back-end does not break the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: sub-command name -> (module path, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("orchestrator.main_job", "run an experiment (default: digits, 8 users, sim channel)"),
    "phy-demo": ("studies.phy_demo", "closed-loop OTA mixup on the simulated medium"),
    "virtual-pluto": ("hardware.virtual_pluto", "serve N virtual PlutoSDRs on one sim. medium"),
    "node": ("orchestrator.node", "serve as one node of a run (remote nodes)"),
    "keys": ("orchestrator.keys", "create CurveZMQ key pairs for the orchestrator and N nodes"),
    "sweep": ("studies.sweep", "run a grid of experiments, resumably (progress, index)"),
    "report": ("studies.report", "Markdown report with plots and claims from run/sweep dirs"),
    "view": ("orchestrator.live.server", "live view of a run directory in the browser"),
}


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the chosen command, return its code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="airmix",
        description="airmix: over-the-air mixup testbed for private multiuser semantic comms",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = None
    for name, (module_path, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if argv and argv[0] == name:  # import only the command being run
            chosen = importlib.import_module(module_path)
            chosen.add_arguments(command_parser)
    args = parser.parse_args(argv)
    if chosen is None:
        parser.print_help()
        return 2
    try:
        return int(chosen.main(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

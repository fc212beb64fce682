"""``python -m orchestrator.live RUNDIR [--port P] [--host H]``: same as ``airmix view``."""

import argparse
import sys

from orchestrator.live.server import add_arguments, main

parser = argparse.ArgumentParser(prog="python -m orchestrator.live")
add_arguments(parser)
sys.exit(main(parser.parse_args()))

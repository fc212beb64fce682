"""A minimal node process for link tests: joins, acks every request, exits on shutdown.

Run as ``python -m tests.orchestrator.node_process ADDRESS KEYS_DIR NODE_ID USER...``
(KEYS_DIR "-" for plain text). Prints "joined" once the orchestrator welcomed it.
"""

from __future__ import annotations

import sys
import time

from orchestrator.link import LinkConfig, NodeLink

CONFIG = LinkConfig(heartbeat_s=0.1, liveness_s=1.0, request_timeout_s=0.5, retries=4)


def main(argv: list[str]) -> int:
    """Serve until shutdown (exit 0) or until the orchestrator is dead / 60 s (exit 1)."""
    address, keys_dir, node_id, *users = argv
    with NodeLink(
        node_id, address, keys_dir=None if keys_dir == "-" else keys_dir, config=CONFIG
    ) as link:
        link.join(users)
        print("joined", flush=True)
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            event = link.recv(timeout_s=0.5)
            if event is None:
                continue
            if event.kind == "dead":
                return 1
            link.reply(event.message)
            if event.message.type == "shutdown":
                time.sleep(0.2)  # let the ack leave
                return 0
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

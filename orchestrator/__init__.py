"""airmix orchestrator: ZeroMQ protocol, orchestrator and per-user node processes,
user grouping, the experiment runner and the ``airmix`` command line."""

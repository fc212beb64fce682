"""A live lab view of one run, in the browser.

* :mod:`orchestrator.live.recorder` is what the run writes for the view besides its
  metrics: per-user link state each round and the last slot's received spectrum and
  constellation (``RUNDIR/live/``).
* :mod:`orchestrator.live.snapshot` reads a run directory (running or finished) into
  one JSON-ready snapshot: the only thing the page ever sees.
* :mod:`orchestrator.live.server` serves the page, its scripts (plotly from the
  installed ``plotly`` package, nothing fetched at run time) and a WebSocket that pushes
  a new snapshot whenever the run directory changes.

The view is read-only and bound to the loopback by default. It shows what the receiver
saw (mixtures, link estimates, counters), never a user's raw data: the run directory's
``audit/`` ground truth is not read.
"""

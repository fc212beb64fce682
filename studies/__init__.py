"""airmix studies: what is built *on* runs rather than what runs.

* :mod:`studies.sweep`: parameter grids of experiments, resumable (``airmix sweep``);
* :mod:`studies.report`: the reproduction report over run and sweep directories
  (``airmix report``): loading, statistics with confidence intervals over seeds,
  SIMix claims with verdicts, plots, rendered from a Jinja2 template;
* :mod:`studies.phy_demo`: the closed-loop OTA PHY demo (``airmix phy-demo``).

Dependencies: this package uses ``orchestrator`` (to run experiments and read run
directories), ``phy`` and ``learning``; nothing imports it.
"""

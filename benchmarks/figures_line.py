"""The one convention every benchmark ends with: its figures as one line of JSON.

Names are exactly the issue's; accuracies and rates are fractions in [0, 1] unless the
name ends in ``_points`` or ``_db``. A benchmark run as ``python benchmarks/<name>.py``
has this directory on ``sys.path``: ``from figures_line import print_figures`` (not
``benchmarks.figures_line``: a package installed in the venv owns the name
``benchmarks``).
"""

from __future__ import annotations

import json
import math
from typing import Any


def print_figures(figures: dict[str, Any]) -> None:
    """Print ``figures`` as one JSON line (non-finite floats become ``null``, since JSON
    has no NaN or infinity)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(item) for item in value]
        return value

    print(json.dumps(clean(figures)), flush=True)

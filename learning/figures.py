"""Writing matplotlib figures: the one helper every saved plot goes through."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_figure(figure: Any, path: str | Path, dpi: int = 100) -> Path:
    """Lay out ``figure`` (a matplotlib Figure), write it as a PNG at ``path`` (parent
    folders created) at ``dpi`` dots per inch, close it; returns the path written."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=dpi)
    plt.close(figure)
    return out

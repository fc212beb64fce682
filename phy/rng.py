"""The one seeded random-number set-up shared by all airmix code.

Every function that draws random numbers takes an ``rng`` argument accepted by
:func:`make_rng` (a seed, a :class:`numpy.random.Generator`, or ``None``), so a whole
experiment is reproducible from one integer. Torch code seeds through
:func:`seed_everything` or takes a :func:`torch_generator`.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is only imported when torch seeding is asked for
    import torch

DEFAULT_SEED = 0

RngLike = int | np.random.Generator | np.random.SeedSequence | None


def make_rng(rng: RngLike = None) -> np.random.Generator:
    """Return a numpy Generator.

    Args:
        rng: an existing Generator (returned unchanged), an int seed or SeedSequence
            (a new PCG64 Generator), or None (seeded with :data:`DEFAULT_SEED`, so code
            that forgets to pass a seed is still reproducible).
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        rng = DEFAULT_SEED
    if isinstance(rng, bool) or not isinstance(rng, int | np.integer | np.random.SeedSequence):
        raise TypeError(f"rng must be an int seed, a numpy Generator or None, got {rng!r}")
    return np.random.default_rng(rng)


def spawn(rng: RngLike, n: int) -> list[np.random.Generator]:
    """Split ``rng`` into ``n`` statistically independent child Generators.

    Use one child per component (per radio, per user, per process) so adding a draw in
    one component does not shift the random stream of the others.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return list(make_rng(rng).spawn(n))


def derive_seed(rng: RngLike) -> int:
    """Draw a 63-bit integer seed from ``rng`` (for libraries that want an int)."""
    return int(make_rng(rng).integers(0, 2**63 - 1))


def torch_generator(rng: RngLike) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``rng``."""
    import torch

    gen = torch.Generator()
    gen.manual_seed(derive_seed(rng))
    return gen


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python's ``random``, torch's global generator (if torch is installed) and
    return the root numpy Generator for ``seed``. Call once at the start of a run."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {seed!r}")
    random.seed(int(seed))
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    else:
        torch.manual_seed(int(seed))
    return make_rng(int(seed))

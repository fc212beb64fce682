"""The :class:`~learning.methods.base.MethodContext` a method under test is built from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from learning.data import Dataset, UserSplit
from learning.methods.base import MethodContext
from learning.mixup import make_policy


def method_context(
    data: tuple[Dataset, Dataset, UserSplit],
    model: Mapping[str, Any],
    *,
    mixing: str = "equal",
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
) -> MethodContext:
    """The context of ``data`` = ``(train, test, split)`` with the ``[model]`` settings
    ``model``, the mixing policy named ``mixing``, root ``seed`` and ``[method]``
    ``options``."""
    train, test, split = data
    return MethodContext(
        train, test, split, model, make_policy(mixing), seed=seed, options=options or {}
    )

"""Privacy methods behind one interface (:mod:`learning.methods.base`), by name.

:data:`METHODS` maps ``[method] name`` to a :class:`~learning.methods.base.Method`
class; :func:`make_method` builds one. Registered here: ``"oam"`` (SIMix's
over-the-air mixup), ``"orthogonal"`` and ``"server_mixup"`` (its baselines). Other
methods register themselves the same way (``METHODS.add(name, cls)``) in the module
that defines them, imported below.
"""

from __future__ import annotations

from learning.methods.base import Method, MethodContext
from learning.methods.oam import Orthogonal, OverTheAirMixup, ServerMixup
from phy.registry import Registry

__all__ = ["METHODS", "make_method"]

#: method name -> Method class
METHODS: Registry[type[Method]] = Registry(
    "method", {cls.name: cls for cls in (OverTheAirMixup, Orthogonal, ServerMixup)}
)


def make_method(name: str, context: MethodContext) -> Method:
    """Build the method registered as ``name`` over ``context``."""
    return METHODS[name](context)


# methods defined elsewhere register themselves on import
import learning.federated.method  # noqa: E402,F401  ("fedavg")
import learning.methods.adamixup  # noqa: E402,F401  ("adamixup")
import learning.methods.diffsem  # noqa: E402,F401  ("diffsem")

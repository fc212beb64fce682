"""The digital uplink's records: what a server asks a user for and what the user sends
back, for methods that declare the model-update uplink
(:meth:`learning.methods.base.Method.link_capabilities`; re-exported there).

A leaf module (numpy only), so protocols built on it (secure aggregation,
:mod:`learning.federated.secagg`) and the method interface import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Exchange", "UplinkRequest", "Upload"]


@dataclass(frozen=True)
class UplinkRequest:
    """What the server asks one user for over the digital link, for a method granted
    :data:`learning.methods.base.MODEL_UPDATES` (one phase of its exchange).

    Attributes:
        phase: the method's name of the phase (e.g. ``"update"``, ``"secagg/share_keys"``).
        arrays: name -> array, server -> user (e.g. the survivors of a secure aggregation).
        blobs: name -> bytes, server -> user (e.g. other users' public keys, routed
            encrypted key shares), each at most a few hundred bytes.
    """

    phase: str
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)
    blobs: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Upload:
    """One user's answer to an :class:`UplinkRequest` (user -> server, digital).

    Attributes:
        update: the model update, 1-D float32 ``(P,)``, or its masked fixed-point
            encoding, 1-D int64 ``(P,)`` (secure aggregation); None: nothing sent.
        blobs: name -> bytes (public keys, encrypted or unmasking key shares).
        indices: indices into the user's data of the samples behind ``update`` (audit
            only, never sent).
    """

    update: np.ndarray | None = None
    blobs: Mapping[str, bytes] = field(default_factory=dict)
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


#: the runtime's digital exchange: user index -> request in, user index -> upload out;
#: a user missing from the answer dropped out (its node died, or it left the protocol)
Exchange = Callable[[Mapping[int, UplinkRequest]], dict[int, Upload]]

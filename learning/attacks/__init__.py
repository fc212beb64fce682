"""Privacy attacks on what an eavesdropper or curious server observed: one interface
(:mod:`learning.attacks.base`) and peer implementations, selectable by name via
:data:`ATTACKS` / :func:`get_attack` (``"model_inversion"``, ``"label_inference"``)."""

from learning.attacks.base import ATTACKS, Attack, GroupTruth, Observation, get_attack
from learning.attacks.inversion import ModelInversion
from learning.attacks.label_inference import LabelInference

__all__ = [
    "ATTACKS",
    "Attack",
    "GroupTruth",
    "LabelInference",
    "ModelInversion",
    "Observation",
    "get_attack",
]

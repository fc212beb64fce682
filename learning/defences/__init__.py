"""Defences against membership inference, as training recipes selectable by name
(:data:`DEFENCES` / :func:`get_defence`): ``"none"``, ``"mixup"`` (static), ``"adamixup"``
(after arXiv 2501.02182), ``"oam"`` (over-the-air mixup as the run trains it) and
``"dpsgd"`` (through Opacus). Each trains a target and, in batched form, an attacker's
shadow models (:mod:`learning.defences.base`)."""

from learning.defences.base import (
    DEFENCES,
    Defence,
    ModelStack,
    TrainSettings,
    get_defence,
    register_defence,
)
from learning.defences.dpsgd import DpSgd
from learning.defences.mixup import AdaMixup, NoDefence, StaticMixup
from learning.defences.oam import OverTheAirMixup

__all__ = [
    "DEFENCES",
    "AdaMixup",
    "Defence",
    "DpSgd",
    "ModelStack",
    "NoDefence",
    "OverTheAirMixup",
    "StaticMixup",
    "TrainSettings",
    "get_defence",
    "register_defence",
]

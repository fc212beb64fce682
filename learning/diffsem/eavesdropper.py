"""The eavesdropper's model inversion on a semantic link, scored by task accuracy.

Threat model (IBAL's, made explicit). The eavesdropper is a passive radio at its own SNR.
It holds an auxiliary data set disjoint from the victims', can query the users' encoder
as a black box (an insider or a captured device: IBAL's attacker loads the trained
transmitter) and knows the link's public rules: the self-noise rule and the legitimate
SNR it adapts to, the channel statistics, the power policy. It never sees a slot's
draws. It passes its auxiliary images through that *model of its own view*
(:func:`observe`: encoder, transmitter with fresh self-noise, the eavesdropper's
demodulation) and trains :class:`learning.attacks.ModelInversion` on it (features only:
no label travels with them). It is scored on the victims' features as its radio
demodulates them: task accuracy of a separately trained evaluation classifier (trained
on the auxiliary images only) on the reconstructions, PSNR and SSIM, each with its
chance level (the same pipeline fed with random auxiliary images).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from learning.attacks import GroupTruth, ModelInversion, Observation
from learning.attacks.inversion import train_evaluation_classifier
from learning.data import Dataset
from learning.diffsem import air
from learning.diffsem.base import Link
from phy.rng import RngLike, spawn, torch_generator

__all__ = ["EVALUATOR_EPOCHS", "attack_figures", "observe", "train_evaluator"]

#: training epochs of the attacker's evaluation classifier
EVALUATOR_EPOCHS = 60


@torch.no_grad()
def observe(
    link: Link, images: torch.Tensor, legit_snr_db: float, eve_snr_db: float, rng: RngLike = None
) -> Observation:
    """What the eavesdropper demodulates when a user of ``link`` sends ``images``
    ``(B, C, H, W)`` while adapting to a legitimate link at ``legit_snr_db``: an
    :class:`~learning.attacks.Observation` with payload ``(B, D)``."""
    g_legit, g_eve = spawn(rng, 2)
    s = link.settings
    link.eval()
    features = link.encoder(images)
    gains = air.legit_gains(features.shape[0], legit_snr_db, s.fading, s.policy, g_legit)
    sent = link.transmit(features, air.channel_nsr(gains, legit_snr_db), torch_generator(g_legit))
    return air.eavesdropper_view(
        sent.numpy(), legit_snr_db, eve_snr_db, s.fading, s.policy, rng=g_eve
    )


def train_evaluator(aux: Dataset, rng: RngLike = None) -> nn.Module:
    """The attacker's evaluation classifier, trained on the auxiliary images only."""
    return train_evaluation_classifier(
        aux.x.numpy(), aux.y.numpy(), aux.n_classes, epochs=EVALUATOR_EPOCHS, rng=rng
    )


def _truth(ds: Dataset) -> GroupTruth:
    return GroupTruth(ds.x.numpy()[None], ds.y.numpy()[None], ds.n_classes)


def attack_figures(
    link: Link,
    aux: Dataset,
    victims: Dataset,
    legit_snr_db: float,
    eve_snr_db: float,
    evaluator: nn.Module,
    attack_kwargs: dict[str, Any] | None = None,
    rng: RngLike = None,
) -> dict[str, float]:
    """Fit the inversion on the auxiliary data's modelled view and score it on the
    victims' view. Returns ``ModelInversion.evaluate``'s figures (``task_accuracy``,
    ``psnr_db``, ``ssim``, each with ``_chance``, ``evaluator_accuracy``, ...)."""
    g_aux, g_vic, g_attack, g_eval = spawn(rng, 4)
    kwargs = {"use_label": False, "epochs": 60, **(attack_kwargs or {})}
    attack = ModelInversion(evaluator=evaluator, rng=g_attack, **kwargs)
    attack.fit(observe(link, aux.x, legit_snr_db, eve_snr_db, g_aux), _truth(aux))
    victim_view = observe(link, victims.x, legit_snr_db, eve_snr_db, g_vic)
    return attack.evaluate(victim_view, _truth(victims), rng=g_eval)

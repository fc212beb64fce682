"""The plain task-oriented link: DiffSem's encoder and classifier with neither self-noise
nor diffusion. Encoder and head are trained end to end through the legitimate link at
SNRs drawn over ``settings.train_snr_db``; the receiver classifies what it demodulates."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from learning.data import Dataset
from learning.diffsem.base import Link, register

__all__ = ["PlainLink"]


@register
class PlainLink(Link):
    """Encoder -> air -> head (:class:`~learning.diffsem.base.Link`)."""

    name = "plain"

    def predict(self, received: torch.Tensor, channel_nsr: np.ndarray) -> torch.Tensor:
        del channel_nsr
        return self.head(received)

    def fit(self, train: Dataset) -> PlainLink:
        return self._fit_end_to_end(train)

    def _fit_end_to_end(self, train: Dataset, **hooks: Any) -> PlainLink:
        """Train encoder and head end to end on the receiver's logits
        (:meth:`~learning.diffsem.base.Link.train_through_air`, which also takes the
        ``hooks``: ``extra_loss``, ``before_epoch``); returns ``self``."""
        params = [*self.encoder.parameters(), *self.head.parameters()]
        self.training_seconds = self.train_through_air(
            train, params, lambda step: self.predict(step.received, step.channel_nsr), **hooks
        )
        return self

r"""IBAL: the information-bottleneck adversarial link (Wang et al., IEEE TWC 2024), our
reading of its public code on the project's encoder and air.

Training alternates, every epoch, over the link's training set:

1. the *simulated adversary*: a linear decoder ``features -> pixels`` (sigmoid, images
   in [0, 1]) is trained to reconstruct the images from the received features, with the
   encoder frozen (MSE);
2. the *link*: encoder and head minimise::

       CE + beta * anneal * KL * (0.1 / sigma) - w / (1 + sigma) * MSE(decoder(y), x)

   where ``sigma`` is the channel noise's standard deviation per real (0.5 ``r_c``, so
   the power-normalised signal has variance 0.5), ``KL`` is the log-uniform-prior KL
   approximation of Molchanov et al. (2017) on ``alpha^2 = sigma^2 / (z^2 + 1e-4)`` per
   feature, summed and averaged over the batch (the bottleneck: it rewards features the
   channel noise already hides), ``anneal`` ramps from 0 to 1 over
   ``kl_warmup_epochs`` after as many epochs without it, and ``w`` is
   ``adversary_weight`` (1 in IBAL).

Differences from the code, chosen for a like-for-like comparison: the encoder is the
project's (CNN, power-normalised) instead of IBAL's normalised linear layer with tanh;
the decoder uses the link's own training set (IBAL holds out a third of its data); the
noise level varies per batch over the training SNR range instead of one model per SNR;
the classifier does not take the noise level as an input.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from learning.attacks.base import build_seeded
from learning.data import Dataset
from learning.diffsem.base import AirPass, air_pass, register
from learning.diffsem.plain import PlainLink
from learning.diffsem.settings import IbalSettings

__all__ = ["IbalLink", "kl_log_uniform"]

_K1, _K2, _K3 = 0.63576, 1.8732, 1.48695


def kl_log_uniform(alpha_squared: torch.Tensor) -> torch.Tensor:
    """Molchanov et al.'s approximation of ``KL(q || log-uniform)`` for multiplicative
    Gaussian noise of variance ``alpha^2`` ``(B, D)``, summed over ``D``, mean over ``B``."""
    log_a = torch.log(alpha_squared)
    neg = _K1 * torch.sigmoid(_K2 + _K3 * log_a) - 0.5 * nn.functional.softplus(-log_a) - _K1
    return -neg.sum() / alpha_squared.shape[0]


@register
class IbalLink(PlainLink):
    """Information-bottleneck adversarial link (module doc): the plain link's encoder,
    air and receiver, trained against a simulated adversary."""

    name = "ibal"
    settings_type = IbalSettings

    def __init__(self, settings: IbalSettings, input_shape, n_classes, rng=None) -> None:
        super().__init__(settings, input_shape, n_classes, rng)
        pixels = int(np.prod(self.input_shape))
        self.decoder = build_seeded(
            lambda: nn.Sequential(nn.Linear(settings.feature_dim, pixels), nn.Sigmoid()),
            self._g_train,
        )

    def _reconstruction_mse(self, step: AirPass, images: torch.Tensor) -> torch.Tensor:
        return (self.decoder(step.received) - images.flatten(1)).pow(2).mean()

    def fit(self, train: Dataset) -> IbalLink:
        s: IbalSettings = self.settings  # type: ignore[assignment]
        dec_opt = torch.optim.Adam(self.decoder.parameters(), lr=s.lr)

        def adversary_epoch(epoch: int) -> None:
            del epoch
            self.decoder.train()
            self.encoder.eval()
            for idx in torch.randperm(len(train), generator=self.noise).split(s.batch_size):
                snr_db = float(self._g_train.uniform(*s.train_snr_db))
                with torch.no_grad():
                    step = air_pass(self, train.x[idx], snr_db, self._g_air)
                loss = self._reconstruction_mse(step, train.x[idx])
                dec_opt.zero_grad(set_to_none=True)
                loss.backward()
                dec_opt.step()

        def extra(step: AirPass, images: torch.Tensor, epoch: int) -> torch.Tensor:
            var = torch.as_tensor(0.5 * step.channel_nsr, dtype=torch.float32).unsqueeze(1)
            sigma = float(np.sqrt(np.mean(0.5 * step.channel_nsr)))
            warm = s.kl_warmup_epochs
            anneal = 0.0 if epoch < warm else min(1.0, (epoch - warm + 1) / warm)
            kl = kl_log_uniform(var / (step.features.pow(2) + 1e-4)) * (0.1 / sigma)
            mse = self._reconstruction_mse(step, images)
            return s.beta * anneal * kl - s.adversary_weight / (1.0 + sigma) * mse

        return self._fit_end_to_end(train, extra_loss=extra, before_epoch=adversary_epoch)

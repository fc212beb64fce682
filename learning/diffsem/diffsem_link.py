"""The DiffSem link: encoder, SNR-adaptive self-noise, and the diffusion receiver.

Training (all through :func:`learning.diffsem.base.air_pass`, SNRs drawn over
``train_snr_db``):

1. encoder + head end to end on the receiver's linear first pass, self-noise on, so the
   encoder learns features that survive the target noise ``r_T``;
2. the feature U-Net on the frozen encoder's clean features of the training set
   (:func:`learning.diffsem.denoiser.train_denoiser`), all noise levels at once;
3. the receiver head (a copy of the head) fine-tuned on the denoised features of the
   receiver's last pass (:class:`learning.diffsem.receiver.DiffusionReceiver`).

Because self-noise holds the total noise at ``r_T`` whenever the channel is better, one
trained link serves every SNR at or above the one where ``r_c = r_T``.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn

from learning.data import Dataset
from learning.diffsem.base import AirPass, Link, air_pass, register
from learning.diffsem.denoiser import train_denoiser
from learning.diffsem.receiver import DiffusionReceiver
from learning.diffsem.settings import DiffSemSettings

__all__ = ["DiffSemLink"]


@register
class DiffSemLink(Link):
    """DiffSem (module doc); ``settings.conditioning`` selects label embeddings."""

    name = "diffsem"
    settings_type = DiffSemSettings

    def __init__(self, settings: DiffSemSettings, input_shape, n_classes, rng=None) -> None:
        super().__init__(settings, input_shape, n_classes, rng)
        self.receiver: DiffusionReceiver | None = None
        self._transmitter_fitted = False

    @property
    def noise_level(self) -> float:
        """``settings.noise_level``: the users self-noise up to it."""
        return self.settings.noise_level  # type: ignore[attr-defined]

    def _first_pass(self, step: AirPass) -> torch.Tensor:
        receiver = self._receiver_for(self.head)
        x_t, t = receiver.diffusion_input(step.received, step.channel_nsr)
        return self.head(receiver.linear(x_t, t))

    def _receiver_for(self, head: nn.Module, denoiser=None) -> DiffusionReceiver:
        s: DiffSemSettings = self.settings  # type: ignore[assignment]
        return DiffusionReceiver(
            denoiser,
            self.head,
            head,
            s.noise_level,
            s.conditioning,
            s.label_iterations,
            s.sampling_steps,
        )

    def predict(self, received: torch.Tensor, channel_nsr: np.ndarray) -> torch.Tensor:
        if self.receiver is None:
            raise RuntimeError("fit the link before predicting")
        return self.receiver.predict(received, channel_nsr)

    def fit_transmitter(self, train: Dataset) -> DiffSemLink:
        """Stage 1 only (encoder + head through the air): all a user needs. Idempotent;
        :meth:`fit` continues from it with the same random streams, so a user's encoder
        equals the one the receiver was fitted with."""
        if not self._transmitter_fitted:
            params = [*self.encoder.parameters(), *self.head.parameters()]
            self.training_seconds += self.train_through_air(train, params, self._first_pass)
            self._transmitter_fitted = True
        return self

    def fit(self, train: Dataset) -> DiffSemLink:
        s: DiffSemSettings = self.settings  # type: ignore[assignment]
        self.fit_transmitter(train)
        seconds = self.training_seconds
        start = time.perf_counter()
        with torch.no_grad():
            clean = self.encoder(train.x) * np.sqrt(2.0)  # unit variance per real
        denoiser = train_denoiser(
            clean,
            train.y,
            self.n_classes,
            width=s.denoiser_width,
            epochs=s.denoiser_epochs,
            lr=s.lr,
            label_dropout=s.label_dropout,
            rng=self._g_train,
        )
        receiver_head = copy.deepcopy(self.head)
        receiver = self._receiver_for(receiver_head, denoiser)
        self.receiver = receiver
        self._finetune_head(train, receiver)
        self.training_seconds = seconds + time.perf_counter() - start
        self.eval()
        return self

    def _finetune_head(self, train: Dataset, receiver: DiffusionReceiver) -> None:
        s: DiffSemSettings = self.settings  # type: ignore[assignment]
        optimizer = torch.optim.Adam(receiver.head.parameters(), lr=s.lr)
        self.encoder.eval()
        for _ in range(s.head_epochs):
            snr_db = float(self._g_train.uniform(*s.train_snr_db))
            with torch.no_grad():
                step = air_pass(self, train.x, snr_db, self._g_air)
                x_t, t = receiver.diffusion_input(step.received, step.channel_nsr)
                receiver.head.eval()
                feats = receiver.last_features(x_t, t)
            receiver.head.train()
            order = torch.randperm(len(train), generator=self.noise)
            for idx in order.split(s.batch_size):
                loss = nn.functional.cross_entropy(receiver.head(feats[idx]), train.y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        receiver.head.eval()

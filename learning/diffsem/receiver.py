"""DiffSem's legitimate receiver: match the timestep to the noise, denoise with the
conditional feature U-Net, classify; optionally condition on its own predicted label.

Passes (:meth:`DiffusionReceiver.passes`), for received reals ``y`` ``(B, D)`` with
channel ratios ``r_c`` and the link's target ``r_T``:

1. ``x_t = y sqrt(2 / (1 + r_c))`` is the diffusion marginal at
   ``abar = 1 / (1 + max(r_T, r_c))`` (:mod:`learning.diffsem.selfnoise`), so the
   timestep is ``t = timestep_for_nsr(max(r_T, r_c))`` per sample;
2. without diffusion, the linear MMSE estimate ``sqrt(abar) x_t`` (the posterior mean
   under a Gaussian prior): ``"first_pass"`` reads it with the receiver head (the
   receiver's own first pass), ``"link_head"`` with the link's head, which was trained
   end to end on exactly that estimate (the strongest reading without diffusion);
3. ``"unconditional"``: DDIM from ``t`` with the null label, read by the receiver head;
4. ``"label_1"`` .. ``"label_n"`` (``conditioning="label"``): DDIM from the same
   ``x_t`` conditioned on the softmax of the previous pass's logits (a soft label
   embedding: the probability-weighted mix of class embeddings), read by the receiver
   head, ``label_iterations`` times.

The receiver's prediction is the last pass. The receiver head starts from the link's
head and is fine-tuned on the denoised features of the last pass (the conditioning
labels coming from the head being trained, recomputed each epoch).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from learning.diffsem.denoiser import FeatureUNet, ddim_denoise
from learning.diffsem.schedule import abar, timestep_for_nsr
from learning.diffsem.selfnoise import effective_nsr, receiver_scale

__all__ = ["DiffusionReceiver"]

_SQRT2 = float(np.sqrt(2.0))


class DiffusionReceiver:
    """Denoiser + heads of DiffSem's receiver (module doc).

    Args:
        denoiser: a trained :class:`~learning.diffsem.denoiser.FeatureUNet`.
        first_head: the link's head (reads the linear first pass), features ``(B, D)``
            in the power-normalised scale -> logits.
        head: the receiver head reading denoised features (same input scale).
        noise_level: the link's target ratio ``r_T``; conditioning: ``"none"``/``"label"``;
        label_iterations, sampling_steps: see :class:`~learning.diffsem.settings.DiffSemSettings`.
    """

    def __init__(
        self,
        denoiser: FeatureUNet,
        first_head: nn.Module,
        head: nn.Module,
        noise_level: float,
        conditioning: str,
        label_iterations: int,
        sampling_steps: int,
    ) -> None:
        self.denoiser, self.first_head, self.head = denoiser, first_head, head
        self.noise_level, self.conditioning = float(noise_level), conditioning
        self.label_iterations, self.sampling_steps = label_iterations, sampling_steps

    def diffusion_input(
        self, received: torch.Tensor, channel_nsr: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_t (B, D), t (B,))`` for received reals and channel ratios ``(B,)``."""
        x_t = received * receiver_scale(channel_nsr)
        return x_t, timestep_for_nsr(effective_nsr(channel_nsr, self.noise_level))

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Denoised features ``(B, D)`` in the power-normalised scale."""
        return ddim_denoise(self.denoiser, x_t, t, label, self.sampling_steps) / _SQRT2

    def linear(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The first pass's linear MMSE estimate ``sqrt(abar) x_t`` in the power scale."""
        return abar(t).sqrt().unsqueeze(1) * x_t / _SQRT2

    def last_features(
        self, x_t: torch.Tensor, t: torch.Tensor, head: nn.Module | None = None
    ) -> torch.Tensor:
        """Denoised features of the last pass (labels from ``head``, default the receiver
        head), without gradient."""
        head = head or self.head
        with torch.no_grad():
            null = torch.zeros(x_t.shape[0], self.denoiser.n_classes)
            feats = self.denoise(x_t, t, null)
            if self.conditioning == "label":
                for _ in range(self.label_iterations):
                    feats = self.denoise(x_t, t, torch.softmax(head(feats), dim=1))
        return feats

    def passes(self, received: torch.Tensor, channel_nsr: np.ndarray) -> dict[str, torch.Tensor]:
        """Logits ``(B, C)`` of every pass, in order (module doc)."""
        return self.passes_at(*self.diffusion_input(received, channel_nsr))

    @torch.no_grad()
    def passes_at(self, x_t: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits ``(B, C)`` of every pass from the diffusion input ``x_t`` ``(B, D)`` at
        times ``t`` ``(B,)`` (e.g. :func:`learning.diffsem.reading.slot_marginal`)."""
        linear = self.linear(x_t, t)
        out = {"first_pass": self.head(linear), "link_head": self.first_head(linear)}
        null = torch.zeros(x_t.shape[0], self.denoiser.n_classes)
        logits = self.head(self.denoise(x_t, t, null))
        out["unconditional"] = logits
        if self.conditioning == "label":
            for i in range(self.label_iterations):
                logits = self.head(self.denoise(x_t, t, torch.softmax(logits, dim=1)))
                out[f"label_{i + 1}"] = logits
        return out

    def predict(self, received: torch.Tensor, channel_nsr: np.ndarray) -> torch.Tensor:
        """The receiver's logits: its last pass."""
        return list(self.passes(received, channel_nsr).values())[-1]

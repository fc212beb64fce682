"""DP-SGD (Abadi et al. 2016) as a defence: per-sample gradient clipping plus Gaussian
noise, with the privacy spent reported as ``(epsilon, delta)``.

* The **target** model is trained through Opacus (``PrivacyEngine.make_private``:
  Poisson sampling at rate ``batch_size / n``, flat clipping at ``max_grad_norm``,
  Gaussian noise ``noise_multiplier * max_grad_norm``, Adam on the privatised
  gradient); epsilon is Opacus's RDP accountant's figure for that training.
* The noise multiplier is Opacus's ``get_noise_multiplier`` for ``target_epsilon`` at
  ``delta`` over the run's sample rate and epochs (or given as ``noise_multiplier``).
* An attacker's **shadow models** follow the same recipe in batched form
  (:meth:`DpSgd.gradients`: per-sample gradients with :func:`torch.func.grad` under two
  nested :func:`torch.vmap` s, each sample's gradient clipped to ``max_grad_norm``,
  the clipped sum plus the same Gaussian noise, divided by the batch size). Batches are
  shuffled fixed-size ones rather than Poisson draws - the attacker's approximation;
  the clipped sum equals Opacus's (tested).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from opacus import PrivacyEngine
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier
from torch import nn
from torch.func import functional_call, grad

from learning.defences.base import (
    Defence,
    ModelStack,
    TargetTask,
    TrainSettings,
    register_defence,
)
from phy.rng import RngLike, derive_seed, make_rng, spawn


@register_defence
class DpSgd(Defence):
    """DP-SGD; see the module docstring.

    Args:
        target_epsilon: epsilon to calibrate the noise to (> 0), used when
            ``noise_multiplier`` is None.
        delta: the delta of the guarantee, in (0, 1).
        max_grad_norm: per-sample clipping norm (> 0).
        noise_multiplier: noise standard deviation over ``max_grad_norm``; None derives it
            from ``target_epsilon``.
        chunk: shadow models whose per-sample gradients are held in memory at once.
    """

    name = "dpsgd"
    knobs = ("target_epsilon", "delta", "max_grad_norm", "noise_multiplier")

    def __init__(
        self,
        target_epsilon: float = 8.0,
        delta: float = 1e-5,
        max_grad_norm: float = 1.0,
        noise_multiplier: float | None = None,
        chunk: int = 8,
    ) -> None:
        if not np.isfinite(target_epsilon) or target_epsilon <= 0:
            raise ValueError(f"target_epsilon must be finite and > 0, got {target_epsilon}")
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        if not np.isfinite(max_grad_norm) or max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be finite and > 0, got {max_grad_norm}")
        if noise_multiplier is not None and (
            not np.isfinite(noise_multiplier) or noise_multiplier < 0
        ):
            raise ValueError(f"noise_multiplier must be finite and >= 0, got {noise_multiplier}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.target_epsilon, self.delta = float(target_epsilon), float(delta)
        self.max_grad_norm = float(max_grad_norm)
        self.noise_multiplier = noise_multiplier
        self.chunk = int(chunk)
        self._sigma = 0.0
        #: epsilon Opacus's accountant reports for the last target trained (None before)
        self.spent_epsilon: float | None = None

    @staticmethod
    def _sample_rate(n: int, settings: TrainSettings) -> float:
        return min(1.0, settings.batch_size / n)

    def sigma(self, n: int, settings: TrainSettings) -> float:
        """The noise multiplier for a training set of ``n`` samples under ``settings``."""
        if self.noise_multiplier is not None:
            return float(self.noise_multiplier)
        return float(
            get_noise_multiplier(
                target_epsilon=self.target_epsilon,
                target_delta=self.delta,
                sample_rate=self._sample_rate(n, settings),
                epochs=settings.epochs,
                accountant="rdp",
            )
        )

    def epsilon(self, n: int, settings: TrainSettings) -> float:
        """Epsilon (at :attr:`delta`) of training on ``n`` samples under ``settings``,
        from Opacus's RDP accountant (``inf`` without noise)."""
        sigma = self.sigma(n, settings)
        if sigma == 0:
            return float("inf")
        q = self._sample_rate(n, settings)
        accountant = RDPAccountant()
        accountant.history = [(sigma, q, int(settings.epochs * round(1 / q)))]
        return float(accountant.get_epsilon(self.delta))

    # ------------------------------------------------------------- shadow models
    def train_stack(self, factory, x, y, index_sets, n_classes, settings, rng=None):
        self._sigma = self.sigma(int(np.shape(index_sets)[1]), settings)
        return super().train_stack(factory, x, y, index_sets, n_classes, settings, rng)

    def clipped_sum(
        self, stack: ModelStack, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], float]:
        """Per model, the sum over the batch of per-sample gradients each clipped to
        ``max_grad_norm`` (stacked like ``stack.params``), and the mean loss."""

        def sample_loss(params, buffers, xi, yi):
            logits = functional_call(stack.template, (params, buffers), (xi[None],))
            return -(yi[None] * torch.log_softmax(logits, dim=-1)).sum()

        per_sample = torch.vmap(
            torch.vmap(grad(sample_loss), in_dims=(None, None, 0, 0)), in_dims=(0, 0, 0, 0)
        )
        names = list(stack.params)
        sums = {name: [] for name in names}
        m = x.shape[0]
        for start in range(0, m, self.chunk):
            part = slice(start, start + self.chunk)
            params = {k: v[part].detach() for k, v in stack.params.items()}
            buffers = {k: v[part] for k, v in stack.buffers.items()}
            g = per_sample(params, buffers, x[part], y[part])  # each (m', B, ...)
            norms = torch.sqrt(sum(g[k].flatten(2).pow(2).sum(-1) for k in names))
            factor = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
            for k in names:
                sums[k].append(torch.einsum("mb,mb...->m...", factor, g[k]))
        with torch.no_grad():
            losses = -(y * torch.log_softmax(stack.forward(x), dim=-1)).sum(-1).mean(-1)
        return {k: torch.cat(v) for k, v in sums.items()}, float(losses.mean())

    def gradients(self, stack, x, y, gen):
        sums, loss = self.clipped_sum(stack, x, y)
        std = self._sigma * self.max_grad_norm
        batch = x.shape[1]
        return {
            k: (s + std * torch.randn(s.shape, generator=gen)) / batch for k, s in sums.items()
        }, loss

    # ------------------------------------------------------------- target model
    def fit_target(self, task: TargetTask, rng: RngLike) -> nn.Module:
        """Train the target through Opacus (see the module docstring)."""
        factory, x, y, members, settings = task.factory, task.x, task.y, task.members, task.settings
        init_rng, loop_rng, noise_rng = spawn(make_rng(rng), 3)
        sigma = self.sigma(len(members), settings)
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            torch.manual_seed(derive_seed(init_rng) % 2**62)
            net = factory()
            torch.manual_seed(derive_seed(loop_rng) % 2**62)
            noise = torch.Generator().manual_seed(derive_seed(noise_rng) % 2**62)
            idx = torch.from_numpy(members)
            loader = torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(x[idx], y[idx]),
                batch_size=min(settings.batch_size, len(members)),
            )
            optimizer = torch.optim.Adam(
                net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
            )
            warnings.filterwarnings("ignore", "Secure RNG turned off", UserWarning)
            warnings.filterwarnings("ignore", "Full backward hook is firing", UserWarning)
            engine = PrivacyEngine(accountant="rdp")
            model, optimizer, loader = engine.make_private(
                module=net,
                optimizer=optimizer,
                data_loader=loader,
                noise_multiplier=sigma,
                max_grad_norm=self.max_grad_norm,
                noise_generator=noise,
            )
            model.train()
            for _ in range(settings.epochs):
                for xb, yb in loader:
                    if len(yb) == 0:
                        continue
                    optimizer.zero_grad(set_to_none=True)
                    nn.functional.cross_entropy(model(xb), yb).backward()
                    optimizer.step()
            self.spent_epsilon = float(engine.get_epsilon(self.delta))
        with torch.random.fork_rng(devices=[]):
            clean = factory()
        clean.load_state_dict({k: v.detach().clone() for k, v in net.state_dict().items()})
        return clean.eval()

"""DiffSem as a method of the run (``[method] name = "diffsem"``), with its baselines as
the ``link`` option: a task-oriented semantic link over the radios.

Our reading for a run (the library :mod:`learning.diffsem` holds the link itself, its
training and the reasons behind each choice):

* **Deployment.** A semantic link is trained before it is deployed (DiffSem and IBAL
  train transmitter and receiver together, then evaluate). Here every party derives the
  same link from the experiment alone: it is trained on the *auxiliary* split (public
  data every party holds) through the modelled air (:meth:`learning.diffsem.base.Link.
  fit`), seeded by ``("diffsem-link",)``. The users' encoders are then fixed devices;
  the eavesdropper's black-box access to the encoder (its threat model,
  :mod:`learning.diffsem.eavesdropper`) is exactly what a public device gives. Nodes
  train only the transmitter half (:meth:`~learning.diffsem.base.Link.fit_transmitter`).
* **On the air** (per slot): each user's next batch of its private samples goes through
  the encoder (power-normalised features, 0.5 per real), the link's transmit rule
  (``link = "diffsem"``: self-noise adapted to the legitimate link's noise-to-signal
  ratio the user last heard from the receiver; ``"plain"`` and ``"ibal"``: none) and
  is framed with the label tail (:mod:`learning.framing`); labels travel on the air so
  the server can learn from the users' data, as in SIMix. Nothing the users hold goes on
  the digital link.
* **The receiver** (server step): it measures the slot's channel noise on the label
  tail and reads the features' diffusion marginal (:mod:`learning.diffsem.reading`),
  denoises with the link's diffusion receiver (timestep matched to the noise; label
  conditioning iterated if ``conditioning = "label"``) and trains its receiver head on
  the denoised features with the received soft label (one Adam step per slot at
  ``model.learning_rate``); the plain and information-bottleneck receivers train their
  head on the received features. The receiver tells each user of the slot, over the
  digital link, its measured channel ratio ``r_k`` (server -> user: allowed); the user
  adapts its self-noise to it from its next slot on (the closed loop's estimate).
* **Slots** (``slots``): ``"orthogonal"``, one user per slot (DiffSem's set-up);
  ``"simix"``, the group's users share one slot and their self-noised features mix over
  the air with the mixing policy's weights (SIMix grouping; beyond the paper), the
  receiver reading the mixture with the mixed label.
* **Evaluation** (server side): the test images through the link's encoder and transmit
  rule at the mean channel ratio the receiver measured over the users, Gaussian channel
  noise of that ratio (after equalisation the air is additive noise; seeded per
  evaluation by ``("diffsem-eval", n)``), read by the receiver as above.
* **Privacy audit** (:mod:`orchestrator.privacy_audit`): model inversion of what the
  server and the passive eavesdropper radio received, the attacker modelling the users'
  transmissions with :meth:`DiffSemMethod.transmitted_payloads` (public encoder, public
  self-noise rule at the legitimate SNR), features only (``use_label=False``, DiffSem's
  metric: task accuracy of a separately trained evaluator on the reconstructions, plus
  PSNR and SSIM, each beside its chance level).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from learning.data import Dataset
from learning.diffsem import CONDITIONINGS, LINKS, air, make_link
from learning.diffsem.diffsem_link import DiffSemLink
from learning.diffsem.reading import slot_marginal, tail_noise_var, user_channel_nsr
from learning.diffsem.schedule import timestep_for_abar
from learning.diffsem.selfnoise import self_noise_keep
from learning.framing import frame_reals, label_dim, pack_payload, read_label, split_payload
from learning.methods import METHODS
from learning.methods.base import (
    Feedback,
    Method,
    MethodContext,
    MethodUser,
    Option,
    Reception,
    ServerView,
    StepOutcome,
    UserPayload,
)
from learning.mixup import soft_cross_entropy
from learning.training import User
from phy.rng import RngLike, make_rng, spawn, torch_generator

__all__ = ["DiffSemMethod", "DiffSemUser", "IbalSemantic", "PlainSemantic"]

SLOT_MODES = ("orthogonal", "simix")


class DiffSemMethod(Method):
    """A semantic link over the radios (module doc)."""

    name = "diffsem"
    summary = "task-oriented semantic link: self-noise + diffusion receiver (or plain / IBAL)"
    options = {
        "link": Option(
            str,
            "diffsem",
            "semantic link: DiffSem, or a baseline",
            choices=("diffsem", "ibal", "plain"),
        ),
        "slots": Option(
            str,
            "orthogonal",
            "one user per slot, or the group's features mixed in one slot (SIMix)",
            choices=SLOT_MODES,
        ),
        "noise_level": Option(
            float, 2.5, "DiffSem: target total noise-to-signal ratio per real (linear)", minimum=0
        ),
        "conditioning": Option(
            str, "label", "DiffSem receiver: label embeddings or none", choices=CONDITIONINGS
        ),
        "label_iterations": Option(int, 2, "DiffSem: label-conditioned passes", minimum=1),
        "sampling_steps": Option(int, 4, "DiffSem: DDIM steps", minimum=1),
        "denoiser_width": Option(int, 256, "DiffSem: hidden width of the U-Net", minimum=1),
        "denoiser_epochs": Option(int, 300, "DiffSem: U-Net training epochs", minimum=1),
        "head_epochs": Option(
            int, 20, "DiffSem: receiver-head epochs before deployment", minimum=1
        ),
        "link_epochs": Option(int, 60, "encoder + head epochs before deployment", minimum=1),
        "beta": Option(float, 1e-3, "IBAL: information-bottleneck weight", minimum=0),
        "train_snr_low_db": Option(float, 7.0, "lowest SNR the link is trained at (dB)"),
        "train_snr_high_db": Option(float, 23.0, "highest SNR the link is trained at (dB)"),
        "attack_epochs": Option(
            int, 60, "audit: epochs of the inversion and its evaluator", minimum=1
        ),
    }

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        opts = {name: spec.default for name, spec in self.options.items()}
        opts.update(context.options)
        self.link_name, self.slot_mode = self.link_of(opts), str(opts["slots"])
        if self.link_name not in LINKS or self.slot_mode not in SLOT_MODES:
            raise ValueError(f"link {self.link_name!r} or slots {self.slot_mode!r} unknown")
        if len(context.split.auxiliary) < 2:
            raise ValueError("the auxiliary split is empty: nothing to train the link on")
        values = self.link_settings(opts)
        values.update(feature_dim=int(context.model["feature_dim"]), encoder=context.model["arch"])
        self.link = make_link(
            self.link_name,
            context.train.input_shape,
            context.n_classes,
            values,
            rng=make_rng(context.seed_for("diffsem-link")),
        )
        self.noise_level = float(self.link.noise_level or 0.0)
        self.dim, self.batch = int(values["feature_dim"]), context.slot_batch
        self.attack_epochs = int(opts["attack_epochs"])
        self.told = np.zeros(context.n_users)  # the channel ratio each user adapts to
        self.evaluations = 0
        self._server_ready = False

    #: the link of a peer method (None: the ``link`` option chooses)
    fixed_link: ClassVar[str | None] = None

    @classmethod
    def link_of(cls, options: Mapping[str, Any]) -> str:
        """The link name for ``options``: the class's own, else the ``link`` option."""
        return cls.fixed_link or str(options.get("link", cls.options["link"].default))

    #: link setting -> the option that sets it, where the names differ
    SETTING_OPTIONS = {"epochs": "link_epochs", "train_snr_db": "train_snr_low_db"}

    @classmethod
    def link_settings(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The chosen link's settings (:mod:`learning.diffsem.settings`) from the method's
        ``options`` (defaults filled in), without the ``[model]`` fields."""
        opts = {name: spec.default for name, spec in cls.options.items()}
        opts.update(options)
        values = {k: opts[k] for k in opts if k not in ("link", "slots", "attack_epochs")}
        values["epochs"] = values.pop("link_epochs")
        values["train_snr_db"] = (values.pop("train_snr_low_db"), values.pop("train_snr_high_db"))
        known = {f.name for f in fields(LINKS[cls.link_of(opts)].settings_type)}
        return {k: v for k, v in values.items() if k in known}

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> tuple[str, str] | None:
        """``(option, problem)`` when the options make invalid link settings (checks
        across fields, e.g. the training SNR range), else None; read by the experiment
        validation (:mod:`orchestrator.config`)."""
        from learning.diffsem.settings import settings_from_dict

        try:
            settings_from_dict(
                LINKS[cls.link_of(options)].settings_type, cls.link_settings(options)
            )
        except ValueError as error:
            setting, _, problem = str(error).partition(": ")
            return cls.SETTING_OPTIONS.get(setting, setting), problem
        return None

    # ------------------------------------------------------------------ the link
    def _user_side(self) -> None:
        with torch.enable_grad():  # callers may run without gradient
            self.link.fit_transmitter(self.context.auxiliary)
        self.link.eval()

    def _server_side(self) -> None:
        """Train the whole link (once) and the receiver head's optimiser."""
        if self._server_ready:
            return
        with torch.enable_grad():  # callers may run without gradient
            self.link.fit(self.context.auxiliary)
        self.link.eval()
        self.optimizer = torch.optim.Adam(
            self.head.parameters(), lr=float(self.context.model["learning_rate"])
        )
        self._server_ready = True

    @property
    def head(self) -> nn.Module:
        """The receiver head the run trains: DiffSem's receiver head, else the link's."""
        if isinstance(self.link, DiffSemLink) and self.link.receiver is not None:
            return self.link.receiver.head
        return self.link.head

    def keep(self, channel_nsr: np.ndarray | float) -> np.ndarray:
        """Signal fractions users keep for channel ratios ``channel_nsr`` (1: no self-noise)."""
        r = np.asarray(channel_nsr, dtype=np.float64)
        if not isinstance(self.link, DiffSemLink):
            return np.ones_like(r)
        return self_noise_keep(r, self.noise_level)

    def receiver_inputs(
        self, received: torch.Tensor, noise_var: float, gains: np.ndarray, keeps: np.ndarray
    ) -> torch.Tensor:
        """What the receiver head reads for received features ``(B, D)`` of a slot with
        channel noise ``noise_var`` per real, effective weights ``gains`` ``(K,)`` and the
        users' signal fractions ``keeps`` ``(K,)``: DiffSem's denoised features, else the
        received mixture scaled by ``1 / sqrt(sum g^2)``; ``(B, D)``, no gradient."""
        if not isinstance(self.link, DiffSemLink):
            return received / math.sqrt(float(np.sum(np.abs(gains) ** 2)))
        x_t, abar = slot_marginal(received, noise_var, gains, keeps)
        t = timestep_for_abar(np.full(received.shape[0], abar))
        return self.link.receiver.last_features(x_t, t)  # type: ignore[union-attr]

    @torch.no_grad()
    def transmitted_payloads(
        self,
        x: torch.Tensor,
        snr_db: float,
        fading: str = "rayleigh",
        policy: str = "mmse",
        rng: RngLike = None,
    ) -> np.ndarray:
        """What users would send for images ``x`` ``(N, C, H, W)`` on a legitimate link at
        ``snr_db`` (the public encoder and transmit rule, per-sample channel draws):
        float ``(N, D)``. The attackers' model of the users' transmissions."""
        self._server_side()
        g_gain, g_noise = spawn(rng, 2)
        features = self.link.encoder(x)
        gains = air.legit_gains(features.shape[0], snr_db, fading, policy, g_gain)
        nsr = air.channel_nsr(gains, snr_db)
        return self.link.transmit(features, nsr, torch_generator(g_noise)).numpy()

    @property
    def attack_kwargs(self) -> dict[str, dict[str, Any]]:
        """Options of the attacks the audit runs on this method: the inversion reads the
        features only (not the label tail), as DiffSem's attacker; it and its evaluation
        classifier train for ``attack_epochs``."""
        epochs = self.attack_epochs
        return {
            "model_inversion": {"use_label": False, "epochs": epochs, "evaluator_epochs": epochs}
        }

    # ------------------------------------------------------------------ the air
    @property
    def payload_reals(self) -> int:
        return frame_reals(self.batch, self.dim, self.context.n_classes)

    def slots(self, group: Sequence[int]) -> list[list[int]]:
        if self.slot_mode == "simix":
            return [list(group)]
        return [[user] for user in group]

    def read(self, estimate: np.ndarray, soft: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """A received slot -> (features ``(B, D)``, label ``(B, C)``) (:mod:`learning.framing`)."""
        return split_payload(
            estimate, self.batch, self.dim, self.context.n_classes, soft_label=soft
        )

    # ------------------------------------------------------------------ server
    def server_step(self, receptions: Sequence[Reception], rng: RngLike) -> StepOutcome:
        self._server_side()
        outcome = StepOutcome()
        n_classes = self.context.n_classes
        for reception in receptions:
            if reception.estimate is None:
                continue
            rows = np.asarray(reception.estimate, np.float32).reshape(self.batch, -1)
            features = torch.as_tensor(rows[:, : self.dim])
            tails = rows[:, self.dim : self.dim + label_dim(n_classes)]
            label = read_label(tails, n_classes)
            users = list(reception.users)
            gains = np.asarray(reception.effective_weights, float)
            noise_var = tail_noise_var(tails, n_classes, len(users))
            noise_var = 0.0 if not math.isfinite(noise_var) else noise_var
            inputs = self.receiver_inputs(features, noise_var, gains, self.keep(self.told[users]))
            self.head.train()
            loss = soft_cross_entropy(self.head(inputs), label)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.head.eval()
            outcome.losses.append(float(loss.detach()))
            measured = user_channel_nsr(noise_var, gains)
            self.told[users] = measured
            outcome.feedback.append(
                Feedback(tuple(users), np.ones(len(users)), {"nsr": measured.astype(np.float64)})
            )
            outcome.views.append(
                ServerView(tuple(users), reception.weights, features.numpy(), label.numpy())
            )
        return outcome

    @torch.no_grad()
    def evaluate(self) -> float | None:
        self._server_side()
        test = self.context.test
        g = make_rng(self.context.seed_for("diffsem-eval", self.evaluations))
        self.evaluations += 1
        r = float(np.mean(self.told))
        features = self.link.encoder(test.x)
        n = features.shape[0]
        sent = self.link.transmit(features, np.full(n, r), torch_generator(g))
        noise = torch.randn(sent.shape, generator=torch_generator(g)) * math.sqrt(0.5 * r)
        inputs = self.receiver_inputs(sent + noise, 0.5 * r, np.ones(1), self.keep(np.array([r])))
        return float((self.head(inputs).argmax(1) == test.y).float().mean())

    def state_dict(self) -> dict[str, Any]:
        self._server_side()
        return {
            "head": self.head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "told": [float(v) for v in self.told],
            "evaluations": int(self.evaluations),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._server_side()
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.told = np.asarray(state["told"], dtype=np.float64)
        self.evaluations = int(state["evaluations"])

    def make_user(self, index: int) -> DiffSemUser:
        self._user_side()
        return DiffSemUser(self, index, self.context.user_data(index))


#: options that only DiffSem's link reads
_DIFFSEM_ONLY = (
    "noise_level",
    "conditioning",
    "label_iterations",
    "sampling_steps",
    "denoiser_width",
    "denoiser_epochs",
    "head_epochs",
)


class PlainSemantic(DiffSemMethod):
    """Peer baseline: the plain task-oriented link (``diffsem`` with ``link = "plain"``),
    a method name of its own so sweeps can put it on the ``method.name`` axis."""

    name = "semantic_plain"
    summary = "task-oriented semantic link without self-noise or diffusion (DiffSem's baseline)"
    fixed_link = "plain"
    options = {
        k: v for k, v in DiffSemMethod.options.items() if k not in ("link", "beta", *_DIFFSEM_ONLY)
    }


class IbalSemantic(DiffSemMethod):
    """Peer baseline: the information-bottleneck adversarial link (``diffsem`` with
    ``link = "ibal"``) under a method name of its own."""

    name = "semantic_ibal"
    summary = "information-bottleneck adversarial semantic link, IBAL (DiffSem's baseline)"
    fixed_link = "ibal"
    options = {k: v for k, v in DiffSemMethod.options.items() if k not in ("link", *_DIFFSEM_ONLY)}


class DiffSemUser(MethodUser):
    """User half: next batch -> encoder -> transmit rule at the last ratio the receiver
    reported -> framed payload with the label tail."""

    method: DiffSemMethod

    def __init__(self, method: DiffSemMethod, index: int, data: Dataset) -> None:
        super().__init__(method, index, data)
        batch_size = int(method.context.model["batch_size"])
        self.sampler = User(data, encoder=method.link.encoder, batch_size=batch_size)
        self.nsr = 0.0  # no report yet: self-noise for a perfect channel (the most)
        self._noise = torch_generator(method.context.seed_for("diffsem-user", index))

    def start_round(self, seed: RngLike) -> None:
        g_batches, g_noise = spawn(seed, 2)
        self.sampler.reseed(g_batches)
        self._noise = torch_generator(g_noise)

    @torch.no_grad()
    def payload(self, batch_size: int) -> UserPayload:
        x, y, indices = self.sampler.sample_batch_with_indices()
        batch = min(len(y), batch_size)
        x, y, indices = x[:batch], y[:batch], indices[:batch]
        link = self.method.link
        sent = link.transmit(link.encoder(x), np.full(batch, self.nsr), self._noise)
        vector = pack_payload(sent, y, self.method.context.n_classes)
        return UserPayload(vector, np.asarray(indices, dtype=np.int64))

    def apply(self, feedback: Feedback, weight: float) -> None:
        position = feedback.users.index(self.index)
        self.nsr = float(np.asarray(feedback.arrays["nsr"], dtype=np.float64)[position])

    def state_dict(self) -> dict[str, Any]:
        return {"nsr": float(self.nsr)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.nsr = float(state["nsr"])


for _cls in (DiffSemMethod, PlainSemantic, IbalSemantic):
    METHODS.add(_cls.name, _cls)

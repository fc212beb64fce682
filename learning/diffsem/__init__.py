"""DiffSem on the air: a task-oriented semantic link with SNR-adaptive self-noise, a
diffusion receiver, and an eavesdropper's model inversion; its baselines as peers.

Our reading of DiffSem (Wang, Li, Shi, Liu, Yang, arXiv 2506.19886; full text not
reachable here, so the abstract and its predecessor IBAL, Wang et al. TWC 2024 with
public code ``SSG2019/IBAL``, fix the set-up: 64 power-normalised reals per sample,
AWGN, SNRs 7-23 dB, an inversion attacker that can query the encoder):

* **Transmitter** (:mod:`.selfnoise`): the encoder's features are power-normalised
  (``learning.models.PowerNormalize``: 0.5 per real). The user knows the legitimate
  link's noise-to-signal ratio per real ``r_c`` (closed-loop channel estimate, radios'
  link budget, :mod:`.air`) and mixes in Gaussian self-noise in a variance-preserving
  way, ``t = sqrt(a) x + sqrt(1 - a) sqrt(0.5) eps`` with ``a = min(1, (1 + r_c) /
  (1 + r_T))``: the features reach the receiver with total ratio ``max(r_T, r_c)``
  whatever the channel, at unchanged transmit power. "Regulates semantic content while
  compensating channel noise": the self-noise fills exactly the gap between the
  channel's noise and the target ``r_T`` (``DiffSemSettings.noise_level``).
* **Air** (:mod:`.air`): the radios' OFDM model (payload packing, composite-gain
  equalisation, subcarrier noise at the link-budget SNR) for both the legitimate
  receiver and the passive eavesdropper, one user per slot.
* **Receiver** (:mod:`.receiver`, :mod:`.denoiser`, :mod:`.schedule`): received reals
  scaled to unit variance are exactly a forward-diffusion marginal, so the timestep is
  the closed-form inverse of the cosine schedule at ``abar = 1 / (1 + max(r_T, r_c))``;
  a small conditional feature U-Net (dense, skip-connected; chosen over diffusers'
  ``UNet2DModel`` by measured speed, see :mod:`.denoiser`) denoises by DDIM, and a head
  classifies. With label embeddings (``conditioning="label"``) the U-Net is then
  conditioned on the softmax of its own previous prediction (a soft label embedding),
  ``label_iterations`` times ("self-referential label embeddings").
* **Training** (:mod:`.diffsem_link`): encoder + head end to end through the air with
  self-noise on (linear MMSE first pass), then the U-Net on the frozen encoder's clean
  features (all noise levels, label dropout for the unconditional mode), then the
  receiver head on the denoised features; once for the whole SNR grid.
* **Eavesdropper** (:mod:`.eavesdropper`): passive radio at its own SNR; queries the
  encoder as a black box, knows the public rules; trains
  :class:`learning.attacks.ModelInversion` on its auxiliary data through its modelled
  view; scored by the task accuracy of a separately trained evaluator on the
  reconstructions (DiffSem's metric), plus PSNR/SSIM, each with chance.
* **Baselines** (:mod:`.plain`, :mod:`.ibal`): the same encoder and head without
  self-noise or diffusion, and IBAL's information-bottleneck adversarial training.

Links are selected by name (:data:`LINKS`, :func:`make_link`: ``"plain"``, ``"ibal"``,
``"diffsem"``); :mod:`.experiment` runs the comparison grid of ``benchmarks/diffsem.py``.
In ``airmix run`` a link is the ``diffsem`` method (:mod:`learning.methods.diffsem`): the
receiver reads real slots with :mod:`.reading` (noise measured on the label tail, the
closed loop's channel ratio, the exact diffusion marginal, also of SIMix mixtures), and
the run's privacy audit attacks the eavesdropper's captures with this package's threat
model (:mod:`.eavesdropper`).
"""

from learning.diffsem.base import LINKS, AirPass, Link, air_pass, link_accuracy, make_link
from learning.diffsem.diffsem_link import DiffSemLink
from learning.diffsem.ibal import IbalLink
from learning.diffsem.plain import PlainLink
from learning.diffsem.settings import (
    CONDITIONINGS,
    DiffSemSettings,
    IbalSettings,
    LinkSettings,
    SettingsError,
)

__all__ = [
    "CONDITIONINGS",
    "LINKS",
    "AirPass",
    "DiffSemLink",
    "DiffSemSettings",
    "IbalLink",
    "IbalSettings",
    "Link",
    "LinkSettings",
    "PlainLink",
    "SettingsError",
    "air_pass",
    "link_accuracy",
    "make_link",
]

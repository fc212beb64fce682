"""Privacy figures and the privacy-utility report.

* :func:`compose_groups` forms mixture groups of ``K`` samples whose labels are all
  identical, random, or all distinct (SIMix's label-aware grouping vs. its baselines).
* :func:`observe_groups` passes those groups through an observation process: the ideal
  weighted sum, one over-the-air slot as the server sees it
  (:func:`phy.ota_model.ota_mixture`, Rayleigh fading, MMSE power control, noise at a
  given SNR), or the same slot as a passive eavesdropper elsewhere demodulates it
  (:mod:`phy.eavesdropper`: users pre-compensated for an independent legitimate channel,
  the eavesdropper's own fading, composite-gain equalisation, its own SNR, slots it
  would miss redrawn), with the one-hot labels sent alongside the payload and mixed by
  the air.
* :func:`privacy_figures` fits attacks on auxiliary observations and scores them on the
  victims' observations — reusable on what an eavesdropper recorded in a real run.
* :func:`grouped_privacy_figures` does all of it per grouping scheme.
* :func:`privacy_utility_report` / :func:`plot_privacy_utility` put the legitimate task
  accuracy next to each attack's success and its chance level (dict and PNG).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learning.attacks import GroupTruth, Observation, get_attack
from learning.attacks.base import success_figures
from learning.data import Dataset
from learning.figures import save_figure
from learning.framing import label_tail, read_label
from learning.mixup import MixingPolicy, make_policy
from phy.channel import make_channel_model
from phy.eavesdropper import (
    eavesdropper_gains,
    eavesdropper_mixture,
    preamble_detected,
    subcarrier_noise_var,
)
from phy.ota_model import ota_mixture
from phy.rng import RngLike, make_rng, spawn, torch_generator
from phy.slot_model import SLOT_TIME_BASES, receiver_gains

GROUP_SCHEMES = ("identical", "random", "distinct")
CHANNELS = ("ideal", "ota", "eavesdropper")
#: eavesdropper channel: redraws of the channels of a group the eavesdropper would miss
MAX_REDRAWS = 100


def compose_groups(
    labels: np.ndarray,
    group_size: int,
    n_groups: int,
    scheme: str,
    n_classes: int,
    rng: RngLike = None,
) -> np.ndarray:
    """Draw ``n_groups`` groups of ``group_size`` distinct sample indices.

    Args:
        labels: ``(N,)`` int labels of the pool.
        group_size: ``K >= 1``.
        n_groups: number of groups ``B >= 1``.
        scheme: ``"identical"`` (all K labels equal; class uniform among classes with at
            least K samples), ``"random"`` (K distinct samples uniformly), ``"distinct"``
            (K different classes chosen uniformly, one random sample of each).
        n_classes: number of classes.
    Returns:
        ``(K, B)`` int64 indices into the pool.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or y.dtype.kind not in "iu" or y.size == 0:
        raise ValueError("labels must be a non-empty 1-D integer array")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    if group_size < 1 or n_groups < 1:
        raise ValueError(f"group_size and n_groups must be >= 1, got {group_size}, {n_groups}")
    if scheme not in GROUP_SCHEMES:
        raise ValueError(f"unknown group scheme {scheme!r}; allowed: {GROUP_SCHEMES}")
    gen = make_rng(rng)
    k = group_size
    members = [np.flatnonzero(y == c) for c in range(n_classes)]
    sizes = np.array([len(m) for m in members])
    out = np.empty((k, n_groups), dtype=np.int64)
    if scheme == "identical":
        eligible = np.flatnonzero(sizes >= k)
        if eligible.size == 0:
            raise ValueError(f"no class has {k} samples for label-identical groups")
        cls = gen.choice(eligible, size=n_groups)
        for c in np.unique(cls):
            cols = np.flatnonzero(cls == c)
            pos = np.argsort(gen.random((cols.size, sizes[c])), axis=1)[:, :k]
            out[:, cols] = members[c][pos].T
    elif scheme == "random":
        if y.size < k:
            raise ValueError(f"pool of {y.size} samples is smaller than the group size {k}")
        out[:] = gen.integers(0, y.size, size=(k, n_groups))
        while True:  # redraw groups with a repeated sample
            srt = np.sort(out, axis=0)
            bad = np.flatnonzero(np.any(srt[1:] == srt[:-1], axis=0))
            if bad.size == 0:
                break
            out[:, bad] = gen.integers(0, y.size, size=(k, bad.size))
    else:
        present = np.flatnonzero(sizes > 0)
        if present.size < k:
            raise ValueError(f"only {present.size} classes present for {k} distinct labels")
        order = np.argsort(gen.random((n_groups, present.size)), axis=1)[:, :k]
        cls = present[order].T  # (K, B)
        pick = np.floor(gen.random((k, n_groups)) * sizes[cls]).astype(np.int64)
        for c in present:
            mask = cls == c
            out[mask] = members[c][pick[mask]]
    return out


def group_truth(images: np.ndarray, labels: np.ndarray, idx: np.ndarray, n_classes: int):
    """The :class:`GroupTruth` of groups ``idx`` ``(K, B)`` over a pool of images
    ``(N, C, H, W)`` and labels ``(N,)``."""
    return GroupTruth(np.asarray(images)[idx], np.asarray(labels)[idx], n_classes)


def observe_groups(
    payloads: np.ndarray,
    labels: np.ndarray,
    idx: np.ndarray,
    n_classes: int,
    channel: str = "ota",
    snr_db: float = 20.0,
    mixing: MixingPolicy | str = "equal",
    send_label: bool = True,
    fading: str = "rayleigh",
    policy: str = "mmse",
    weights_known: bool = True,
    eavesdropper_snr_db: float | None = None,
    time_base: str = "ideal",
    rng: RngLike = None,
) -> Observation:
    """What an attacker sees when groups ``idx`` transmit together.

    Args:
        payloads: ``(N, D)`` per-sample payloads (unit power per complex symbol).
        labels: ``(N,)`` int labels.
        idx: ``(K, B)`` groups (see :func:`compose_groups`).
        n_classes: number of classes.
        channel: ``"ideal"`` (exact weighted sum), ``"ota"`` (what the server gets: one
            :func:`phy.ota_model.ota_mixture` slot per group: i.i.d. ``fading`` gains per
            group, ``policy`` power control with unit power limits, noise variance
            :func:`phy.link_budget.subcarrier_noise_var` ``(snr_db)`` as in a run) or
            ``"eavesdropper"`` (what a passive eavesdropper demodulates, see
            :func:`observe_eavesdropper`).
        mixing: the mixing policy (:mod:`learning.mixup`, or its registered name) that
            draws each group's target weights, as the runtime draws each slot's (pass
            the run's own policy so the attacker's slots match it).
        send_label: labels travel with the payload as the label tail of
            :mod:`learning.framing` (amplitude ``sqrt(C_pad/2)``), are mixed by the air,
            and are read back as the server reads them (rescaled, clipped at 0,
            normalised: :func:`learning.framing.read_label`).
        weights_known: record the mixing weights in the observation.
        eavesdropper_snr_db: the eavesdropper's SNR (``channel="eavesdropper"``;
            default ``snr_db``).
        time_base: the closed loop's time base (``channel.time_base``), whose slot the
            ``"ota"`` channel models (:mod:`phy.slot_model`): on ``"stream"`` and
            ``"tdd"`` power control is planned on the probe's gain estimates and users
            whose acquisition burst is not detected stay silent; ``"ideal"`` (the
            cyclic loop) plans on the true gains.
    Returns:
        :class:`Observation` with payload ``(B, D)``, mixed label ``(B, n_classes)`` if
        ``send_label``, group size K.
    """
    x = np.asarray(payloads, dtype=np.float32)
    y = np.asarray(labels)
    idx = np.asarray(idx)
    if x.ndim != 2 or y.shape != (x.shape[0],) or not np.all(np.isfinite(x)):
        raise ValueError("payloads must be finite (N, D) and labels (N,)")
    if idx.ndim != 2 or idx.min() < 0 or idx.max() >= x.shape[0]:
        raise ValueError(f"idx must be (K, B) indices into {x.shape[0]} samples")
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; allowed: {CHANNELS}")
    if time_base not in SLOT_TIME_BASES:
        raise ValueError(f"unknown time base {time_base!r}; allowed: {SLOT_TIME_BASES}")
    if not np.isfinite(snr_db):
        raise ValueError(f"snr_db must be finite, got {snr_db}")
    k, b = idx.shape
    d = x.shape[1]
    g_w, g_h, g_noise, g_csi = spawn(rng, 4)
    policy_w = make_policy(mixing) if isinstance(mixing, str) else mixing
    w = policy_w.draw_groups(k, b, g_w)  # (K, B)
    sent = x[idx]  # (K, B, D)
    if send_label:  # framed as a user frames it: tail at label_tail_amplitude
        sent = np.concatenate([sent, label_tail(y[idx], n_classes)], axis=2)
    if sent.shape[2] % 2:
        sent = np.concatenate([sent, np.zeros((k, b, 1), np.float32)], axis=2)
    if channel == "eavesdropper":
        return observe_eavesdropper(
            x[idx],
            y[idx] if send_label else None,
            w,
            n_classes,
            snr_db=snr_db,
            eavesdropper_snr_db=snr_db if eavesdropper_snr_db is None else eavesdropper_snr_db,
            fading=fading,
            policy=policy,
            weights_known=weights_known,
            rng=g_h,
        )
    if channel == "ideal":
        est = np.einsum("kb,kbd->bd", w, sent)
    else:
        h = make_channel_model(fading).generate((b, k), g_h)
        noise_var = subcarrier_noise_var(snr_db)
        with torch.no_grad():
            est_t, _ = ota_mixture(
                torch.from_numpy(sent),
                w.T,
                h,
                noise_var,
                1.0,
                policy,
                generator=torch_generator(g_noise),
                h_known=receiver_gains(h, noise_var, time_base, rng=g_csi),
            )
        est = est_t.numpy()
    return Observation(
        payload=est[:, :d],
        group_size=k,
        mixed_label=read_label(est[:, d:], n_classes).numpy() if send_label else None,
        weights=w if weights_known else None,
    )


def observe_eavesdropper(
    payloads: np.ndarray,
    labels: np.ndarray | None,
    weights: np.ndarray,
    n_classes: int,
    snr_db: float,
    eavesdropper_snr_db: float,
    fading: str = "rayleigh",
    policy: str = "mmse",
    weights_known: bool = False,
    rng: RngLike = None,
) -> Observation:
    """What a passive eavesdropper demodulates from groups sending ``payloads``
    (``(K, B, D)``, D even) and ``labels`` (``(K, B)`` ints, or None when labels stay
    off the air) with mixing ``weights`` (``(K, B)``), per :mod:`phy.eavesdropper`.

    Per group: legitimate channels and the eavesdropper's own (independent, ``fading``),
    power control ``policy`` for the legitimate receiver at ``snr_db``, the users'
    effective gains at the eavesdropper, composite-gain equalisation at
    ``eavesdropper_snr_db``. Each sample's reals are laid out as in a real slot
    (payload, then the label tail of :mod:`learning.framing`, padded to even) and
    packed into symbols as the waveform packs them. A group whose preamble the
    eavesdropper would not detect gets new channel draws (up to :data:`MAX_REDRAWS`):
    the attacker is scored on detected frames only, so it trains on that conditional
    distribution. The observation's mixed label is the raw tail (not clipped or
    normalised). The attacker knows these statistics, never a slot's draws."""
    x = np.asarray(payloads, float)
    k, b, d = x.shape
    w = np.asarray(weights, float)
    if w.shape != (k, b):
        raise ValueError(f"weights must have shape ({k}, {b}), got {w.shape}")
    parts = [x]
    if labels is not None:
        parts.append(label_tail(labels, n_classes))
    if sum(p.shape[2] for p in parts) % 2:
        parts.append(np.zeros((k, b, 1)))
    sent = np.concatenate(parts, axis=2)
    legit_noise = subcarrier_noise_var(snr_db)
    eve_noise = subcarrier_noise_var(eavesdropper_snr_db)
    model = make_channel_model(fading)
    g_draw, g_policy, g_mix = spawn(rng, 3)
    gains = np.empty((b, k), complex)
    todo = np.arange(b)
    for _ in range(MAX_REDRAWS):
        h = model.generate((todo.size, k), g_draw)
        h_eve = model.generate((todo.size, k), g_draw)
        gains[todo] = eavesdropper_gains(h, h_eve, w.T[todo], legit_noise, policy, rng=g_policy)
        todo = todo[~preamble_detected(gains[todo].sum(axis=1), eve_noise)]
        if todo.size == 0:
            break
    est = eavesdropper_mixture(sent, gains, eve_noise, rng=g_mix)
    return Observation(
        payload=est[:, :d],
        group_size=k,
        mixed_label=None
        if labels is None
        else read_label(est[:, d:], n_classes, soft=False).numpy(),
        weights=w if weights_known else None,
    )


def privacy_figures(
    aux_observations: Observation,
    aux_truth: GroupTruth,
    victim_observations: Observation,
    victim_truth: GroupTruth,
    attacks: Sequence[str] = ("model_inversion", "label_inference"),
    attack_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    rng: RngLike = None,
) -> dict[str, dict[str, float]]:
    """Fit each attack (by registry name) on the auxiliary observations and score it on
    the victims' observations. Returns ``{attack: figures}`` (see each attack's
    ``evaluate``; every success figure has a ``_chance`` companion)."""
    out: dict[str, dict[str, float]] = {}
    gens = spawn(rng, 2 * len(attacks))
    for i, name in enumerate(attacks):
        kwargs = dict((attack_kwargs or {}).get(name, {}))
        kwargs.setdefault("rng", gens[2 * i])
        attack = get_attack(name, **kwargs).fit(aux_observations, aux_truth)
        out[name] = attack.evaluate(victim_observations, victim_truth, rng=gens[2 * i + 1])
    return out


def _images_labels(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    return ds.x.numpy(), ds.y.numpy()


def grouped_privacy_figures(
    aux: Dataset,
    victims: Dataset,
    encode: Callable[[torch.Tensor], torch.Tensor],
    group_size: int = 4,
    schemes: Sequence[str] = GROUP_SCHEMES,
    n_aux_groups: int = 20000,
    n_victim_groups: int = 1000,
    attacks: Sequence[str] = ("model_inversion", "label_inference"),
    attack_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    rng: RngLike = None,
    **observe_kwargs: Any,
) -> dict[str, dict[str, dict[str, float]]]:
    """Attack success per grouping scheme.

    For each scheme, groups are formed on the auxiliary set (attacker's training data)
    and on the victims' set the same way, passed through :func:`observe_groups` with
    ``observe_kwargs`` (channel, snr_db, mixing, ...), and every attack is fitted and
    scored with :func:`privacy_figures`.

    Args:
        aux, victims: disjoint data sets.
        encode: images ``(N, C, H, W)`` -> payloads ``(N, D)`` (an encoder or
            ``RawCodec.encode``); evaluated without gradients.
    Returns:
        ``{scheme: {attack: figures}}``.
    """
    if aux.input_shape != victims.input_shape or aux.n_classes != victims.n_classes:
        raise ValueError("aux and victims must share input shape and classes")
    with torch.no_grad():
        p_aux = encode(aux.x).detach().numpy()
        p_vic = encode(victims.x).detach().numpy()
    x_aux, y_aux = _images_labels(aux)
    x_vic, y_vic = _images_labels(victims)
    c = aux.n_classes
    result: dict[str, dict[str, dict[str, float]]] = {}
    for scheme, gen in zip(schemes, spawn(rng, len(schemes)), strict=True):
        g = spawn(gen, 5)
        i_aux = compose_groups(y_aux, group_size, n_aux_groups, scheme, c, g[0])
        i_vic = compose_groups(y_vic, group_size, n_victim_groups, scheme, c, g[1])
        o_aux = observe_groups(p_aux, y_aux, i_aux, c, rng=g[2], **observe_kwargs)
        o_vic = observe_groups(p_vic, y_vic, i_vic, c, rng=g[3], **observe_kwargs)
        result[scheme] = privacy_figures(
            o_aux,
            group_truth(x_aux, y_aux, i_aux, c),
            o_vic,
            group_truth(x_vic, y_vic, i_vic, c),
            attacks,
            attack_kwargs,
            g[4],
        )
    return result


def privacy_utility_report(
    legitimate_accuracy: float,
    figures: Mapping[str, Mapping[str, Mapping[str, float]]],
) -> dict[str, Any]:
    """Legitimate task accuracy next to each attack's success.

    Args:
        legitimate_accuracy: test accuracy of the legitimate model, in [0, 1].
        figures: ``{setting: {attack: figures}}`` as returned by
            :func:`grouped_privacy_figures` (or ``{setting: privacy_figures(...)}``).
    Returns:
        ``{"legitimate_accuracy": a, "rows": [{"setting", "attack", "metric", "success",
        "chance", "advantage" (success - chance), "utility_minus_success"}]}``.
    """
    a = float(legitimate_accuracy)
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"legitimate_accuracy must be in [0, 1], got {legitimate_accuracy}")
    rows = []
    for setting, per_attack in figures.items():
        for attack, figs in per_attack.items():
            for metric in success_figures().get(attack, ()):
                if metric not in figs or f"{metric}_chance" not in figs:
                    raise ValueError(f"{setting}/{attack} lacks {metric} or its chance level")
                s, ch = float(figs[metric]), float(figs[f"{metric}_chance"])
                rows.append(
                    {
                        "setting": str(setting),
                        "attack": attack,
                        "metric": metric,
                        "success": s,
                        "chance": ch,
                        "advantage": s - ch,
                        "utility_minus_success": a - s,
                    }
                )
    return {"legitimate_accuracy": a, "rows": rows}


def plot_privacy_utility(report: Mapping[str, Any], path: str | Path) -> Path:
    """Bar plot of each attack's success (with its chance level as a black tick) and the
    legitimate accuracy as a dashed line; written as PNG to ``path`` (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    if not rows:
        raise ValueError("report has no attack rows to plot")
    names = [f"{r['setting']}\n{r['attack']}\n{r['metric']}" for r in rows]
    pos = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows)), 4.5))
    ax.bar(pos, [r["success"] for r in rows], color="tab:red", alpha=0.7, label="attack success")
    ax.scatter(pos, [r["chance"] for r in rows], marker="_", s=600, color="k", label="chance")
    ax.axhline(report["legitimate_accuracy"], ls="--", color="tab:blue", label="legitimate acc.")
    ax.set_xticks(pos, names, fontsize=7)
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("accuracy (fraction)")
    ax.set_title("privacy-utility report")
    ax.legend(fontsize=8, loc="upper left", ncol=3)
    return save_figure(fig, path)

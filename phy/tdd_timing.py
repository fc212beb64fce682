"""Per-pulse buffer timing on the TDD engine with free-running sample clocks.

On the ``tdd`` time base every radio starts its armed buffer on the first edge of its
own sample clock after the shared sync pulse (:mod:`phy.medium`, the ``axi_tdd``
engine). The start therefore lags the pulse by a fraction of a sample that depends on
the clock's phase at that pulse, the *lag* ``L(p) = frac(alpha - p B)`` of pulse ``p``,
in ``[0, 1)`` samples, where ``B`` is the number of the radio's own samples in one sync
period (``T fs (1 + ppm 1e-6)``) and ``alpha`` its clock phase. With free-running
oscillators each radio's lag walks by ``-frac(B)`` per pulse and wraps, so user ``k``'s
buffer lands at receiver capture index::

    d_k(p) = C_k + L_k(p) - L_r(p)

(``C_k`` constant: propagation and engine delays; ``L_r`` the receiver's own lag). The
fractional part of ``d_k`` is predictable from the sample-rate offset alone
(``B_k - B_r = -T fs sro_k``), but the integer part jumps by one sample whenever one of
the two lags wraps; a frame placed one sample off turns every subcarrier by up to
``2 pi 26 / 64`` rad, which the receiver cannot undo in the superposition.

:class:`PulseClocks` finds the receiver's lag walk (``alpha_r``, ``frac(B_r)``) and each
user's constant from the delays measured on past pulses (acquisition, probes): under
the right hypothesis every user's ``u_k(p) = d_k(p) + L_r(p)`` lies within one sample
(``u_k - C_k = L_k`` in ``[0, 1)``), under a wrong one the wraps show as spreads above
one sample. A grid over the two receiver parameters keeps the hypotheses consistent
with every observation (set membership, tolerance for the delay noise). A delay is
predicted for a later pulse under every such hypothesis; it is *safe* when they agree
and the predicted lag lies within the range already observed for that user (else the
wrap could fall either way). The receiver then picks the first safe pulse for the
payload. The receiver's lag also enters the phase: capture index ``i`` of pulse ``p``
is at ``p T fs + L_r(p) + i`` samples of absolute time (:meth:`PulseClocks.receiver_lag`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import numpy as np

__all__ = ["PulseClocks"]

#: delay observations kept per user (the span the receiver's lag walk is fitted over)
KEEP = 48
#: percentile of the kept hypotheses' margins reported (a few outlying hypotheses at the
#: tolerance's edge would otherwise make every pulse look unsure)
MARGIN_PERCENTILE = 10
#: a prediction's margin is its distance from the wrap less this many standard
#: deviations of the user's lag phase (its delay scatter over the AVERAGE lags it is
#: the mean of; held to 1.5 scatters, a weak user at 10 dB was never sure, no pulse
#: was sure for the slot, and the payload went on an arbitrary one)
NOISE_MARGINS = 3.0
#: latest observations of a user averaged into its lag walk's phase
AVERAGE = 16
#: grid of the receiver's lag walk: steps of frac(B_r) and of alpha_r
B_STEPS, ALPHA_STEPS = 400, 50
#: best grid points around which the grid is refined ten times
REFINE = 20
#: pulses back from the latest observation the coarse grid scores
COARSE_SPAN = 24
#: kept walks of the previous fit refined again
WARM_SEEDS = 10
#: strides of observed pulses whose aliases of the receiver's walk are refined too
ALIAS_STRIDES = (2, 3)
#: samples of spread above one sample a consistent hypothesis may show (delay noise)
TOLERANCE = 0.12
#: summed lag spread (samples, over users) within which hypotheses count as tightest
TIGHT = 0.5
#: a user's lags may spread this many times its delay noise beyond one sample (a weak
#: user's probe delays scatter by tenths of a sample at 10 dB: held to TOLERANCE they
#: ruled the true walk out), and users noisier than POOL_NOISE stay out of the pooled
#: range (their lags say little about the common constant)
NOISE_ALLOWANCE, POOL_NOISE = 1.0, 0.08
#: standing delays (:meth:`PulseClocks._standing`): every drift below STANDING_DRIFT
#: samples per pulse and each quiet user's last STANDING_OBS or more delays within
#: STANDING_SPREAD (a shared reference locked at the nominal rate: no lag walks)
STANDING_OBS, STANDING_SPREAD, STANDING_DRIFT = 8, 0.5, 1e-3
#: samples by which the users' constants may differ (propagation: 0.05 sample is 15 m at
#: 1 MS/s; the engines' fixed delays are equal for equal firmware)
SPREAD = 0.05


class PulseClocks:
    """Sample-clock lag model of the radios on one TDD sync line.

    Args:
        period_samples: nominal samples per sync period (``T fs``).

    Observations: :meth:`observe` (capture index where user ``uid``'s buffer index 0
    landed on pulse ``pulse``); :meth:`fit` with each user's per-pulse drift
    ``v_k = -T fs sro_k`` (receiver samples, :class:`radio.time_base.LinkTrack`).
    """

    def __init__(self, period_samples: float) -> None:
        if not (math.isfinite(period_samples) and period_samples > 0):
            raise ValueError(f"period_samples must be finite and > 0, got {period_samples}")
        self.period = float(period_samples)
        self.obs: dict[Hashable, list[tuple[int, float]]] = {}
        self.noise: dict[Hashable, list[float]] = {}  # per observation, samples
        self.drift: dict[Hashable, float] = {}
        # consistent hypotheses (frac(B_r), alpha_r); before a fit: a constant lag 0
        self.b = np.zeros(1)
        self.alpha = np.zeros(1)
        self.lo = np.zeros(1)  # range of u = d + L_r over all users, per hypothesis
        self.hi = np.ones(1)
        self.fitted = False
        self.best = np.ones(1, bool)  # kept hypotheses with the tightest lag spreads
        self.spread = np.zeros(1)
        self.standing = False  # the delays stand still (set by fit, see _standing)

    def observe(self, uid: Hashable, pulse: int, delay: float, noise: float = 0.0) -> None:
        """User ``uid``'s buffer index 0 landed at capture index ``delay`` on ``pulse``,
        measured with a standard deviation of ``noise`` samples."""
        if not math.isfinite(delay):
            return
        rows = self.obs.setdefault(uid, [])
        rows.append((int(pulse), float(delay)))
        del rows[:-KEEP]
        noises = self.noise.setdefault(uid, [])
        noises.append(float(noise) if math.isfinite(noise) else 1.0)
        del noises[: len(noises) - len(rows)]

    def forget(self, uid: Hashable) -> None:
        """Drop ``uid``'s observations (its timing changed: re-acquired)."""
        self.obs.pop(uid, None)
        self.noise.pop(uid, None)

    def _noise(self, uid: Hashable) -> float:
        """``uid``'s delay noise: the rms of its kept observations' (samples)."""
        noises = self.noise.get(uid) or [0.0]
        return float(np.sqrt(np.mean(np.square(noises))))

    def fit(self, drift: Mapping[Hashable, float]) -> None:
        """Keep the receiver lag walks consistent with every observation.

        ``drift``: per user, ``v_k = frac(B_k) - frac(B_r)`` (receiver samples per pulse,
        ``-T fs sro_k``)."""
        self.drift = {u: float(v) for u, v in drift.items()}
        self.standing = self._standing()
        users = [u for u in self.obs if u in self.drift]
        if not users:
            return
        # the grid is over frac(B_r) and the receiver's lag on the latest observed pulse
        # (not alpha_r, its lag on pulse 0: a step of frac(B_r) turns that by a hundred
        # steps a hundred pulses on, and the grid missed the true walk)
        ref = max(p for u in users for p, _ in self.obs[u])
        b = np.arange(B_STEPS) / B_STEPS
        a = np.arange(ALPHA_STEPS) / ALPHA_STEPS
        bb, rr = (g.ravel() for g in np.meshgrid(b, a, indexing="ij"))
        # the coarse grid scores the recent pulses only: over a long span its steps turn
        # the lags too far to land near the true walk (the fine grid scores them all)
        excess = self._excess(users, bb, np.mod(rr + ref * bb, 1.0), since=ref - COARSE_SPAN)
        # a ten times finer grid around the best, and around points spread over all
        # those that tie with them (a few recent pulses may fit a range of walks: the
        # best alone left the others out, and with them the doubt)
        order = np.argsort(excess)
        tied = np.flatnonzero(excess <= excess[order[0]] + TOLERANCE)
        spread = tied[np.linspace(0, tied.size - 1, min(REFINE // 2, tied.size)).astype(int)]
        top = np.unique(np.concatenate([order[: REFINE // 2], spread]))
        # and around their aliases: pulses observed s apart only (a probe every slot of s
        # pulses) cannot tell frac(B_r) from frac(B_r) + j / s (with the same lag on the
        # latest pulse); refining one of them alone made predictions on the pulses in
        # between sure and a sample off
        alias = np.concatenate([[0.0], *(np.arange(1, s) / s for s in ALIAS_STRIDES)])
        seeds_b = np.mod(bb[top][:, None] + alias[None, :], 1.0).ravel()
        seeds_r = np.repeat(rr[top], alias.size)
        if self.fitted:  # and around the walks kept so far: the true one, once found,
            # stays (the coarse grid alone lost it when its recent pulses tied)
            kept = np.linspace(0, self.b.size - 1, min(WARM_SEEDS, self.b.size)).astype(int)
            seeds_b = np.concatenate([seeds_b, self.b[kept]])
            seeds_r = np.concatenate([seeds_r, np.mod(self.alpha[kept] - ref * self.b[kept], 1.0)])
        fb = np.arange(-5, 6) / (10 * B_STEPS)
        fa = np.arange(-5, 6) / (10 * ALPHA_STEPS)
        db, da = (g.ravel() for g in np.meshgrid(fb, fa, indexing="ij"))
        bb = np.mod(seeds_b[:, None] + db[None, :], 1.0).ravel()
        rr = np.mod(seeds_r[:, None] + da[None, :], 1.0).ravel()
        aa = np.mod(rr + ref * bb, 1.0)
        excess = self._excess(users, bb, aa)
        keep = excess <= float(excess.min()) + TOLERANCE
        bb, aa = bb[keep], aa[keep]
        self._excess(users, bb, aa)  # the kept hypotheses' ranges and spreads
        self.best = self.spread <= float(self.spread.min()) + TIGHT
        self.b, self.alpha = bb, aa
        self.fitted = True

    def _excess(
        self, users: list[Hashable], bb: np.ndarray, aa: np.ndarray, since: float = -math.inf
    ) -> np.ndarray:
        """How far the hypotheses ``(frac(B_r), alpha_r)`` (each ``(H,)``) are from
        consistent (samples, ``(H,)``): each user's lags and all users' lags together
        (one constant: equal engine delays, lab distances) must span at most one sample
        (plus :data:`SPREAD` pooled); the observations on pulses from ``since`` on. Sets
        :attr:`lo` / :attr:`hi`, the pooled range of ``u = d + L_r`` under each
        hypothesis."""
        excess = np.zeros(bb.size)
        spread = np.zeros(bb.size)
        lo = np.full(bb.size, np.inf)
        hi = np.full(bb.size, -np.inf)
        pooled = [u for u in users if self._noise(u) <= POOL_NOISE] or users
        for uid in users:
            pulses, delays = self._rows(uid)
            recent = pulses >= since
            if not recent.any():
                continue
            pulses, delays = pulses[recent], delays[recent]
            u = delays[None, :] + np.mod(aa[:, None] - pulses[None, :] * bb[:, None], 1.0)
            allowed = 1.0 + NOISE_ALLOWANCE * self._noise(uid)
            excess += np.maximum(np.ptp(u, axis=1) - allowed, 0.0)
            spread += np.ptp(u, axis=1)
            if uid in pooled:
                lo, hi = np.minimum(lo, u.min(axis=1)), np.maximum(hi, u.max(axis=1))
        excess += len(pooled) * np.maximum(hi - lo - 1.0 - SPREAD, 0.0)
        self.lo, self.hi, self.spread = lo, hi, spread
        return excess

    def _standing(self) -> bool:
        """The delays stand still: every user's drift is below :data:`STANDING_DRIFT`
        per pulse and every quiet user's (noise within :data:`POOL_NOISE`) last
        :data:`STANDING_OBS` or more delays lie 80 % within :data:`STANDING_SPREAD`.
        Free-running clocks walk every lag by ``frac(B)`` per pulse, so some user's
        delay jumps by a sample within a few pulses; locked clocks at the nominal rate
        never do."""
        users = [u for u in self.obs if u in self.drift]
        if any(abs(self.drift[u]) > STANDING_DRIFT for u in users):
            return False
        # the users whose delays say something (a weak user's scatter by tenths of a
        # sample and now and then by a sample or two: 8 users at 10 dB)
        quiet = [u for u in users if self._noise(u) <= POOL_NOISE] or users
        for uid in quiet:
            delays = self._rows(uid)[1][-AVERAGE:]
            if delays.size < STANDING_OBS:
                return False
            if np.subtract(*np.percentile(delays, [90, 10])) > STANDING_SPREAD:
                return False
        return bool(users)

    def _rows(self, uid: Hashable) -> tuple[np.ndarray, np.ndarray]:
        rows = self.obs[uid]
        return np.array([r[0] for r in rows], float), np.array([r[1] for r in rows])

    def _lags(self, pulse: int) -> np.ndarray:
        """The receiver's lag on ``pulse`` under every kept hypothesis, ``(H,)``."""
        return np.mod(self.alpha - pulse * self.b, 1.0)

    def receiver_lag(self, pulse: int) -> float:
        """The receiver's lag on ``pulse`` (samples): the circular median under the
        tightest kept hypotheses, as :meth:`predict`. (Not the common part of the users'
        delay errors on a probed pulse: that is as much the pooled constant's error, and
        taken as the receiver's it put probes' phases tenths of a sample apart.)"""
        lags = self._lags(pulse)[self.best]
        ref = np.angle(np.mean(np.exp(2j * np.pi * lags))) / (2 * np.pi)
        return float(np.mod(ref + np.median(np.mod(lags - ref + 0.5, 1.0) - 0.5), 1.0))

    def predict(self, uid: Hashable, pulse: int) -> tuple[float, float]:
        """Capture index where ``uid``'s buffer index 0 lands on ``pulse`` (the median
        under the kept hypotheses that make the users' lags tightest, within
        :data:`TIGHT`: the true walk adds no spread, a slightly wrong one does; a shared
        reference's standing lags pick it out) and the margin of that prediction: the distance
        (samples) of the user's predicted lag from its wrap (the
        :data:`MARGIN_PERCENTILE` percentile over the kept hypotheses; 0 before a walk was
        fitted), less :data:`NOISE_MARGINS` times the noise of its lag phase. A margin above
        zero makes the integer sure."""
        rows = self.obs.get(uid)
        if not rows:
            raise KeyError(f"no delay observed for user {uid!r}")
        v = self.drift.get(uid, 0.0)
        pulses, delays = self._rows(uid)
        if self.fitted and self.standing:
            # nothing walks: every walk the grid keeps fits, and a user whose delay sits
            # near the pooled range's edge was never sure (a shared reference at 10 dB
            # put one a sample off on most slots); its own delays say where it lands
            recent = delays[-AVERAGE:]
            chosen = float(np.median(recent))
            spread = float(np.subtract(*np.percentile(recent, [90, 10])))
            noise = self._noise(uid) / math.sqrt(recent.size)
            return chosen, max(0.5 - spread / 2 - NOISE_MARGINS * noise, 0.0)
        if uid not in self.drift or not self.fitted:
            return float(delays[-1] - (pulse - pulses[-1]) * v), 0.0
        # u = d + L_r = C + L_k, with C = (lo + hi - 1) / 2 from the pooled range; the
        # user's lag walk is frac(phi - p B_k): phi from its last observations (circular
        # mean: the delay noise averages down)
        recent, at = delays[-AVERAGE:], pulses[-AVERAGE:]
        u = recent[None, :] + np.mod(self.alpha[:, None] - at[None, :] * self.b[:, None], 1.0)
        bk = (self.b + v)[:, None]
        turns = np.exp(2j * np.pi * (u + at[None, :] * bk))
        phi = np.angle(np.mean(turns, axis=1)) / (2 * np.pi)
        # the user's delay noise (circular spread about phi): a margin must exceed it
        scatter = np.mod(u + at[None, :] * bk - phi[:, None] + 0.5, 1.0) - 0.5
        noise = float(np.median(np.sqrt(np.mean(scatter**2, axis=1))))
        c = (self.lo + self.hi - 1.0) / 2
        lag = np.mod(phi - pulse * bk[:, 0] - c, 1.0)
        d = c + lag - self._lags(pulse)
        # hypotheses may disagree on the receiver's own wrap: a whole sample common to
        # every user (the frame moves as one: the receiver finds it, see the module doc)
        margin = float(np.percentile(np.minimum(lag, 1.0 - lag), MARGIN_PERCENTILE))
        # the tightest hypotheses must agree on the delay itself: each may put its lag
        # well clear of the wrap while they disagree on the integer (an aliased walk)
        best = d[self.best]
        chosen = float(np.median(best))
        margin = min(margin, 0.5 - float(np.max(np.abs(best - chosen))))
        # the user's phase is the mean of its recent lags: its noise is theirs / sqrt(n)
        return chosen, max(margin - NOISE_MARGINS * noise / math.sqrt(recent.size), 0.0)

"""Analog OFDM payload waveform: real vectors <-> complex baseband frames.

Frame layout (all blocks are defined in the frequency domain on ``n_fft`` bins and
rendered by one IFFT each, so any block can be delayed by a fractional number of
samples with a per-subcarrier phase ramp, exactly, inside its cyclic prefix)::

    | short preamble            | long preamble              | data symbols ...        |
    | n_short_blocks x n_fft    | long_cp + n_long x n_fft   | (cp_len + n_fft) each   |
    | period short_period (CFO) | Zadoff-Chu on used bins    | data + comb pilots      |

* Used bins are ``-n_used_half..-1, 1..n_used_half`` (DC and band edges null).
* The short preamble puts energy only on bins that are multiples of
  ``n_fft // short_period`` so it repeats every ``short_period`` samples: a
  CFO-insensitive detector (Schmidl-Cox) and a coarse CFO estimate with range
  ``+-fs / (2 short_period)`` (+-62.5 kHz at 1 MS/s, above the +-45.75 kHz of two
  +-25 ppm oscillators at 915 MHz).
* The long preamble is a Zadoff-Chu sequence of prime length ``2 n_used_half + 1``
  (root ``zc_root``) on the used bins with the DC entry punctured: flat spectrum, used
  for fine timing (phase slope across subcarriers), fine CFO (repetition at lag
  ``n_fft``) and the channel.
* Data symbols carry two reals per data subcarrier: ``X = (x[2i] + j x[2i+1]) / sqrt 2``,
  so unit-power reals give unit-power symbols; comb pilots (``pilot_bins``) carry
  ``+1``.

Scaling: every block is rendered with ``c = amplitude * sqrt(n_fft / n_used)`` times an
orthonormal IFFT, so a block whose used bins have unit power has time-domain RMS
``amplitude`` (default 0.25 = -12 dBFS, about 14.5 dB of headroom below the +-1 DAC
full scale per I/Q rail; OFDM I/Q samples are near Gaussian so the clipping
probability per sample at full power is about 1e-8). :func:`papr_margin_db` reports the
actual margin of a frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Block",
    "OfdmConfig",
    "demodulate",
    "demodulate_frames",
    "frame_blocks",
    "frame_length",
    "modulate",
    "papr_margin_db",
    "phasors",
    "payload_to_symbols",
    "render_blocks",
    "symbols_needed",
    "symbols_to_payload",
    "zadoff_chu",
]


def zadoff_chu(root: int, length: int) -> np.ndarray:
    """Zadoff-Chu sequence ``exp(-j pi u n (n + 1) / N)``, complex128 ``(length,)``.

    ``length`` must be odd and ``root`` coprime with it (constant amplitude, ideal
    periodic autocorrelation)."""
    if length < 3 or length % 2 == 0:
        raise ValueError(f"ZC length must be odd and >= 3, got {length}")
    if math.gcd(int(root), int(length)) != 1:
        raise ValueError(f"ZC root {root} must be coprime with length {length}")
    n = np.arange(length)
    return np.exp(-1j * np.pi * root * n * (n + 1) / length)


def phasors(theta: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``exp(1j * theta[..., None] * k)`` for integer ``k``: complex ``(..., k.size)``.

    Built from two short tables of exponentials (``k = lo + s q + r``, ``s ~ sqrt(span)``)
    and one product per element instead of one complex exponential per element (these
    phase ramps dominate a vectorised receiver otherwise); error ~1e-15."""
    t = np.asarray(theta, float)[..., None]
    k = np.asarray(k, np.int64)
    if k.ndim != 1 or k.size == 0:
        raise ValueError("k must be a non-empty 1-D integer array")
    lo = int(k.min())
    span = int(k.max()) - lo + 1
    s = math.isqrt(span - 1) + 1
    q = -(-span // s)
    coarse = np.exp(1j * t * (lo + s * np.arange(q)))
    fine = np.exp(1j * t * np.arange(s))
    table = (coarse[..., :, None] * fine[..., None, :]).reshape(t.shape[:-1] + (q * s,))
    return table[..., k - lo]


@dataclass(frozen=True)
class OfdmConfig:
    """Sizes of the analog OFDM frame (validated on creation; all lengths in samples).

    Attributes:
        n_fft: FFT size.
        cp_len: cyclic prefix of data symbols (must exceed the residual timing error).
        n_used_half: used bins are ``+-1..+-n_used_half``; ``2 n_used_half + 1`` must be
            prime (it is the ZC length).
        pilot_bins: signed comb-pilot bins (subset of the used bins).
        short_period: period of the short preamble (divides ``n_fft``).
        n_short_blocks: short preamble length in ``n_fft`` blocks.
        long_cp: cyclic prefix before the long preamble.
        n_long: repetitions of the long ZC block.
        zc_root: ZC root of the frame's long preamble.
        amplitude: time-domain RMS of a unit-power block (full scale 1.0 per I/Q).
        sample_rate_hz: nominal sample rate (for Hz <-> cycles/sample conversions).
    """

    n_fft: int = 64
    cp_len: int = 16
    n_used_half: int = 26
    pilot_bins: tuple[int, ...] = (-21, -7, 7, 21)
    short_period: int = 8
    n_short_blocks: int = 2
    long_cp: int = 32
    n_long: int = 2
    zc_root: int = 25
    amplitude: float = 0.25
    sample_rate_hz: float = 1e6
    _bins: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ints = ("n_fft", "cp_len", "n_used_half", "short_period", "n_short_blocks")
        for name in ints + ("long_cp", "n_long", "zc_root"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise TypeError(f"{name} must be an int, got {value!r}")
        if self.n_fft < 8 or self.n_fft & (self.n_fft - 1):
            raise ValueError(f"n_fft must be a power of two >= 8, got {self.n_fft}")
        if not 0 <= self.cp_len < self.n_fft or not 0 <= self.long_cp <= self.n_fft:
            raise ValueError("cp_len must be in [0, n_fft) and long_cp in [0, n_fft]")
        if not 2 <= self.n_used_half < self.n_fft // 2:
            raise ValueError(f"n_used_half must be in [2, n_fft/2), got {self.n_used_half}")
        zc_len = 2 * self.n_used_half + 1
        if any(zc_len % p == 0 for p in range(2, int(math.isqrt(zc_len)) + 1)):
            raise ValueError(f"2*n_used_half+1 = {zc_len} must be prime (ZC length)")
        if not 1 <= self.zc_root < zc_len:
            raise ValueError(f"zc_root must be in [1, {zc_len}), got {self.zc_root}")
        if self.short_period < 2 or self.n_fft % self.short_period:
            raise ValueError(f"short_period must divide n_fft, got {self.short_period}")
        if self.n_fft // self.short_period > self.n_used_half:
            raise ValueError("short_period too small: no used bin on its comb")
        if self.n_short_blocks < 1 or self.n_long < 1:
            raise ValueError("n_short_blocks and n_long must be >= 1")
        if len(set(self.pilot_bins)) != len(self.pilot_bins) or any(
            b == 0 or abs(b) > self.n_used_half for b in self.pilot_bins
        ):
            raise ValueError(f"pilot_bins must be distinct non-zero used bins: {self.pilot_bins}")
        if not (np.isfinite(self.amplitude) and 0 < self.amplitude <= 1):
            raise ValueError(f"amplitude must be in (0, 1], got {self.amplitude}")
        if not (np.isfinite(self.sample_rate_hz) and self.sample_rate_hz > 0):
            raise ValueError(f"sample_rate_hz must be positive, got {self.sample_rate_hz}")

    # ---- derived layout (cached: the dataclass is frozen, the dict is not compared)
    def _cached(self, key: str, make):  # noqa: ANN001, ANN202 - tiny private helper
        if key not in self._bins:
            self._bins[key] = make()
        return self._bins[key]

    @property
    def used_bins(self) -> np.ndarray:
        """Signed used bins, int ``(2 n_used_half,)``."""
        h = self.n_used_half
        return self._cached("used", lambda: np.r_[np.arange(-h, 0), np.arange(1, h + 1)])

    @property
    def data_bins(self) -> np.ndarray:
        """Signed data bins (used minus pilots), int ``(n_data,)``."""
        return self._cached(
            "data", lambda: np.array([b for b in self.used_bins if b not in self.pilot_bins])
        )

    @property
    def n_data(self) -> int:
        """Data subcarriers per symbol."""
        return int(self.data_bins.size)

    @property
    def reals_per_symbol(self) -> int:
        """Real payload values per OFDM data symbol (two per data subcarrier)."""
        return 2 * self.n_data

    @property
    def symbol_len(self) -> int:
        """Samples per data symbol (CP included)."""
        return self.cp_len + self.n_fft

    @property
    def short_len(self) -> int:
        return self.n_short_blocks * self.n_fft

    @property
    def long_len(self) -> int:
        return self.long_cp + self.n_long * self.n_fft

    @property
    def preamble_len(self) -> int:
        """Samples of short + long preamble."""
        return self.short_len + self.long_len

    @property
    def long_start(self) -> int:
        """Offset of the first long ZC block (after its CP) from the frame start."""
        return self.short_len + self.long_cp

    @property
    def scale(self) -> float:
        """Time-domain factor ``c`` applied after the orthonormal IFFT."""
        return self.amplitude * math.sqrt(self.n_fft / self.used_bins.size)

    @property
    def subcarrier_spacing_hz(self) -> float:
        return self.sample_rate_hz / self.n_fft

    def long_sequence(self, root: int | None = None) -> np.ndarray:
        """Long-preamble values on :attr:`used_bins` (ZC, DC punctured), ``(n_used,)``."""
        root = self.zc_root if root is None else int(root)
        return self._cached(
            f"zc{root}",
            lambda: np.delete(zadoff_chu(root, 2 * self.n_used_half + 1), self.n_used_half),
        )

    @property
    def short_bins(self) -> np.ndarray:
        step = self.n_fft // self.short_period
        return np.array([b for b in self.used_bins if b % step == 0])

    def short_sequence(self) -> np.ndarray:
        """Short-preamble values on :attr:`short_bins`, scaled to unit block power."""
        n = self.short_bins.size

        def make() -> np.ndarray:
            length = n + 1 if n % 2 == 0 else n + 2
            z = zadoff_chu(1, length)[:n]
            return z * math.sqrt(self.used_bins.size / n)

        return self._cached("short", make)


@dataclass(frozen=True)
class Block:
    """One frequency-domain block: values on signed bins ``bins``; rendered as
    ``cp`` prefix samples + ``reps`` repetitions of the ``n_fft``-sample IFFT."""

    bins: np.ndarray
    values: np.ndarray
    cp: int
    reps: int = 1


def _check_payload(payload: np.ndarray) -> np.ndarray:
    x = np.asarray(payload)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"payload must be a non-empty 1-D real array, got shape {x.shape}")
    if np.iscomplexobj(x):
        raise ValueError("payload must be real (two reals are packed per complex symbol)")
    x = x.astype(float)
    if not np.all(np.isfinite(x)):
        raise ValueError("payload contains NaN or inf")
    return x


def symbols_needed(n_reals: int, config: OfdmConfig) -> int:
    """OFDM data symbols needed for ``n_reals`` payload values."""
    if isinstance(n_reals, bool) or not isinstance(n_reals, int | np.integer) or n_reals < 1:
        raise ValueError(f"n_reals must be a positive int, got {n_reals!r}")
    return -(-int(n_reals) // config.reals_per_symbol)


def frame_length(n_reals: int, config: OfdmConfig) -> int:
    """Samples in a frame carrying ``n_reals`` values (preamble + data symbols)."""
    return config.preamble_len + symbols_needed(n_reals, config) * config.symbol_len


def payload_to_symbols(payload: np.ndarray, config: OfdmConfig) -> np.ndarray:
    """Pack reals into data-subcarrier symbols, complex ``(n_symbols, n_data)``
    (zero-padded; ``X = (x[2i] + j x[2i+1]) / sqrt 2``)."""
    x = _check_payload(payload)
    n_sym = symbols_needed(x.size, config)
    padded = np.zeros(n_sym * config.reals_per_symbol)
    padded[: x.size] = x
    pairs = padded.reshape(n_sym, config.n_data, 2)
    return (pairs[..., 0] + 1j * pairs[..., 1]) / math.sqrt(2.0)


def symbols_to_payload(symbols: np.ndarray, n_reals: int, config: OfdmConfig) -> np.ndarray:
    """Exact inverse of :func:`payload_to_symbols`: float ``(n_reals,)``."""
    s = np.asarray(symbols)
    n_sym = symbols_needed(n_reals, config)
    if s.shape != (n_sym, config.n_data):
        raise ValueError(f"symbols must have shape {(n_sym, config.n_data)}, got {s.shape}")
    out = np.stack([s.real, s.imag], axis=-1).reshape(-1) * math.sqrt(2.0)
    return out[:n_reals]


def frame_blocks(payload: np.ndarray, config: OfdmConfig) -> list[Block]:
    """The blocks of the frame carrying ``payload`` (real ``(n_reals,)``): short, long,
    then one block per data symbol (data + comb pilots)."""
    symbols = payload_to_symbols(payload, config)
    blocks = [
        Block(config.short_bins, config.short_sequence(), 0, config.n_short_blocks),
        Block(config.used_bins, config.long_sequence(), config.long_cp, config.n_long),
    ]
    bins = np.r_[config.data_bins, np.array(config.pilot_bins)]
    pilots = np.ones(len(config.pilot_bins), complex)
    blocks.extend(Block(bins, np.r_[row, pilots], config.cp_len) for row in symbols)
    return blocks


def render_blocks(
    blocks: list[Block], config: OfdmConfig, delays: np.ndarray | None = None
) -> np.ndarray:
    """Time-domain samples of ``blocks``, complex128 ``(sum of block lengths,)``.

    ``delays`` (float ``(n_blocks,)``, samples, positive = later) delays each block by a
    per-subcarrier phase ramp ``exp(-j 2 pi k d / n_fft)``, i.e. a cyclic shift of its
    content inside its own cyclic prefix (exact for band-limited blocks).
    """
    n = config.n_fft
    if delays is None:
        delays = np.zeros(len(blocks))
    delays = np.asarray(delays, float)
    if delays.shape != (len(blocks),) or not np.all(np.isfinite(delays)):
        raise ValueError(f"delays must be finite with shape ({len(blocks)},)")
    out = []
    for block, d in zip(blocks, delays, strict=True):
        spectrum = np.zeros(n, complex)
        spectrum[block.bins % n] = block.values * np.exp(-2j * np.pi * block.bins * d / n)
        body = np.fft.ifft(spectrum, norm="ortho") * config.scale
        out.append(body[n - block.cp :] if block.cp else body[:0])
        out.append(np.tile(body, block.reps))
    return np.concatenate(out)


def modulate(payload: np.ndarray, config: OfdmConfig) -> np.ndarray:
    """Frame carrying ``payload`` (real ``(n_reals,)``, unit power for full scale use):
    complex64 ``(frame_length(n_reals),)`` with RMS ``config.amplitude`` per unit-power
    block. Raises ValueError if the frame would clip the +-1 DAC range."""
    samples = render_blocks(frame_blocks(payload, config), config).astype(np.complex64)
    peak = max(float(np.abs(samples.real).max()), float(np.abs(samples.imag).max()))
    if peak > 1.0:
        raise ValueError(
            f"frame peaks at {peak:.2f} of full scale: scale the payload down "
            f"(reals should have unit power) or lower config.amplitude"
        )
    return samples


def papr_margin_db(samples: np.ndarray) -> float:
    """Headroom of ``samples`` below the DAC full scale: ``-20 log10(max |I|, |Q|)``, dB."""
    s = np.asarray(samples)
    peak = max(float(np.abs(s.real).max()), float(np.abs(s.imag).max()))
    if peak == 0:
        return math.inf
    return -20.0 * math.log10(peak)


def demodulate(
    frame: np.ndarray, n_reals: int, config: OfdmConfig, gain: complex = 1.0
) -> np.ndarray:
    """Inverse of :func:`modulate` for a frame aligned at index 0 (``frame`` complex,
    at least ``frame_length(n_reals)`` samples), divided by the complex ``gain``:
    float ``(n_reals,)``. Exact without noise."""
    data = data_subcarriers(frame, n_reals, config)
    return symbols_to_payload(data / gain, n_reals, config)


def data_subcarriers(frame: np.ndarray, n_reals: int, config: OfdmConfig) -> np.ndarray:
    """FFT of the data symbols of an aligned frame: complex ``(n_symbols, n_data)``
    (unit-power symbols in, same scale out)."""
    grid = symbol_grid(frame, n_reals, config)
    return grid[:, config.data_bins % config.n_fft]


def symbol_grid(frame: np.ndarray, n_reals: int, config: OfdmConfig) -> np.ndarray:
    """All ``n_fft`` bins of each data symbol of an aligned frame, complex
    ``(n_symbols, n_fft)``, normalised by :attr:`OfdmConfig.scale`."""
    x = np.asarray(frame)
    n_sym = symbols_needed(n_reals, config)
    need = config.preamble_len + n_sym * config.symbol_len
    if x.ndim != 1 or x.size < need:
        raise ValueError(f"frame must be 1-D with >= {need} samples, got shape {x.shape}")
    # FFT window centred in the cyclic prefix: band-limited (sinc) fractional delays
    # smear each symbol over a few samples on *both* sides, so keep margin at both ends;
    # the known cyclic shift is undone by a phase ramp.
    off = config.cp_len // 2
    rows = x[config.preamble_len : need].reshape(n_sym, config.symbol_len)
    body = rows[:, config.cp_len - off : config.cp_len - off + config.n_fft]
    k = np.fft.fftfreq(config.n_fft, 1.0 / config.n_fft)
    ramp = np.exp(2j * np.pi * k * off / config.n_fft)
    return np.fft.fft(body, axis=1, norm="ortho") * ramp / config.scale


def demodulate_frames(
    capture: np.ndarray,
    starts: np.ndarray,
    n_reals: int,
    config: OfdmConfig,
    *,
    cfo_hz: np.ndarray | None = None,
    gains: np.ndarray | None = None,
    track_phase: bool = True,
) -> np.ndarray:
    """Payloads of many frames of one capture at once (one batched FFT over all data
    symbols of all frames): float ``(n_frames, n_reals)``.

    Args:
        capture: complex ``(n,)``.
        starts: fractional frame starts, float ``(n_frames,)``, samples from index 0.
        n_reals: payload reals per frame.
        config: frame configuration.
        cfo_hz: per-frame CFO, Hz ``(n_frames,)`` (default 0), removed as
            ``x[i] exp(-j 2 pi cfo i / fs)`` with the absolute capture index ``i``.
        gains: per-frame complex gains ``(n_frames,)`` on unit-power symbols after that
            CFO removal (default 1), divided out (flat one-tap equalisation), as given
            by :class:`phy.sync.Detection`.
        track_phase: correct the residual phase of every frame with its comb pilots (a
            common phase and a per-symbol drift, i.e. the CFO error, fitted per frame).

    Each FFT window is centred in the cyclic prefix of the symbol at the rounded start;
    the rest of the start (up to half a sample) and the window offset are removed by
    a per-subcarrier phase ramp. Raises ValueError on bad shapes, non-finite values or a
    frame that does not fit in the capture."""
    x = np.ascontiguousarray(capture, dtype=np.complex128)
    s = np.asarray(starts, float)
    if x.ndim != 1 or s.ndim != 1:
        raise ValueError("capture and starts must be 1-D")
    if not np.all(np.isfinite(s)):
        raise ValueError("starts must be finite")
    n_f = s.size
    cfo = np.zeros(n_f) if cfo_hz is None else np.asarray(cfo_hz, float)
    g = np.ones(n_f, complex) if gains is None else np.asarray(gains, complex)
    if cfo.shape != (n_f,) or g.shape != (n_f,):
        raise ValueError(f"cfo_hz and gains must have shape ({n_f},)")
    if not (np.all(np.isfinite(cfo)) and np.all(np.isfinite(g)) and np.all(g != 0)):
        raise ValueError("cfo_hz must be finite and gains finite and non-zero")
    n_sym = symbols_needed(n_reals, config)
    length = config.preamble_len + n_sym * config.symbol_len
    whole = np.rint(s).astype(np.int64)
    if n_f and (whole.min() < 0 or whole.max() + length > x.size):
        raise ValueError(f"every frame ({length} samples) must fit in the capture")
    n, sym_len = config.n_fft, config.symbol_len
    off = config.cp_len // 2
    first = whole + config.preamble_len + config.cp_len - off  # first FFT window
    span = (n_sym - 1) * sym_len + n
    step = x.strides[0]
    windows = np.lib.stride_tricks.as_strided(
        x,
        shape=(x.size - span + 1, n_sym, n),
        strides=(step, sym_len * step, step),
        writeable=False,
    )
    body = windows[first]  # (n_frames, n_sym, n_fft) copy
    nu = cfo / config.sample_rate_hz  # cycles/sample
    body *= phasors(-2 * np.pi * nu, np.arange(n))[:, None, :]
    bins = np.r_[config.data_bins, np.array(config.pilot_bins, int)]
    spec = np.fft.fft(body, axis=2)[:, :, bins % n]  # unnormalised: 1/sqrt(n) below
    # per frame and symbol: CFO phase at the window start, gain, scale, ramps per bin
    rot = phasors(-2 * np.pi * nu * sym_len, np.arange(n_sym))
    rot *= np.exp(-2j * np.pi * nu * first)[:, None]
    rot /= (g * config.scale * math.sqrt(n))[:, None]
    ramp = phasors(2 * np.pi * (off + s - whole) / n, bins)
    eq = spec * rot[:, :, None] * ramp[:, None, :]
    n_data = config.n_data
    if track_phase and len(config.pilot_bins):
        # comb pilots (+1): residual phase drift per symbol (CFO error) from the lag-one
        # product of the per-symbol pilot sums, then the common phase
        c = eq[:, :, n_data:].sum(axis=2)  # (n_frames, n_sym)
        drift = np.angle(np.sum(c[:, 1:] * np.conj(c[:, :-1]), axis=1)) if n_sym > 1 else 0.0
        q = np.arange(n_sym) - (n_sym - 1) / 2
        undo = np.exp(-1j * np.outer(drift, q)) if n_sym > 1 else np.ones((n_f, 1))
        common = np.angle(np.sum(c * undo, axis=1))
        eq *= (undo * np.exp(-1j * common)[:, None])[:, :, None]
    data = eq[:, :, :n_data]
    out = np.empty((n_f, n_sym, n_data, 2))
    out[..., 0] = data.real
    out[..., 1] = data.imag
    return out.reshape(n_f, -1)[:, :n_reals] * math.sqrt(2.0)

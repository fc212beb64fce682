"""The AD9361/AD9363 transceiver of an ADALM-PLUTO as IIO devices, written in code.

Builds the three devices ``adi.Pluto`` and the libiio tools use, with the behaviour of
the Linux ``ad9361`` and ``cf_axi_adc``/``cf_axi_dds`` drivers:

* ``ad9361-phy``: RX/TX LO (``altvoltage0`` RX_LO, ``altvoltage1`` TX_LO), sample rate,
  RF bandwidths, RX gain and gain-control mode, TX attenuation (``hardwaregain``
  -89.75..0 dB, 0.25 dB steps), the FIR filter (``filter_fir_config`` written as text,
  read back as the driver's one-line summary), ``rx_path_rates``/``tx_path_rates``
  derived from one consistent clock chain, ENSM, calibration, XO correction, loopback;
* ``cf-ad9361-lpc``: RX buffer device, scan elements ``voltage0``/``voltage1``
  (``le:S12/16>>0``) and the FPGA decimate-by-8 rate;
* ``cf-ad9361-dds-core-lpc``: TX buffer device, scan elements ``voltage0``/``voltage1``
  (``le:S16/16>>0``) and the four DDS tone channels ``altvoltage0..3``.

Out-of-range writes raise ``IIOError(EINVAL)`` like the driver. Two LO ranges:
``variant="ad9363"`` (stock Pluto firmware, 325 MHz-3.8 GHz, 20 MHz bandwidth) and
``variant="ad9364"`` (the common firmware mod, 70 MHz-6 GHz, 56/40 MHz bandwidth).
Every successful write calls ``on_change(key)`` so the radio can apply it physically.
"""

from __future__ import annotations

import errno
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from hardware.iiod.context import Attribute, Channel, Context, Device, IIOError, ScanElement

MIN_ADC_CLK = 25_000_000
MAX_ADC_CLK = 640_000_000
MAX_BBPLL = 1_430_000_000
MIN_BBPLL = 715_000_000
MAX_RATE = 61_440_000


@dataclass(frozen=True)
class Variant:
    """Frequency and bandwidth limits of one firmware personality."""

    model: str
    lo_min_hz: int
    lo_max_hz: int
    rx_bw_max_hz: int
    tx_bw_max_hz: int


VARIANTS: dict[str, Variant] = {
    "ad9363": Variant("ad9363a", 325_000_000, 3_800_000_000, 20_000_000, 20_000_000),
    "ad9364": Variant("ad9364", 70_000_000, 6_000_000_000, 56_000_000, 40_000_000),
}

#: RX gain-table ranges of the driver (``abs_gain_tbl``) by RX LO band, dB.
RX_GAIN_BANDS = ((1_300_000_000, -1, 73), (4_000_000_000, -3, 71), (10**12, -10, 62))
GAIN_MODES = ("manual", "fast_attack", "slow_attack", "hybrid")
RX_PORTS = (
    "A_BALANCED B_BALANCED C_BALANCED A_N A_P B_N B_P C_N C_P TX_MONITOR1 TX_MONITOR2 TX_MONITOR1_2"
).split()
TX_PORTS = ("A", "B")
ENSM_MODES = ("sleep", "wait", "alert", "fdd", "pinctrl", "pinctrl_fdd_indep")
CALIB_MODES = ("auto", "manual", "manual_tx_quad", "tx_quad", "rf_dc_offs", "rssi_gain_step")

_INT_RE = re.compile(r"^[+-]?\d+$")
_FIX_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)$")


def _int(value: str) -> int:
    """Parse an integer the way the kernel's kstrtoll does (decimal only)."""
    if not _INT_RE.match(value.strip()):
        raise IIOError(errno.EINVAL, f"not an integer: {value!r}")
    return int(value)


def _fix(value: str) -> float:
    """Parse a fixed-point decimal (iio_str_to_fixpoint)."""
    if not _FIX_RE.match(value.strip()):
        raise IIOError(errno.EINVAL, f"not a number: {value!r}")
    return float(value)


@dataclass(frozen=True)
class ClockChain:
    """One consistent AD9361 clock configuration (Hz)."""

    bbpll: int
    adc: int
    r2: int
    r1: int
    rf: int
    rx_samp: int
    dac: int
    t2: int
    t1: int
    tf: int
    tx_samp: int


def clock_chain(rate: int, fir_dec: int, fir_int: int) -> ClockChain:
    """The clock chain for baseband ``rate`` with FIR decimation/interpolation.

    Picks the highest half-band decimation (HB3 in {1,2,3}, HB2, HB1 in {1,2}) whose
    ADC clock fits 25..640 MHz with a BBPLL in 715..1430 MHz; raises EINVAL otherwise.
    """
    combos = sorted(
        ((h3, h2, h1) for h3 in (3, 2, 1) for h2 in (2, 1) for h1 in (2, 1)),
        key=lambda c: -(c[0] * c[1] * c[2]),
    )
    for h3, h2, h1 in combos:
        adc = rate * fir_dec * h3 * h2 * h1
        if not MIN_ADC_CLK <= adc <= MAX_ADC_CLK:
            continue
        for k in range(1, 7):
            bbpll = adc << k
            if MIN_BBPLL <= bbpll <= MAX_BBPLL:
                # TX: the DAC runs at ADC/2 when HB3 decimates by 2, else at the ADC clock
                dac, t3 = (adc // 2, 1) if h3 == 2 else (adc, h3)
                t2 = dac // t3
                t1 = t2 // h2
                tf = t1 // h1
                tx_samp = tf // fir_int
                if tx_samp * fir_int * h1 * h2 * t3 != dac or tx_samp != rate:
                    continue
                r2 = adc // h3
                r1 = r2 // h2
                rf = r1 // h1
                return ClockChain(bbpll, adc, r2, r1, rf, rf // fir_dec, dac, t2, t1, tf, tx_samp)
    raise IIOError(errno.EINVAL, f"no clock chain for {rate} S/s with FIR /{fir_dec}")


@dataclass
class FirConfig:
    """A loaded FIR filter: taps and decimation (RX) / interpolation (TX)."""

    rx_taps: int = 0
    rx_dec: int = 1
    tx_taps: int = 0
    tx_int: int = 1
    rx_gain_db: int = 0
    tx_gain_db: int = 0

    @classmethod
    def parse(cls, text: str) -> FirConfig:
        """Parse the driver's text format (``RX 3 GAIN -6 DEC 4`` / ``TX 3 GAIN 0 INT 4``
        header lines, then one ``rx,tx`` coefficient pair per line)."""
        cfg = cls()
        taps: list[tuple[int, int]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            words = line.replace(",", " ").split()
            head = words[0].upper()
            try:
                if head == "RX":
                    cfg.rx_gain_db = int(words[words.index("GAIN") + 1])
                    cfg.rx_dec = int(words[words.index("DEC") + 1])
                elif head == "TX":
                    cfg.tx_gain_db = int(words[words.index("GAIN") + 1])
                    cfg.tx_int = int(words[words.index("INT") + 1])
                elif head in ("BWRX", "BWTX"):
                    continue
                else:
                    values = [int(w) for w in words]
                    taps.append((values[0], values[-1]))
            except (ValueError, IndexError) as exc:
                raise IIOError(errno.EINVAL, f"bad FIR line {line!r}") from exc
        if cfg.rx_dec not in (1, 2, 4) or cfg.tx_int not in (1, 2, 4):
            raise IIOError(errno.EINVAL, "FIR decimation/interpolation must be 1, 2 or 4")
        if not taps or len(taps) > 128 or len(taps) % 16:
            raise IIOError(errno.EINVAL, f"FIR needs 16..128 taps in steps of 16, got {len(taps)}")
        if any(abs(c) > 32767 for pair in taps for c in pair):
            raise IIOError(errno.EINVAL, "FIR coefficients must fit 16 bits")
        cfg.rx_taps = cfg.tx_taps = len(taps)
        return cfg


@dataclass
class DdsTone:
    """One DDS tone generator channel."""

    label: str
    frequency_hz: int = 9_279_985
    phase_mdeg: int = 90_000
    scale: float = 0.0
    enabled: bool = False


@dataclass
class AD9361State:
    """Everything the model remembers (units in the names)."""

    rx_lo_hz: int = 2_400_000_000
    tx_lo_hz: int = 2_450_000_000
    rx_lo_powerdown: bool = False
    tx_lo_powerdown: bool = False
    sample_rate_hz: int = 30_720_000
    rx_bw_hz: int = 18_000_000
    tx_bw_hz: int = 18_000_000
    gain_mode: str = "slow_attack"
    rx_gain_db: int = 71
    tx_atten_mdb: int = 10_000
    fir: FirConfig = field(default_factory=FirConfig)
    rx_fir_en: bool = False
    tx_fir_en: bool = False
    rx_port: str = "A_BALANCED"
    tx_port: str = "A"
    quad_tracking: bool = True
    rf_dc_tracking: bool = True
    bb_dc_tracking: bool = True
    ensm_mode: str = "fdd"
    calib_mode: str = "auto"
    rate_governor: str = "nominal"
    xo_correction_hz: int = 40_000_000
    loopback: int = 0
    rx_dec8: bool = False
    tx_int8: bool = False
    rssi_db: float = 120.0
    temperature_mdeg: int = 38_000
    dds: list[DdsTone] = field(
        default_factory=lambda: [
            DdsTone(n) for n in ("TX1_I_F1", "TX1_I_F2", "TX1_Q_F1", "TX1_Q_F2")
        ]
    )


class AD9361Model:
    """A Pluto's transceiver as an IIO :class:`~hardware.iiod.context.Context`.

    Args:
        variant: "ad9363" (stock) or "ad9364" (70 MHz-6 GHz firmware mod).
        serial: the ``hw_serial`` context attribute.
        on_change: called with a key ("rx_lo", "tx_lo", "sample_rate", "rx_bw", "tx_bw",
            "rx_gain", "gain_mode", "tx_atten", "xo_correction", "loopback", "ensm", "dds")
            after each successful write, under :attr:`lock`.
    """

    def __init__(
        self,
        variant: str = "ad9363",
        serial: str = "1044730a1997000000000000000000000",
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        self.variant = VARIANTS[variant]
        self.serial = serial
        self.on_change = on_change
        self.lock = threading.RLock()
        self.state = AD9361State()
        self.chain = clock_chain(self.state.sample_rate_hz, 1, 1)
        #: Attributes without a physical effect in the model (stored and read back).
        self.misc: dict[str, str] = {}
        self.context = self._build_context()

    # -- derived values --------------------------------------------------------------
    def rx_gain_range(self, lo_hz: int | None = None) -> tuple[int, int]:
        """(min, max) RX gain in dB for the gain table of ``lo_hz`` (default: RX LO)."""
        lo = self.state.rx_lo_hz if lo_hz is None else lo_hz
        for upper, low, high in RX_GAIN_BANDS:
            if lo < upper:
                return low, high
        raise AssertionError("unreachable")

    @property
    def tx_atten_db(self) -> float:
        return self.state.tx_atten_mdb / 1000.0

    @property
    def rx_rate_hz(self) -> float:
        """Rate of the samples in RX buffers (after the optional FPGA /8)."""
        return self.state.sample_rate_hz / (8 if self.state.rx_dec8 else 1)

    @property
    def tx_rate_hz(self) -> float:
        """Rate of the samples in TX buffers (before the optional FPGA x8)."""
        return self.state.sample_rate_hz / (8 if self.state.tx_int8 else 1)

    def _fir_factors(self, rx_en: bool, tx_en: bool) -> tuple[int, int]:
        return (self.state.fir.rx_dec if rx_en else 1, self.state.fir.tx_int if tx_en else 1)

    def _changed(self, key: str) -> None:
        if self.on_change is not None:
            self.on_change(key)

    # -- setters (validate like the driver, then notify) ---------------------------------
    def set_lo(self, which: str, value: str) -> None:
        hz = _int(value)
        if not self.variant.lo_min_hz <= hz <= self.variant.lo_max_hz:
            raise IIOError(errno.EINVAL, f"LO {hz} Hz outside the {self.variant.model} range")
        if which == "rx":
            self.state.rx_lo_hz = hz
            low, high = self.rx_gain_range()
            self.state.rx_gain_db = min(max(self.state.rx_gain_db, low), high)
        else:
            self.state.tx_lo_hz = hz
        self._changed(f"{which}_lo")

    def set_sample_rate(self, value: str) -> None:
        rate = _int(value)
        if not 0 < rate <= MAX_RATE:
            raise IIOError(errno.EINVAL, f"sample rate {rate} outside 1..{MAX_RATE}")
        dec, interp = self._fir_factors(self.state.rx_fir_en, self.state.tx_fir_en)
        if rate < MIN_ADC_CLK // (12 * dec):
            raise IIOError(errno.EINVAL, f"sample rate {rate} below {MIN_ADC_CLK // (12 * dec)}")
        self.chain = clock_chain(rate, dec, interp)
        self.state.sample_rate_hz = rate
        self._changed("sample_rate")

    def set_fir_enable(self, rx: bool | None, tx: bool | None) -> None:
        rx_en = self.state.rx_fir_en if rx is None else rx
        tx_en = self.state.tx_fir_en if tx is None else tx
        if (rx_en and self.state.fir.rx_taps == 0) or (tx_en and self.state.fir.tx_taps == 0):
            raise IIOError(errno.EINVAL, "no FIR filter loaded")
        dec, interp = self._fir_factors(rx_en, tx_en)
        self.chain = clock_chain(self.state.sample_rate_hz, dec, interp)
        self.state.rx_fir_en, self.state.tx_fir_en = rx_en, tx_en
        self._changed("sample_rate")

    def set_fir_config(self, value: str) -> None:
        cfg = FirConfig.parse(value)
        dec = cfg.rx_dec if self.state.rx_fir_en else 1
        interp = cfg.tx_int if self.state.tx_fir_en else 1
        chain = clock_chain(self.state.sample_rate_hz, dec, interp)
        self.state.fir, self.chain = cfg, chain

    def set_bandwidth(self, which: str, value: str) -> None:
        hz = _int(value)
        high = self.variant.rx_bw_max_hz if which == "rx" else self.variant.tx_bw_max_hz
        if not 200_000 <= hz <= high:
            raise IIOError(errno.EINVAL, f"{which} RF bandwidth {hz} outside 200000..{high}")
        setattr(self.state, f"{which}_bw_hz", hz)
        self._changed(f"{which}_bw")

    def set_rx_gain(self, value: str) -> None:
        gain = math.trunc(_fix(value))
        if self.state.gain_mode != "manual":
            raise IIOError(errno.EINVAL, "RX gain can only be set in manual gain mode")
        low, high = self.rx_gain_range()
        if not low <= gain <= high:
            raise IIOError(errno.EINVAL, f"RX gain {gain} dB outside [{low}, {high}]")
        self.state.rx_gain_db = gain
        self._changed("rx_gain")

    def set_agc_gain(self, gain_db: int) -> None:
        """Used by the radio's AGC: set the RX gain chosen by the gain control loop."""
        low, high = self.rx_gain_range()
        self.state.rx_gain_db = int(min(max(gain_db, low), high))
        self._changed("rx_gain")

    def set_tx_atten(self, value: str) -> None:
        gain = _fix(value)
        mdb = round(-gain * 1000)
        if gain > 0 or mdb > 89_750:
            raise IIOError(errno.EINVAL, f"TX hardwaregain {gain} dB outside [-89.75, 0]")
        self.state.tx_atten_mdb = mdb // 250 * 250
        self._changed("tx_atten")

    def set_choice(self, name: str, choices: tuple[str, ...], value: str, key: str = "") -> None:
        if value not in choices:
            raise IIOError(errno.EINVAL, f"{value!r} is not one of {' '.join(choices)}")
        setattr(self.state, name, value)
        if key:
            self._changed(key)

    def set_flag(self, name: str, value: str, key: str = "") -> None:
        flag = _int(value)
        if flag not in (0, 1):
            raise IIOError(errno.EINVAL, f"{name} must be 0 or 1")
        setattr(self.state, name, bool(flag))
        if key:
            self._changed(key)

    def set_xo_correction(self, value: str) -> None:
        hz = _int(value)
        if not 39_992_000 <= hz <= 40_008_000:
            raise IIOError(errno.EINVAL, "xo_correction outside [39992000, 40008000]")
        self.state.xo_correction_hz = hz
        self._changed("xo_correction")

    def set_loopback(self, value: str) -> None:
        mode = _int(value)
        if mode not in (0, 1, 2):
            raise IIOError(errno.EINVAL, "loopback must be 0, 1 or 2")
        self.state.loopback = mode
        self._changed("loopback")

    def set_fpga_rate(self, direction: str, value: str) -> None:
        rate = _int(value)
        base = self.state.sample_rate_hz
        if rate not in (base, base // 8):
            raise IIOError(errno.EINVAL, f"rate must be {base} or {base // 8}")
        setattr(self.state, "rx_dec8" if direction == "rx" else "tx_int8", rate != base)
        self._changed("sample_rate")

    # -- readers -----------------------------------------------------------------------
    def _rx_path_rates(self) -> str:
        c = self.chain
        return f"BBPLL:{c.bbpll} ADC:{c.adc} R2:{c.r2} R1:{c.r1} RF:{c.rf} RXSAMP:{c.rx_samp}"

    def _tx_path_rates(self) -> str:
        c = self.chain
        return f"BBPLL:{c.bbpll} DAC:{c.dac} T2:{c.t2} T1:{c.t1} TF:{c.tf} TXSAMP:{c.tx_samp}"

    def _tx_gain(self) -> str:
        mdb = self.state.tx_atten_mdb
        return f"{'-' if mdb else ''}{mdb // 1000}.{mdb % 1000:03d}000 dB"

    # -- context -----------------------------------------------------------------------
    def _build_context(self) -> Context:
        s = self.state
        v = self.variant

        def const(text: str) -> Callable[[], str]:
            return lambda: text

        def stored(key: str, initial: str, parse: Callable[[str], object] = _int) -> list:
            """A register-like attribute: validated with ``parse``, stored, read back."""
            self.misc.setdefault(key, initial)

            def write(val: str) -> None:
                parse(val)
                self.misc[key] = val

            return [lambda: self.misc[key], write]

        def flag(name: str, key: str = "") -> tuple[Callable[[], str], Callable[[str], None]]:
            return (
                lambda: str(int(getattr(s, name))),
                lambda val: self.set_flag(name, val, key),
            )

        lo_available = f"[{v.lo_min_hz} 1 {v.lo_max_hz}]"

        def lo_channel(index: int, label: str, which: str) -> Channel:
            return Channel(
                f"altvoltage{index}",
                True,
                name=label,
                attrs=[
                    Attribute("external", *flag(f"{which}_lo_powerdown")),
                    Attribute("fastlock_load", *stored(f"{which}_fl_load", "0")),
                    Attribute("fastlock_recall", *stored(f"{which}_fl_recall", "0")),
                    Attribute("fastlock_save", const("0 " + ",".join(["0"] * 16))),
                    Attribute("fastlock_store", *stored(f"{which}_fl_store", "0")),
                    Attribute(
                        "frequency",
                        lambda: str(getattr(s, f"{which}_lo_hz")),
                        lambda val: self.set_lo(which, val),
                    ),
                    Attribute("frequency_available", const(lo_available)),
                    Attribute("powerdown", *flag(f"{which}_lo_powerdown", f"{which}_lo")),
                ],
            )

        rate_avail = lambda: (  # noqa: E731
            f"[{MIN_ADC_CLK // (12 * (s.fir.rx_dec if s.rx_fir_en else 1))} 1 {MAX_RATE}]"
        )
        phy_rx = Channel(
            "voltage0",
            False,
            attrs=[
                Attribute("bb_dc_offset_tracking_en", *flag("bb_dc_tracking")),
                Attribute(
                    "filter_fir_en",
                    lambda: str(int(s.rx_fir_en)),
                    lambda val: self.set_fir_enable(bool(_int(val)), None),
                ),
                Attribute(
                    "gain_control_mode",
                    lambda: s.gain_mode,
                    lambda val: self.set_choice("gain_mode", GAIN_MODES, val, "gain_mode"),
                ),
                Attribute("gain_control_mode_available", const(" ".join(GAIN_MODES))),
                Attribute("hardwaregain", lambda: f"{s.rx_gain_db}.000000 dB", self.set_rx_gain),
                Attribute(
                    "hardwaregain_available", lambda: "[{} 1 {}]".format(*self.rx_gain_range())
                ),
                Attribute("quadrature_tracking_en", *flag("quad_tracking")),
                Attribute(
                    "rf_bandwidth",
                    lambda: str(s.rx_bw_hz),
                    lambda val: self.set_bandwidth("rx", val),
                ),
                Attribute("rf_bandwidth_available", const(f"[200000 1 {v.rx_bw_max_hz}]")),
                Attribute("rf_dc_offset_tracking_en", *flag("rf_dc_tracking")),
                Attribute(
                    "rf_port_select",
                    lambda: s.rx_port,
                    lambda val: self.set_choice("rx_port", tuple(RX_PORTS), val),
                ),
                Attribute("rf_port_select_available", const(" ".join(RX_PORTS))),
                Attribute("rssi", lambda: f"{s.rssi_db:.2f} dB"),
                Attribute(
                    "sampling_frequency", lambda: str(s.sample_rate_hz), self.set_sample_rate
                ),
                Attribute("sampling_frequency_available", rate_avail),
            ],
        )
        phy_tx = Channel(
            "voltage0",
            True,
            attrs=[
                Attribute(
                    "filter_fir_en",
                    lambda: str(int(s.tx_fir_en)),
                    lambda val: self.set_fir_enable(None, bool(_int(val))),
                ),
                Attribute("hardwaregain", self._tx_gain, self.set_tx_atten),
                Attribute("hardwaregain_available", const("[-89.750000 0.250000 0.000000]")),
                Attribute(
                    "rf_bandwidth",
                    lambda: str(s.tx_bw_hz),
                    lambda val: self.set_bandwidth("tx", val),
                ),
                Attribute("rf_bandwidth_available", const(f"[200000 1 {v.tx_bw_max_hz}]")),
                Attribute(
                    "rf_port_select",
                    lambda: s.tx_port,
                    lambda val: self.set_choice("tx_port", TX_PORTS, val),
                ),
                Attribute("rf_port_select_available", const(" ".join(TX_PORTS))),
                Attribute("rssi", lambda: f"{s.tx_atten_mdb // 1000}.00 dB"),
                Attribute(
                    "sampling_frequency", lambda: str(s.sample_rate_hz), self.set_sample_rate
                ),
                Attribute("sampling_frequency_available", rate_avail),
            ],
        )
        fir_both = Channel(
            "out",
            False,
            attrs=[
                Attribute(
                    "voltage_filter_fir_en",
                    lambda: str(int(s.rx_fir_en and s.tx_fir_en)),
                    lambda val: self.set_fir_enable(bool(_int(val)), bool(_int(val))),
                )
            ],
        )
        temp = Channel("temp0", False, attrs=[Attribute("input", lambda: str(s.temperature_mdeg))])
        phy = Device(
            "iio:device0",
            "ad9361-phy",
            channels=[
                lo_channel(1, "TX_LO", "tx"),
                phy_rx,
                phy_tx,
                fir_both,
                temp,
                lo_channel(0, "RX_LO", "rx"),
            ],
            attrs=[
                Attribute(
                    "calib_mode",
                    lambda: s.calib_mode,
                    lambda val: self.set_choice("calib_mode", CALIB_MODES, val),
                ),
                Attribute("calib_mode_available", const(" ".join(CALIB_MODES))),
                Attribute(
                    "ensm_mode",
                    lambda: s.ensm_mode,
                    lambda val: self.set_choice("ensm_mode", ENSM_MODES, val, "ensm"),
                ),
                Attribute("ensm_mode_available", const(" ".join(ENSM_MODES))),
                Attribute("filter_fir_config", self._fir_summary, self.set_fir_config),
                Attribute("rx_path_rates", self._rx_path_rates),
                Attribute(
                    "trx_rate_governor",
                    lambda: s.rate_governor,
                    lambda val: self.set_choice("rate_governor", ("nominal", "highest_osr"), val),
                ),
                Attribute("trx_rate_governor_available", const("nominal highest_osr")),
                Attribute("tx_path_rates", self._tx_path_rates),
                Attribute("xo_correction", lambda: str(s.xo_correction_hz), self.set_xo_correction),
                Attribute("xo_correction_available", const("[39992000 1 40008000]")),
            ],
            debug_attrs=[
                Attribute("loopback", lambda: str(s.loopback), self.set_loopback),
                Attribute("initialize", *stored("initialize", "0")),
                Attribute("bist_prbs", *stored("bist_prbs", "0")),
                Attribute("bist_tone", *stored("bist_tone", "0 0 0 0", str)),
            ],
        )

        def fpga_rate(direction: str) -> list[Attribute]:
            def avail() -> str:
                return f"{s.sample_rate_hz} {s.sample_rate_hz // 8} "

            def current() -> str:
                rate = self.rx_rate_hz if direction == "rx" else self.tx_rate_hz
                return str(int(rate))

            return [
                Attribute(
                    "sampling_frequency", current, lambda val: self.set_fpga_rate(direction, val)
                ),
                Attribute("sampling_frequency_available", avail),
            ]

        def adc_channel(index: int) -> Channel:
            return Channel(
                f"voltage{index}",
                False,
                scan=ScanElement(index, "le:S12/16>>0"),
                attrs=[
                    Attribute("calibbias", *stored(f"adc{index}_calibbias", "0")),
                    Attribute("calibphase", *stored(f"adc{index}_calibphase", "0.000000", _fix)),
                    Attribute("calibscale", *stored(f"adc{index}_calibscale", "1.000000", _fix)),
                    Attribute("samples_pps", const("0")),
                    *fpga_rate("rx"),
                ],
            )

        buffer_attrs = [
            Attribute("data_available", const("0")),
            Attribute("length_align_bytes", const("8")),
        ]
        adc = Device(
            "iio:device2",
            "cf-ad9361-lpc",
            channels=[adc_channel(0), adc_channel(1)],
            attrs=[
                Attribute("sync_start_enable", *stored("adc_sync", "disarm", str)),
                Attribute("sync_start_enable_available", const("arm")),
            ],
            buffer_attrs=list(buffer_attrs),
            debug_attrs=[Attribute("pseudorandom_err_check", const("CH0 : PN9 : Out of Sync"))],
        )

        def dac_channel(index: int) -> Channel:
            return Channel(
                f"voltage{index}",
                True,
                scan=ScanElement(index, "le:S16/16>>0"),
                attrs=[
                    Attribute("calibphase", *stored(f"dac{index}_calibphase", "0.000000", _fix)),
                    Attribute("calibscale", *stored(f"dac{index}_calibscale", "1.000000", _fix)),
                    *fpga_rate("tx"),
                ],
            )

        def dds_channel(index: int) -> Channel:
            tone = s.dds[index]

            def set_freq(val: str) -> None:
                hz = _int(val)
                if not 0 <= hz <= s.sample_rate_hz // 2:
                    raise IIOError(errno.EINVAL, "DDS frequency outside [0, fs/2]")
                tone.frequency_hz = hz
                self._changed("dds")

            def set_phase(val: str) -> None:
                mdeg = _int(val)
                if not 0 <= mdeg < 360_000:
                    raise IIOError(errno.EINVAL, "DDS phase outside [0, 360000)")
                tone.phase_mdeg = mdeg
                self._changed("dds")

            def set_scale(val: str) -> None:
                scale = _fix(val)
                if not 0.0 <= scale <= 1.0:
                    raise IIOError(errno.EINVAL, "DDS scale outside [0, 1]")
                tone.scale = scale
                self._changed("dds")

            def set_raw(val: str) -> None:
                on = _int(val)
                if on not in (0, 1):
                    raise IIOError(errno.EINVAL, "raw must be 0 or 1")
                # one enable bit for all tones of the core, as in cf_axi_dds
                for other in s.dds:
                    other.enabled = bool(on)
                self._changed("dds")

            return Channel(
                f"altvoltage{index}",
                True,
                name=tone.label,
                attrs=[
                    Attribute("frequency", lambda: str(tone.frequency_hz), set_freq),
                    Attribute("phase", lambda: str(tone.phase_mdeg), set_phase),
                    Attribute("raw", lambda: str(int(tone.enabled)), set_raw),
                    Attribute("sampling_frequency", lambda: str(int(self.tx_rate_hz))),
                    Attribute("scale", lambda: f"{tone.scale:f}", set_scale),
                ],
            )

        dac = Device(
            "iio:device1",
            "cf-ad9361-dds-core-lpc",
            channels=[dac_channel(0), dac_channel(1)] + [dds_channel(i) for i in range(4)],
            attrs=[
                Attribute("sync_start_enable", *stored("dac_sync", "disarm", str)),
                Attribute("sync_start_enable_available", const("arm")),
            ],
            buffer_attrs=list(buffer_attrs),
        )
        return Context(
            devices=[phy, dac, adc],
            attrs={
                "hw_model": f"Analog Devices PlutoSDR Rev.C (Z7010-{v.model.upper()})",
                "hw_model_variant": "1",
                "hw_serial": self.serial,
                "fw_version": "v0.38",
                "ad9361-phy,xo_correction": "40000000",
                "ad9361-phy,model": v.model,
                "local,kernel": "5.15.0-airmix-virtual",
            },
            description="airmix virtual PlutoSDR (AD9361 model on the simulated medium)",
        )

    def _fir_summary(self) -> str:
        fir = self.state.fir
        return f"FIR Rx: {fir.rx_taps},{fir.rx_dec} Tx: {fir.tx_taps},{fir.tx_int}"

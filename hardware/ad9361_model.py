"""The ADALM-PLUTO's IIO context, written in code: the devices a stock Pluto publishes.

Builds the context a Pluto Rev.C on stock firmware publishes (compared with a real
unit's context description): devices ``iio:device0`` ``ad9361-phy``, ``iio:device1``
``xadc``, ``iio:device2`` ``cf-ad9361-dds-core-lpc`` and ``iio:device3``
``cf-ad9361-lpc``; every channel attribute with its sysfs ``filename``; device, buffer
(``data_available``, ``length_align_bytes``, ``watermark``) and debug attributes
(the driver's debugfs files, the ``adi,*`` device-tree properties and
``direct_reg_access``); scan elements ``le:S12/16>>0`` (RX) and ``le:S16/16>>0`` (TX).

Behaviour follows the Linux ``ad9361``, ``cf_axi_adc``, ``cf_axi_dds`` and ``xadc``
drivers:

* values are parsed by the kernel's parsers (:mod:`hardware.kparse`): ``info_mask``
  attributes (``sampling_frequency``, ``hardwaregain``, DDS ``frequency``/``scale``/
  ``phase``/``raw``, ``calib*``, AUXDAC ``raw``) by ``iio_str_to_fixpoint`` (so
  ``"600000.0"`` is a valid rate), the LO ``frequency`` and fastlock attributes by
  ``kstrtoull`` (``"2.4e9"`` is ``EINVAL``), RF bandwidths by ``kstrtoul`` (32-bit:
  ``ERANGE`` above 2**32-1), switches by ``kstrtobool``, enums by
  ``sysfs_match_string``, debug files by ``sscanf("%i")``;
* out-of-range values are refused with the driver's errno (``EINVAL``) and leave the
  state unchanged; read-only attributes refuse writes (``EACCES``, as a sysfs file
  without a store method); attributes a Pluto cannot serve fail as on the hardware
  (``dcxo_tune_*``: ``ENODEV``, no DCXO; ``fastlock_recall`` before a recall:
  ``EINVAL``; write-only ``multichip_sync``: ``EACCES``);
* ``loopback`` (debug): 0 off, 1 the AD9361's digital TX->RX loopback, 2 the FPGA's
  RX->TX loopback (``ad9361_bist_loopback``); the radio renders them
  (:mod:`hardware.virtual_pluto`);
* ``direct_reg_access`` (:mod:`hardware.registers`): the AD9361 SPI map on the phy;
  the FPGA cores' registers at ``0x80000000 | addr`` with the sticky status flags at
  ``0x80000088`` (ADC bit 2 overflow, DAC bit 0 underflow; write 1 to clear), raised
  by :meth:`AD9361Model.raise_overflow` / :meth:`AD9361Model.raise_underflow`;
* the DDS (:mod:`hardware.dds`) with the core's 16-bit phase accumulator.

Two LO ranges: ``variant="ad9363"`` (stock, 325 MHz-3.8 GHz, 20 MHz bandwidth) and
``variant="ad9364"`` (the common firmware mod, 70 MHz-6 GHz, 56/40 MHz); these and the
other device limits come from :mod:`radio.pluto_limits` (their one definition). Every
successful write that changes the radio calls ``on_change(key)``.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from hardware.dds import DacPath, Dds
from hardware.iiod.context import Attribute, Channel, Context, Device, IIOError, ScanElement
from hardware.kparse import (
    fixpoint,
    fixpoint_float,
    kstrtobool,
    kstrtos,
    kstrtou,
    sscanf_ints,
    sysfs_choice,
)
from hardware.pluto_devicetree import DT_PROPERTIES
from hardware.registers import (
    ADC_OVERFLOW,
    ADC_UNDERFLOW,
    DAC_UNDERFLOW,
    AxiCoreRegisters,
    DirectRegAccess,
    SpiRegisters,
)
from radio.pluto_limits import (
    MAX_ADC_CLK,
    MAX_BBPLL,
    MAX_RATE,
    MAX_TX_ATTENUATION_MDB,
    MIN_ADC_CLK,
    MIN_BBPLL,
    MIN_RF_BANDWIDTH_HZ,
    TX_ATTENUATION_STEP_MDB,
    VARIANTS,
    rx_gain_range_db,
)

XO_NOMINAL_HZ = 40_000_000
XO_TUNE_RANGE_HZ = 8_000


GAIN_MODES = ("manual", "fast_attack", "slow_attack", "hybrid")
RX_PORTS = (
    "A_BALANCED B_BALANCED C_BALANCED A_N A_P B_N B_P C_N C_P TX_MONITOR1 TX_MONITOR2 TX_MONITOR1_2"
).split()
TX_PORTS = ("A", "B")
ENSM_MODES = ("sleep", "wait", "alert", "fdd", "pinctrl", "pinctrl_fdd_indep")
CALIB_MODES = ("auto", "manual", "manual_tx_quad", "tx_quad", "rf_dc_offs", "rssi_gain_step")
SYNC_START_MODES = ("arm", "disarm")
LOOPBACK_MODES = (0, 1, 2)  # off, AD9361 digital TX->RX, FPGA RX->TX
FASTLOCK_PROFILES = 8
AUXDAC_MAX_MV = 3000
#: xadc: (channel id, label, nominal volts, scale mV per code)
XADC_RAILS = (
    ("voltage0", "vccint", 1.0, 0.732421875),
    ("voltage1", "vccaux", 1.8, 0.732421875),
    ("voltage2", "vccbram", 1.0, 0.732421875),
    ("voltage3", "vccpint", 1.0, 0.732421875),
    ("voltage4", "vccpaux", 1.8, 0.732421875),
    ("voltage5", "vccoddr", 1.35, 0.732421875),
    ("voltage6", "vrefp", 1.25, 0.732421875),
    ("voltage7", "vrefn", 0.0, 0.732421875),
    ("voltage8", None, 0.8, 0.244140625),
)
XADC_TEMP_SCALE = 123.040771484
XADC_TEMP_OFFSET = -2219
XADC_CLOCK_HZ = 50_000_000


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

    def summary(self) -> str:
        """What the driver's ``filter_fir_config`` read prints (0,0 when none loaded)."""
        rx = f"{self.rx_taps},{self.rx_dec if self.rx_taps else 0}"
        tx = f"{self.tx_taps},{self.tx_int if self.tx_taps else 0}"
        return f"FIR Rx: {rx} Tx: {tx}"


@dataclass
class AD9361State:
    """Everything the model remembers (units in the names)."""

    rx_lo_hz: int = 2_400_000_000
    tx_lo_hz: int = 2_450_000_000
    rx_lo_powerdown: bool = False
    tx_lo_powerdown: bool = False
    rx_lo_external: bool = False
    tx_lo_external: bool = False
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
    xo_correction_hz: int = XO_NOMINAL_HZ
    loopback: int = 0
    rx_dec8: bool = False
    tx_int8: bool = False
    rssi_db: float = 120.0
    temperature_mdeg: int = 38_000
    auxdac_mv: list[int] = field(default_factory=lambda: [0, 0])
    fastlock: dict[str, list[list[int] | None]] = field(
        default_factory=lambda: {
            "rx": [None] * FASTLOCK_PROFILES,
            "tx": [None] * FASTLOCK_PROFILES,
        }
    )
    fastlock_current: dict[str, int] = field(default_factory=lambda: {"rx": 0, "tx": 0})
    fastlock_save_profile: dict[str, int] = field(default_factory=lambda: {"rx": 0, "tx": 0})


def _ro(text: str) -> Callable[[], str]:
    return lambda: text


def _fails(err: int, why: str) -> Callable[[], str]:
    def read() -> str:
        raise IIOError(err, why)

    return read


class AD9361Model:
    """A Pluto's IIO context with the drivers' behaviour.

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
        #: Register-like attributes without a physical effect (stored and read back).
        self.misc: dict[str, str] = {}
        self.spi = SpiRegisters()
        self.adc_core = AxiCoreRegisters(0x000A0162, ADC_OVERFLOW | ADC_UNDERFLOW)
        self.dac_core = AxiCoreRegisters(0x00090162, DAC_UNDERFLOW)
        self.dds = Dds()
        self.dac = DacPath(self.dds)
        self.debug_values: dict[str, int] = {name: value for name, value in DT_PROPERTIES}
        self.watermark = {"rx": 2048, "tx": 2048}
        self.xadc_rate_hz = 961_538
        self.context = self._build_context()

    # -- derived values --------------------------------------------------------------
    def rx_gain_range(self, lo_hz: int | None = None) -> tuple[int, int]:
        """(min, max) RX gain in dB for the gain table of ``lo_hz`` (default: RX LO)."""
        return rx_gain_range_db(self.state.rx_lo_hz if lo_hz is None else lo_hz)

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

    # -- status flags (the FPGA cores' sticky bits) ----------------------------------
    def raise_overflow(self) -> None:
        """RX overflow: latch bit 2 of the ADC core's status register (0x80000088)."""
        self.adc_core.set_status(ADC_OVERFLOW)

    def raise_underflow(self) -> None:
        """TX underflow: latch bit 0 of the DAC core's status register (0x80000088)."""
        self.dac_core.set_status(DAC_UNDERFLOW)

    @property
    def overflow(self) -> bool:
        return self.adc_core.status(ADC_OVERFLOW)

    @property
    def underflow(self) -> bool:
        return self.dac_core.status(DAC_UNDERFLOW)

    # -- setters (parse like the kernel, validate like the driver, then notify) ------
    def set_lo(self, which: str, value: str) -> None:
        hz = kstrtou(value)
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
        rate = fixpoint(value)[0]
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
        hz = kstrtou(value, 32)
        high = self.variant.rx_bw_max_hz if which == "rx" else self.variant.tx_bw_max_hz
        if not MIN_RF_BANDWIDTH_HZ <= hz <= high:
            raise IIOError(
                errno.EINVAL, f"{which} RF bandwidth {hz} outside {MIN_RF_BANDWIDTH_HZ}..{high}"
            )
        setattr(self.state, f"{which}_bw_hz", hz)
        self._changed(f"{which}_bw")

    def set_rx_gain(self, value: str) -> None:
        gain = fixpoint(value, db=True)[0]
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
        val, val2 = fixpoint(value, db=True)
        if val > 0 or (val == 0 and val2 > 0):
            raise IIOError(errno.EINVAL, f"TX hardwaregain {value} dB above 0")
        mdb = abs(val) * 1000 + abs(val2) // 1000
        if mdb > MAX_TX_ATTENUATION_MDB:
            raise IIOError(
                errno.EINVAL, f"TX hardwaregain {value} below -{MAX_TX_ATTENUATION_MDB / 1000} dB"
            )
        self.state.tx_atten_mdb = mdb // TX_ATTENUATION_STEP_MDB * TX_ATTENUATION_STEP_MDB
        self._changed("tx_atten")

    def set_choice(self, name: str, choices: tuple[str, ...], value: str, key: str = "") -> None:
        setattr(self.state, name, choices[sysfs_choice(value, choices)])
        if key:
            self._changed(key)

    def set_flag(self, name: str, value: str, key: str = "") -> None:
        setattr(self.state, name, kstrtobool(value))
        if key:
            self._changed(key)

    def set_xo_correction(self, value: str) -> None:
        hz = kstrtou(value, 32)
        if abs(hz - XO_NOMINAL_HZ) > XO_TUNE_RANGE_HZ:
            low, high = XO_NOMINAL_HZ - XO_TUNE_RANGE_HZ, XO_NOMINAL_HZ + XO_TUNE_RANGE_HZ
            raise IIOError(errno.EINVAL, f"xo_correction outside [{low}, {high}]")
        self.state.xo_correction_hz = hz
        self._changed("xo_correction")

    def set_loopback(self, value: str) -> None:
        values = sscanf_ints(value, 4)
        if len(values) != 1 or values[0] not in LOOPBACK_MODES:
            raise IIOError(errno.EINVAL, "loopback must be 0, 1 or 2")
        self.state.loopback = values[0]
        self._changed("loopback")

    def set_fpga_rate(self, direction: str, value: str) -> None:
        rate = fixpoint(value)[0]
        base = self.state.sample_rate_hz
        if rate not in (base, base // 8):
            raise IIOError(errno.EINVAL, f"rate must be {base} or {base // 8}")
        setattr(self.state, "rx_dec8" if direction == "rx" else "tx_int8", rate != base)
        self._changed("sample_rate")

    def _set_gain_table(self, value: str) -> None:
        """A gain table in the driver's text format, ``<gaintable ...>`` .. ``</gaintable>``
        around ``index, ...`` rows (stored, not applied)."""
        text = value.strip()
        if not (text.startswith("<gaintable") and text.endswith("</gaintable>")):
            raise IIOError(errno.EINVAL, "gain_table_config needs <gaintable ...> ... </gaintable>")
        self.misc["gain_table_config"] = text

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
    def _stored(self, key: str, initial: str, parse: Callable[[str], object]) -> list:
        """A register-like attribute: validated with ``parse``, stored, read back."""
        self.misc.setdefault(key, initial)

        def write(val: str) -> None:
            parse(val)
            self.misc[key] = val

        return [lambda: self.misc[key], write]

    def _flag(self, name: str, key: str = "") -> tuple[Callable[[], str], Callable[[str], None]]:
        s = self.state
        return (lambda: str(int(getattr(s, name))), lambda val: self.set_flag(name, val, key))

    def _lo_channel(self, index: int, label: str, which: str) -> Channel:
        s = self.state
        v = self.variant

        def store(val: str) -> None:
            profile = kstrtou(val)
            if profile >= FASTLOCK_PROFILES:
                raise IIOError(errno.EINVAL, f"fastlock profile {profile} outside 0..7")
            lo = getattr(s, f"{which}_lo_hz")
            s.fastlock[which][profile] = [lo]

        def recall(val: str) -> None:
            profile = kstrtou(val)
            if profile >= FASTLOCK_PROFILES or s.fastlock[which][profile] is None:
                raise IIOError(errno.EINVAL, f"fastlock profile {profile} not stored")
            s.fastlock_current[which] = profile + 1
            self.set_lo(which, str(s.fastlock[which][profile][0]))  # type: ignore[index]

        def recall_read() -> str:
            current = s.fastlock_current[which]
            if current == 0:
                raise IIOError(errno.EINVAL, "no fastlock profile recalled")
            return str(current - 1)

        def save_read() -> str:
            profile = s.fastlock_save_profile[which]
            word = (getattr(s, f"{which}_lo_hz") // 10_000_000) % 256
            return f"{profile} " + ",".join([str(word)] * 16)

        def save_write(val: str) -> None:
            profile = kstrtou(val)
            if profile >= FASTLOCK_PROFILES:
                raise IIOError(errno.EINVAL, f"fastlock profile {profile} outside 0..7")
            s.fastlock_save_profile[which] = profile

        def load(val: str) -> None:
            fields = [f for f in val.split(",") if f.strip()]
            if len(fields) != 16:
                raise IIOError(errno.EINVAL, "fastlock_load needs 16 comma-separated values")
            head = sscanf_ints(fields[0], 2)
            if not head or any(len(sscanf_ints(f, 1)) != 1 for f in fields[1:]):
                raise IIOError(errno.EINVAL, f"bad fastlock_load value {val!r}")
            profile = head[0] if len(head) == 2 else 0
            if profile >= FASTLOCK_PROFILES:
                raise IIOError(errno.EINVAL, f"fastlock profile {profile} outside 0..7")
            s.fastlock[which][profile] = [getattr(s, f"{which}_lo_hz")]

        return Channel(
            f"altvoltage{index}",
            True,
            name=label,
            attrs=[
                Attribute("external", *self._flag(f"{which}_lo_external")),
                Attribute("fastlock_load", _ro("0"), load),
                Attribute("fastlock_recall", recall_read, recall),
                Attribute("fastlock_save", save_read, save_write),
                Attribute("fastlock_store", _ro("0"), store),
                Attribute(
                    "frequency",
                    lambda: str(getattr(s, f"{which}_lo_hz")),
                    lambda val: self.set_lo(which, val),
                ),
                Attribute("frequency_available", _ro(f"[{v.lo_min_hz} 1 {v.lo_max_hz}]")),
                Attribute("powerdown", *self._flag(f"{which}_lo_powerdown", f"{which}_lo")),
            ],
        )

    def _phy_shared(self, output: bool) -> list[Attribute]:
        """Attributes shared by every phy voltage channel of one direction."""
        s = self.state
        v = self.variant
        which = "tx" if output else "rx"

        def rate_avail() -> str:
            dec = s.fir.rx_dec if s.rx_fir_en else 1
            return f"[{MIN_ADC_CLK // (12 * dec)} 1 {MAX_RATE}]"

        fir_en = "tx_fir_en" if output else "rx_fir_en"
        attrs = [
            Attribute(
                "filter_fir_en",
                lambda: str(int(getattr(s, fir_en))),
                lambda val: self.set_fir_enable(
                    None if output else kstrtobool(val), kstrtobool(val) if output else None
                ),
                shared=True,
            ),
            Attribute(
                "rf_bandwidth",
                lambda: str(getattr(s, f"{which}_bw_hz")),
                lambda val: self.set_bandwidth(which, val),
                shared=True,
            ),
            Attribute(
                "rf_bandwidth_available",
                _ro(f"[200000 1 {v.tx_bw_max_hz if output else v.rx_bw_max_hz}]"),
                shared=True,
            ),
            Attribute(
                "rf_port_select_available",
                _ro(" ".join(TX_PORTS if output else RX_PORTS)),
                shared=True,
            ),
            Attribute(
                "sampling_frequency",
                lambda: str(s.sample_rate_hz),
                self.set_sample_rate,
                shared=True,
            ),
            Attribute("sampling_frequency_available", rate_avail, shared=True),
        ]
        if not output:
            attrs += [
                Attribute("bb_dc_offset_tracking_en", *self._flag("bb_dc_tracking"), shared=True),
                Attribute("gain_control_mode_available", _ro(" ".join(GAIN_MODES)), shared=True),
                Attribute("quadrature_tracking_en", *self._flag("quad_tracking"), shared=True),
                Attribute("rf_dc_offset_tracking_en", *self._flag("rf_dc_tracking"), shared=True),
            ]
        return sorted(attrs, key=lambda a: a.name)

    def _auxdac(self, index: int) -> Channel:
        s = self.state

        def write(val: str) -> None:
            mv = fixpoint(val)[0]
            if not 0 <= mv <= AUXDAC_MAX_MV:
                raise IIOError(errno.EINVAL, f"AUXDAC {mv} mV outside 0..{AUXDAC_MAX_MV}")
            s.auxdac_mv[index - 2] = mv

        own = [
            Attribute("raw", lambda: str(s.auxdac_mv[index - 2]), write),
            Attribute("scale", _ro("1.000000")),
        ]
        attrs = self._phy_shared(True) + own
        return Channel(f"voltage{index}", True, attrs=sorted(attrs, key=lambda a: a.name))

    def _build_phy(self) -> Device:
        s = self.state
        rx_own = [
            Attribute(
                "gain_control_mode",
                lambda: s.gain_mode,
                lambda val: self.set_choice("gain_mode", GAIN_MODES, val, "gain_mode"),
            ),
            Attribute("hardwaregain", lambda: f"{s.rx_gain_db}.000000 dB", self.set_rx_gain),
            Attribute("hardwaregain_available", lambda: "[{} 1 {}]".format(*self.rx_gain_range())),
            Attribute(
                "rf_port_select",
                lambda: s.rx_port,
                lambda val: self.set_choice("rx_port", tuple(RX_PORTS), val),
            ),
            Attribute("rssi", lambda: f"{s.rssi_db:.2f} dB"),
        ]
        phy_rx = Channel(
            "voltage0",
            False,
            attrs=sorted(self._phy_shared(False) + rx_own, key=lambda a: a.name),
        )
        tx_own = [
            Attribute("hardwaregain", self._tx_gain, self.set_tx_atten),
            Attribute(
                "hardwaregain_available",
                _ro(
                    f"[-{MAX_TX_ATTENUATION_MDB / 1000:.6f} "
                    f"{TX_ATTENUATION_STEP_MDB / 1000:.6f} 0.000000]"
                ),
            ),
            Attribute(
                "rf_port_select",
                lambda: s.tx_port,
                lambda val: self.set_choice("tx_port", TX_PORTS, val),
            ),
            Attribute("rssi", lambda: f"{s.tx_atten_mdb // 1000}.00 dB"),
        ]
        phy_tx = Channel(
            "voltage0", True, attrs=sorted(self._phy_shared(True) + tx_own, key=lambda a: a.name)
        )
        auxadc_own = [
            Attribute("offset", _ro("57")),
            Attribute("raw", lambda: str(975 + (s.temperature_mdeg - 38_000) // 1000)),
            Attribute("scale", _ro("0.305250")),
        ]
        auxadc = Channel(
            "voltage2",
            False,
            attrs=sorted([a for a in self._phy_shared(False)] + auxadc_own, key=lambda a: a.name),
        )
        fir_both = Channel(
            "out",
            False,
            attrs=[
                Attribute(
                    "voltage_filter_fir_en",
                    lambda: str(int(s.rx_fir_en and s.tx_fir_en)),
                    lambda val: self.set_fir_enable(kstrtobool(val), kstrtobool(val)),
                )
            ],
        )
        temp = Channel("temp0", False, attrs=[Attribute("input", lambda: str(s.temperature_mdeg))])
        xo_low, xo_high = XO_NOMINAL_HZ - XO_TUNE_RANGE_HZ, XO_NOMINAL_HZ + XO_TUNE_RANGE_HZ
        no_dcxo = _fails(errno.ENODEV, "the Pluto's AD9363 runs from an XO, not the DCXO")

        def dcxo_write(val: str) -> None:
            kstrtos(val, 32)
            raise IIOError(errno.ENODEV, "the Pluto's AD9363 runs from an XO, not the DCXO")

        def mcs_write(val: str) -> None:
            step = kstrtos(val, 32)
            if not 0 <= step <= 5:
                raise IIOError(errno.EINVAL, f"multichip_sync step {step} outside 0..5")

        return Device(
            "iio:device0",
            "ad9361-phy",
            channels=[
                self._lo_channel(1, "TX_LO", "tx"),
                phy_rx,
                self._auxdac(3),
                self._lo_channel(0, "RX_LO", "rx"),
                self._auxdac(2),
                temp,
                phy_tx,
                auxadc,
                fir_both,
            ],
            attrs=[
                Attribute(
                    "calib_mode",
                    lambda: s.calib_mode,
                    lambda val: self.set_choice("calib_mode", CALIB_MODES, val),
                ),
                Attribute("calib_mode_available", _ro(" ".join(CALIB_MODES))),
                Attribute("dcxo_tune_coarse", no_dcxo, dcxo_write),
                Attribute("dcxo_tune_coarse_available", _ro("[0 0 0]")),
                Attribute("dcxo_tune_fine", no_dcxo, dcxo_write),
                Attribute("dcxo_tune_fine_available", _ro("[0 0 0]")),
                Attribute(
                    "ensm_mode",
                    lambda: s.ensm_mode,
                    lambda val: self.set_choice("ensm_mode", ENSM_MODES, val, "ensm"),
                ),
                Attribute("ensm_mode_available", _ro(" ".join(ENSM_MODES))),
                Attribute("filter_fir_config", lambda: s.fir.summary(), self.set_fir_config),
                Attribute(
                    "gain_table_config",
                    _fails(errno.EIO, "the gain table is a binary attribute"),
                    self._set_gain_table,
                ),
                Attribute(
                    "multichip_sync", _fails(errno.EACCES, "write-only attribute"), mcs_write
                ),
                Attribute(
                    "rssi_gain_step_error",
                    _ro(
                        "lna_error: 0 0 0 0\nmixer_error: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
                        "gain_step_calib_reg_val: 0 0 0 0 0"
                    ),
                ),
                Attribute("rx_path_rates", self._rx_path_rates),
                Attribute(
                    "trx_rate_governor",
                    lambda: s.rate_governor,
                    lambda val: self.set_choice("rate_governor", ("nominal", "highest_osr"), val),
                ),
                Attribute("trx_rate_governor_available", _ro("nominal highest_osr")),
                Attribute("tx_path_rates", self._tx_path_rates),
                Attribute("xo_correction", lambda: str(s.xo_correction_hz), self.set_xo_correction),
                Attribute("xo_correction_available", _ro(f"[{xo_low} 1 {xo_high}]")),
            ],
            debug_attrs=self._phy_debug(),
        )

    def _phy_debug(self) -> list[Attribute]:
        """The driver's debugfs files: commands, then one per device-tree property."""
        s = self.state

        def command(name: str, nargs: int, allowed: Callable[[list[int]], bool]) -> Attribute:
            key = f"dbg_{name}"
            self.misc.setdefault(key, "0")

            def write(val: str) -> None:
                values = sscanf_ints(val, 4)
                if len(values) != nargs or not allowed(values):
                    raise IIOError(errno.EINVAL, f"bad {name} value {val!r}")
                self.misc[key] = str(values[0])

            return Attribute(name, lambda: self.misc[key], write)

        def gaininfo() -> str:
            return f"{s.rx_gain_db} 76 0 0 0 0 0 0"

        def no_cal_switch(val: str) -> None:
            raise IIOError(errno.ENODEV, "the Pluto has no calibration switch GPIOs")

        def initialize(val: str) -> None:
            if sscanf_ints(val, 4) != [1]:
                raise IIOError(errno.EINVAL, "initialize takes 1")

        def timing() -> str:
            rows = [f"{r:x}:" + "o " * 16 for r in range(16)]
            head = "DC" + "".join(f"{c:x}:" for c in range(16))
            return f"CLK: {self.chain.rx_samp} Hz 'o' = PASS\n{head}\n" + "\n".join(rows)

        def dt_attr(name: str) -> Attribute:
            def write(val: str) -> None:
                values = sscanf_ints(val, 4)
                if not values:
                    raise IIOError(errno.EINVAL, f"bad value {val!r}")
                self.debug_values[name] = values[0]

            return Attribute(name, lambda: str(self.debug_values[name]), write)

        attrs = [
            command("digital_tune", 1, lambda v: True),
            Attribute("calibration_switch_control", _ro("0"), no_cal_switch),
            command("multichip_sync", 1, lambda v: v[0] <= 5),
            Attribute("gaininfo_rx2", _fails(errno.EINVAL, "RX2 is not enabled (1R1T)")),
            Attribute("gaininfo_rx1", gaininfo),
            Attribute("bist_timing_analysis", timing),
            command("gpo_set", 2, lambda v: v[0] <= 0xF),
            command("bist_tone", 4, lambda v: v[0] <= 2),
            command("bist_prbs", 1, lambda v: v[0] <= 2),
            Attribute("loopback", lambda: str(s.loopback), self.set_loopback),
            Attribute("initialize", _ro("0"), initialize),
        ]
        attrs += [dt_attr(name) for name, _ in DT_PROPERTIES]
        attrs.append(DirectRegAccess(None, self.spi).attribute())
        return attrs

    def _build_xadc(self) -> Device:
        s = self.state
        channels = []
        for chan_id, label, volts, scale in XADC_RAILS:
            raw = str(int(round(volts * 1000 / scale)))
            channels.append(
                Channel(
                    chan_id,
                    False,
                    name=label,
                    attrs=[Attribute("raw", _ro(raw)), Attribute("scale", _ro(f"{scale:.9f}"))],
                )
            )

        def temp_raw() -> str:
            return str(int(round(s.temperature_mdeg / XADC_TEMP_SCALE - XADC_TEMP_OFFSET)))

        channels.append(
            Channel(
                "temp0",
                False,
                attrs=[
                    Attribute("offset", _ro(str(XADC_TEMP_OFFSET))),
                    Attribute("raw", temp_raw),
                    Attribute("scale", _ro(f"{XADC_TEMP_SCALE:.9f}")),
                ],
            )
        )

        def set_rate(val: str) -> None:
            rate = fixpoint(val)[0]
            if rate <= 0:
                raise IIOError(errno.EINVAL, f"xadc sampling_frequency {rate} must be positive")
            # the conversion clock divides a 50 MHz clock by 2..255; 26 clocks a sample
            div = min(255, max(2, round(XADC_CLOCK_HZ / 26 / rate)))
            self.xadc_rate_hz = XADC_CLOCK_HZ // div // 26

        return Device(
            "iio:device1",
            "xadc",
            channels=channels,
            attrs=[Attribute("sampling_frequency", lambda: str(self.xadc_rate_hz), set_rate)],
        )

    def _buffer_attrs(self, direction: str) -> list[Attribute]:
        def set_watermark(val: str) -> None:
            mark = kstrtou(val, 32)
            if mark == 0:
                raise IIOError(errno.EINVAL, "watermark must be at least 1")
            self.watermark[direction] = mark

        return [
            Attribute("data_available", _ro("0")),
            Attribute("length_align_bytes", _ro("8")),
            Attribute("watermark", lambda: str(self.watermark[direction]), set_watermark),
        ]

    def _fpga_rate(self, direction: str) -> list[Attribute]:
        s = self.state

        def avail() -> str:
            return f"{s.sample_rate_hz} {s.sample_rate_hz // 8} "

        def current() -> str:
            rate = self.rx_rate_hz if direction == "rx" else self.tx_rate_hz
            return str(int(rate))

        return [
            Attribute(
                "sampling_frequency",
                current,
                lambda val: self.set_fpga_rate(direction, val),
                shared=True,
            ),
            Attribute("sampling_frequency_available", avail, shared=True),
        ]

    def _calib(self, prefix: str, index: int, bias: bool) -> list[Attribute]:
        def phase_ok(val: str) -> None:
            if abs(fixpoint_float(val)) > 1.0:
                raise IIOError(errno.EINVAL, "calibphase outside [-1, 1]")

        def scale_ok(val: str) -> None:
            if abs(fixpoint_float(val)) >= 2.0:
                raise IIOError(errno.EINVAL, "calibscale outside (-2, 2)")

        attrs = [
            Attribute("calibphase", *self._stored(f"{prefix}{index}_phase", "0.000000", phase_ok)),
            Attribute("calibscale", *self._stored(f"{prefix}{index}_scale", "1.000000", scale_ok)),
        ]
        if bias:

            def bias_ok(val: str) -> None:
                value = fixpoint(val)[0]
                if not -(2**15) <= value < 2**15:
                    raise IIOError(errno.EINVAL, "calibbias outside the 16-bit range")

            attrs.insert(
                0, Attribute("calibbias", *self._stored(f"{prefix}{index}_bias", "0", bias_ok))
            )
        return attrs

    def _sync_start(self, core: str) -> list[Attribute]:
        key = f"{core}_sync"
        self.misc.setdefault(key, "disarm")

        def write(val: str) -> None:
            self.misc[key] = SYNC_START_MODES[sysfs_choice(val, SYNC_START_MODES)]

        return [
            Attribute("sync_start_enable", lambda: self.misc[key], write),
            Attribute("sync_start_enable_available", _ro(" ".join(SYNC_START_MODES))),
        ]

    def _sample_channel(self, index: int, output: bool, *extra: Attribute) -> Channel:
        """Sample channel ``voltage<index>`` of the DAC core (``output``) or the ADC core:
        its scan element, calibration, any ``extra`` attributes, then the FPGA rate."""
        core, direction, fmt = (
            ("dac", "tx", "le:S16/16>>0") if output else ("adc", "rx", "le:S12/16>>0")
        )
        return Channel(
            f"voltage{index}",
            output,
            scan=ScanElement(index, fmt),
            attrs=[
                *self._calib(core, index, bias=not output),
                *extra,
                *self._fpga_rate(direction),
            ],
        )

    def _build_adc(self) -> Device:
        no_pps = _fails(errno.ENODEV, "no PPS receiver in the core")
        return Device(
            "iio:device3",
            "cf-ad9361-lpc",
            channels=[
                self._sample_channel(i, False, Attribute("samples_pps", no_pps, shared=True))
                for i in range(2)
            ],
            attrs=[
                *self._sync_start("adc"),
            ],
            buffer_attrs=self._buffer_attrs("rx"),
            debug_attrs=[
                Attribute("pseudorandom_err_check", _ro("CH0 : PN9 : Out of Sync : PN Error")),
                DirectRegAccess(self.adc_core, self.spi).attribute(),
            ],
        )

    def _dds_channel(self, index: int) -> Channel:
        tone = self.dds.tones[index]

        def fs() -> float:
            return self.state.sample_rate_hz

        def set_freq(val: str) -> None:
            tone.set_frequency(fixpoint(val)[0], fs())
            self._changed("dds")

        def set_phase(val: str) -> None:
            tone.set_phase(fixpoint(val)[0])
            self._changed("dds")

        def set_scale(val: str) -> None:
            tone.set_scale(fixpoint_float(val))
            self._changed("dds")

        def set_raw(val: str) -> None:
            on = fixpoint(val)[0]
            if on not in (0, 1):
                raise IIOError(errno.EINVAL, "raw must be 0 or 1")
            self.dds.enabled = bool(on)  # one enable for every tone of the core
            self._changed("dds")

        return Channel(
            f"altvoltage{index}",
            True,
            name=tone.label,
            attrs=[
                Attribute("frequency", lambda: str(tone.frequency_hz(fs())), set_freq),
                Attribute("phase", lambda: str(tone.phase_mdeg), set_phase),
                Attribute("raw", lambda: str(int(self.dds.enabled)), set_raw),
                Attribute("sampling_frequency", lambda: str(int(fs())), shared=True),
                Attribute("scale", lambda: f"{tone.scale:f}", set_scale),
            ],
        )

    def _build_dac(self) -> Device:
        # the core's reset values (register 0 of the tone generators): 9279985 Hz-ish
        for tone, phase in zip(self.dds.tones, (90_000, 90_000, 0, 0), strict=True):
            tone.set_frequency(9_279_985, self.state.sample_rate_hz)
            tone.set_phase(phase)
        return Device(
            "iio:device2",
            "cf-ad9361-dds-core-lpc",
            channels=[self._sample_channel(i, True) for i in range(2)]
            + [self._dds_channel(i) for i in range(4)],
            attrs=[
                *self._sync_start("dac"),
            ],
            buffer_attrs=self._buffer_attrs("tx"),
            debug_attrs=[DirectRegAccess(self.dac_core).attribute()],
        )

    def _build_context(self) -> Context:
        v = self.variant
        return Context(
            devices=[self._build_phy(), self._build_xadc(), self._build_dac(), self._build_adc()],
            attrs={
                "hw_model": f"Analog Devices PlutoSDR Rev.C (Z7010-{v.model.upper()})",
                "hw_model_variant": "1",
                "hw_serial": self.serial,
                "fw_version": "v0.38",
                "ad9361-phy,xo_correction": str(XO_NOMINAL_HZ),
                "ad9361-phy,model": v.model,
                "local,kernel": "5.15.0-airmix-virtual",
            },
            description="airmix virtual PlutoSDR (AD9361 model on the simulated medium)",
        )

"""The PlutoSDR's device limits (its AD936x transceiver and the ad9361 IIO driver), written
once for every user: the configuration check of simulated radios (:mod:`radio.sim`),
the experiment schema (:mod:`orchestrator.config`) and the virtual Pluto's device model
(:mod:`hardware.ad9361_model`).

Integer constants are in the driver's units (Hz, dB, milli-dB); the ``*_RANGE_*`` tuples
are inclusive ``(low, high)`` bounds of a :class:`radio.base.RadioConfig` value on a
Pluto running :data:`PLUTO_VARIANT`.
"""

from __future__ import annotations

from dataclasses import dataclass

#: ADC clock and baseband PLL ranges of the clock chain, Hz
MIN_ADC_CLK = 25_000_000
MAX_ADC_CLK = 640_000_000
MIN_BBPLL = 715_000_000
MAX_BBPLL = 1_430_000_000
#: highest baseband sample rate, samples/s
MAX_RATE = 61_440_000
#: highest FIR decimation (the lowest sample rate is MIN_ADC_CLK / (12 * this))
MAX_FIR_DECIMATION = 4
#: lowest baseband sample rate the driver accepts (FIR decimating by 4), samples/s
MIN_RATE = MIN_ADC_CLK // (12 * MAX_FIR_DECIMATION)
#: lowest analog RF bandwidth, Hz
MIN_RF_BANDWIDTH_HZ = 200_000
#: TX attenuation: 0 (full power) to 89.75 dB in 0.25 dB steps, milli-dB
MAX_TX_ATTENUATION_MDB = 89_750
TX_ATTENUATION_STEP_MDB = 250
#: RX gain-table ranges of the driver (``abs_gain_tbl``) by RX LO band:
#: (LO upper bound exclusive Hz, min dB, max dB)
RX_GAIN_BANDS = ((1_300_000_000, -1, 73), (4_000_000_000, -3, 71), (10**12, -10, 62))


@dataclass(frozen=True)
class Variant:
    """Frequency and bandwidth limits of one firmware personality (Hz)."""

    model: str
    lo_min_hz: int
    lo_max_hz: int
    rx_bw_max_hz: int
    tx_bw_max_hz: int


#: "ad9363": stock firmware (325 MHz-3.8 GHz, 20 MHz); "ad9364": the common firmware
#: mod (70 MHz-6 GHz, 56/40 MHz)
VARIANTS: dict[str, Variant] = {
    "ad9363": Variant("ad9363a", 325_000_000, 3_800_000_000, 20_000_000, 20_000_000),
    "ad9364": Variant("ad9364", 70_000_000, 6_000_000_000, 56_000_000, 40_000_000),
}
#: the personality the testbed assumes of a Pluto
PLUTO_VARIANT = VARIANTS["ad9364"]


def rx_gain_range_db(lo_hz: float) -> tuple[int, int]:
    """(min, max) manual RX gain, dB, of the driver's gain table for an RX LO of ``lo_hz``."""
    for upper, low, high in RX_GAIN_BANDS:
        if lo_hz < upper:
            return low, high
    raise ValueError(f"RX LO {lo_hz} Hz beyond every gain band")


LO_RANGE_HZ = (float(PLUTO_VARIANT.lo_min_hz), float(PLUTO_VARIANT.lo_max_hz))
SAMPLE_RATE_RANGE_HZ = (float(MIN_RATE), float(MAX_RATE))
RF_BANDWIDTH_RANGE_HZ = (float(MIN_RF_BANDWIDTH_HZ), float(PLUTO_VARIANT.rx_bw_max_hz))
TX_ATTENUATION_RANGE_DB = (0.0, MAX_TX_ATTENUATION_MDB / 1000)
TX_ATTENUATION_STEP_DB = TX_ATTENUATION_STEP_MDB / 1000

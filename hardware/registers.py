"""Register spaces a Pluto exposes through the ``direct_reg_access`` debug attribute.

* :class:`SpiRegisters` - the AD9361's 10-bit SPI register map (8-bit registers),
  what ``ad9361-phy``'s ``direct_reg_access`` and the ADC core's non-core addresses
  reach.
* :class:`AxiCoreRegisters` - an AXI ADC/DAC core (``cf-ad9361-lpc`` /
  ``cf-ad9361-dds-core-lpc``): 32-bit registers; the status register at ``0x0088``
  holds sticky flags that are cleared by writing 1 (ADC: bit 2 overflow, bit 1
  underflow; DAC: bit 0 underflow), as pyadi-iio's ``reg_read(0x80000088)`` sees.
* :class:`DirectRegAccess` - the debugfs file itself (``iio_debugfs_write_reg`` /
  ``iio_debugfs_read_reg``): a write of ``"ADDR"`` selects a register, ``"ADDR VAL"``
  writes it (``sscanf("%i %i")``, anything else ``EINVAL``); a read returns the
  selected register as ``0x%X``. Addresses with bit 31 set
  (``DEBUGFS_DRA_PCORE_REG_MAGIC``) reach the FPGA core, others the converter.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable

from hardware.iiod.context import Attribute, IIOError
from hardware.kparse import sscanf_ints

PCORE_MAGIC = 0x80000000
STATUS_REG = 0x0088
ADC_OVERFLOW = 1 << 2
ADC_UNDERFLOW = 1 << 1
DAC_UNDERFLOW = 1 << 0
AD9361_PRODUCT_ID_REG = 0x037
AD9361_PRODUCT_ID = 0x0A  # product 0x08 | revision 2


class SpiRegisters:
    """The AD9361 SPI register map: 1024 addresses of 8 bits (``AD_ADDR`` masks 10 bits)."""

    def __init__(self) -> None:
        self.values = bytearray(1024)
        self.values[AD9361_PRODUCT_ID_REG] = AD9361_PRODUCT_ID

    def read(self, addr: int) -> int:
        return self.values[addr & 0x3FF]

    def write(self, addr: int, value: int) -> None:
        if addr & 0x3FF != AD9361_PRODUCT_ID_REG:  # the product id is read-only
            self.values[addr & 0x3FF] = value & 0xFF


class AxiCoreRegisters:
    """An AXI converter core's 16-bit register space with sticky status bits.

    Args:
        version: the ``PCORE_VERSION`` register (address 0) value.
        sticky_mask: status bits at :data:`STATUS_REG` that are write-1-to-clear.
    """

    def __init__(self, version: int, sticky_mask: int) -> None:
        self.values: dict[int, int] = {0x0000: version}
        self.sticky_mask = sticky_mask
        self._lock = threading.Lock()
        #: Optional poll of the data path: returns status bits that happened since the
        #: last call (e.g. the medium's RX overflow); latched before the status is read.
        self.status_source: Callable[[], int] | None = None

    def read(self, addr: int) -> int:
        addr &= 0xFFFF
        if addr == STATUS_REG and self.status_source is not None:
            self.set_status(self.status_source())
        with self._lock:
            return self.values.get(addr, 0)

    def write(self, addr: int, value: int) -> None:
        addr &= 0xFFFF
        with self._lock:
            if addr == 0x0000:
                return  # version: read-only
            if addr == STATUS_REG:
                self.values[addr] = self.values.get(addr, 0) & ~(value & self.sticky_mask)
                return
            self.values[addr] = value & 0xFFFFFFFF

    def set_status(self, bits: int) -> None:
        """Latch status ``bits`` (what the HDL does on an overflow/underflow)."""
        with self._lock:
            self.values[STATUS_REG] = self.values.get(STATUS_REG, 0) | bits

    def status(self, bits: int) -> bool:
        """True when any of ``bits`` is latched."""
        return bool(self.read(STATUS_REG) & bits)


class DirectRegAccess:
    """One device's ``direct_reg_access`` debug file.

    Args:
        core: the FPGA core reached by addresses with bit 31 set (None: the device
            has no core, e.g. ``ad9361-phy``).
        converter: the SPI registers reached by other addresses (None: they go to the
            core too, as on the DDS core, whose default read is its version register).
    """

    def __init__(
        self, core: AxiCoreRegisters | None, converter: SpiRegisters | None = None
    ) -> None:
        if core is None and converter is None:
            raise ValueError("direct_reg_access needs a core or a converter")
        self.core = core
        self.converter = converter
        self.selected = 0

    def _target(self, addr: int) -> AxiCoreRegisters | SpiRegisters:
        if self.core is not None and (addr & PCORE_MAGIC or self.converter is None):
            return self.core
        assert self.converter is not None
        return self.converter

    def read(self) -> str:
        return f"0x{self._target(self.selected).read(self.selected):X}"

    def write(self, text: str) -> None:
        values = sscanf_ints(text, 2)
        if len(values) == 1:
            self.selected = values[0]
        elif len(values) == 2:
            addr, value = values
            if self.core is not None and addr & PCORE_MAGIC and addr & ~PCORE_MAGIC > 0xFFFF:
                raise IIOError(errno.EINVAL, f"core register 0x{addr:X} out of range")
            self._target(addr).write(addr, value)
        else:
            raise IIOError(errno.EINVAL, f"direct_reg_access expects 'ADDR [VALUE]', got {text!r}")

    def attribute(self) -> Attribute:
        """The debug attribute serving this register file."""
        return Attribute("direct_reg_access", self.read, self.write)

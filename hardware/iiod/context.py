"""In-memory IIO context: devices, channels, attributes and the XML that libiio reads.

The objects here are what the IIOD server serves; a device model (for example
:mod:`hardware.ad9361_model`) builds them with read/write callables. The XML follows
libiio 0.24 (``context.c``/``device.c``/``channel.c``) including the inline DTD that
``iio_create_xml_context_mem`` validates against (``XML_PARSE_DTDVALID``).

Channel order follows libiio's ``reorder_channels``: channels with a scan element first,
sorted by (index, shift), then the others in declaration order. A channel's position in
that order is its bit in buffer masks.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

#: The DOCTYPE the real iiod sends (libiio 0.24 ``context.c``, ``xml_header``).
XML_HEADER = (
    '<?xml version="1.0" encoding="utf-8"?>'
    "<!DOCTYPE context ["
    "<!ELEMENT context (device | context-attribute)*>"
    "<!ELEMENT context-attribute EMPTY>"
    "<!ELEMENT device (channel | attribute | debug-attribute | buffer-attribute)*>"
    "<!ELEMENT channel (scan-element?, attribute*)>"
    "<!ELEMENT attribute EMPTY>"
    "<!ELEMENT scan-element EMPTY>"
    "<!ELEMENT debug-attribute EMPTY>"
    "<!ELEMENT buffer-attribute EMPTY>"
    "<!ATTLIST context name CDATA #REQUIRED version-major CDATA #REQUIRED "
    "version-minor CDATA #REQUIRED version-git CDATA #REQUIRED description CDATA #IMPLIED>"
    "<!ATTLIST context-attribute name CDATA #REQUIRED value CDATA #REQUIRED>"
    "<!ATTLIST device id CDATA #REQUIRED name CDATA #IMPLIED label CDATA #IMPLIED>"
    "<!ATTLIST channel id CDATA #REQUIRED type (input|output) #REQUIRED name CDATA #IMPLIED>"
    "<!ATTLIST scan-element index CDATA #REQUIRED format CDATA #REQUIRED scale CDATA #IMPLIED>"
    "<!ATTLIST attribute name CDATA #REQUIRED filename CDATA #IMPLIED>"
    "<!ATTLIST debug-attribute name CDATA #REQUIRED>"
    "<!ATTLIST buffer-attribute name CDATA #REQUIRED>"
    "]>"
)

_FORMAT_RE = re.compile(r"^([lb])e:([sSuU])(\d+)/(\d+)(?:X(\d+))?>>(\d+)$")
_INDEX_RE = re.compile(r"\d+$")


class IIOError(Exception):
    """An IIO operation failed with ``errno`` (sent to the client as ``-errno``)."""

    def __init__(self, err: int, message: str = "") -> None:
        super().__init__(message or errno.errorcode.get(err, str(err)))
        self.errno = err


Reader = Callable[[], str]
Writer = Callable[[str], None]


@dataclass
class Attribute:
    """One attribute: ``read() -> str`` and optionally ``write(value: str)``.

    ``write`` receives the value with the trailing NUL and whitespace stripped and
    raises :class:`IIOError` (e.g. ``EINVAL``) to reject it; ``None`` means read-only
    (writes fail with ``EACCES`` as on a read-only sysfs file).

    ``filename`` is the sysfs file name of a channel attribute (what libiio's
    ``iio_device_identify_filename`` and gr-iio look attributes up by); a
    :class:`Channel` fills it in from its id, label and ``shared`` when not given:
    ``shared`` marks an attribute shared by all channels of one type and direction
    (``info_mask_shared_by_type``, e.g. ``in_voltage_sampling_frequency``).
    """

    name: str
    read: Reader
    write: Writer | None = None
    filename: str | None = None
    shared: bool = False

    def get(self) -> str:
        return self.read()

    def set(self, value: str) -> None:
        if self.write is None:
            raise IIOError(errno.EACCES, f"attribute {self.name} is read-only")
        self.write(value)


@dataclass(frozen=True)
class ScanElement:
    """Buffer layout of a channel: ``index`` and a libiio format like ``le:S12/16>>0``."""

    index: int
    format: str
    scale: float | None = None

    def __post_init__(self) -> None:
        if not _FORMAT_RE.match(self.format):
            raise ValueError(f"bad scan-element format {self.format!r}")

    @property
    def _parts(self) -> tuple[str, ...]:
        match = _FORMAT_RE.match(self.format)
        assert match is not None
        return match.groups()

    @property
    def bits(self) -> int:
        return int(self._parts[2])

    @property
    def length_bits(self) -> int:
        """Storage bits per sample (the ``/16`` part)."""
        return int(self._parts[3])

    @property
    def repeat(self) -> int:
        return int(self._parts[4] or 1)

    @property
    def shift(self) -> int:
        return int(self._parts[5])

    @property
    def signed(self) -> bool:
        return self._parts[1] in "sS"

    @property
    def big_endian(self) -> bool:
        return self._parts[0] == "b"

    @property
    def nbytes(self) -> int:
        return self.length_bits // 8 * self.repeat


@dataclass
class Channel:
    """An IIO channel: ``id`` (``voltage0``), direction, optional label and scan element."""

    id: str
    output: bool
    attrs: list[Attribute] = field(default_factory=list)
    name: str | None = None
    scan: ScanElement | None = None

    def __post_init__(self) -> None:
        for attribute in self.attrs:
            if attribute.filename is None:
                attribute.filename = sysfs_filename(self, attribute)

    @property
    def type(self) -> str:
        """The IIO channel type: the id without its index (``voltage0`` -> ``voltage``)."""
        return _INDEX_RE.sub("", self.id)

    def attr(self, name: str) -> Attribute:
        for attribute in self.attrs:
            if attribute.name == name:
                return attribute
        raise IIOError(errno.ENOENT, f"channel {self.id} has no attribute {name!r}")


@dataclass
class Device:
    """An IIO device with its channels and device/debug/buffer attributes."""

    id: str
    name: str
    channels: list[Channel] = field(default_factory=list)
    attrs: list[Attribute] = field(default_factory=list)
    debug_attrs: list[Attribute] = field(default_factory=list)
    buffer_attrs: list[Attribute] = field(default_factory=list)
    label: str | None = None

    def __post_init__(self) -> None:
        self.channels = ordered_channels(self.channels)

    @property
    def scan_channels(self) -> list[Channel]:
        """Channels with a scan element, in mask-bit order."""
        return [c for c in self.channels if c.scan is not None]

    @property
    def is_output(self) -> bool:
        """True for a buffer device whose scan channels are outputs (a DAC)."""
        scan = self.scan_channels
        return bool(scan) and all(c.output for c in scan)

    @property
    def mask_words(self) -> int:
        """32-bit words in this device's channel mask."""
        return (len(self.channels) + 31) // 32

    def find_channel(self, name: str, output: bool) -> Channel | None:
        """The channel whose id or label is ``name`` in direction ``output``."""
        for chan in self.channels:
            if chan.output == output and (chan.id == name or chan.name == name):
                return chan
        return None

    def attr_list(self, kind: str) -> list[Attribute]:
        return {"device": self.attrs, "debug": self.debug_attrs, "buffer": self.buffer_attrs}[kind]

    def xml(self) -> str:
        parts = [f"<device id={quoteattr(self.id)} name={quoteattr(self.name)}"]
        if self.label:
            parts.append(f" label={quoteattr(self.label)}")
        parts.append(" >")
        for chan in self.channels:
            parts.append(f"<channel id={quoteattr(chan.id)}")
            if chan.name:
                parts.append(f" name={quoteattr(chan.name)}")
            parts.append(f' type="{"output" if chan.output else "input"}" >')
            if chan.scan is not None:
                scale = f'scale="{chan.scan.scale:f}" ' if chan.scan.scale is not None else ""
                fmt = chan.scan.format.replace(">", "&gt;")
                parts.append(f'<scan-element index="{chan.scan.index}" format="{fmt}" {scale}/>')
            for attribute in chan.attrs:
                if attribute.filename:
                    parts.append(
                        f"<attribute name={quoteattr(attribute.name)} "
                        f"filename={quoteattr(attribute.filename)} />"
                    )
                else:
                    parts.append(f"<attribute name={quoteattr(attribute.name)} />")
            parts.append("</channel>")
        for attribute in self.attrs:
            parts.append(f"<attribute name={quoteattr(attribute.name)} />")
        for attribute in self.buffer_attrs:
            parts.append(f"<buffer-attribute name={quoteattr(attribute.name)} />")
        for attribute in self.debug_attrs:
            parts.append(f"<debug-attribute name={quoteattr(attribute.name)} />")
        parts.append("</device>")
        return "".join(parts)


def sysfs_filename(chan: Channel, attribute: Attribute) -> str:
    """The kernel's sysfs name of a channel attribute (``iio_device_add_channel_sysfs``):
    ``{in|out}_{type}{index}[_{extend_name}]_{attr}``, or ``{in|out}_{type}_{attr}``
    for an attribute shared by type."""
    prefix = "out" if chan.output else "in"
    if attribute.shared:
        return f"{prefix}_{chan.type}_{attribute.name}"
    label = f"_{chan.name}" if chan.name else ""
    return f"{prefix}_{chan.id}{label}_{attribute.name}"


def ordered_channels(channels: Iterable[Channel]) -> list[Channel]:
    """libiio's channel order: scan elements by (index, shift), then the rest as given."""
    chans = list(channels)
    scan = [c for c in chans if c.scan is not None]
    rest = [c for c in chans if c.scan is None]
    scan.sort(key=lambda c: (c.scan.index, c.scan.shift))  # type: ignore[union-attr]
    return scan + rest


@dataclass
class Context:
    """An IIO context: devices plus context attributes, served as libiio XML."""

    devices: list[Device]
    attrs: dict[str, str] = field(default_factory=dict)
    name: str = "local"
    description: str = ""
    version: tuple[int, int, str] = (0, 24, "airmix0")

    def find_device(self, name: str) -> Device | None:
        """Look a device up by id, label or name (like ``iio_context_find_device``)."""
        for dev in self.devices:
            if name in (dev.id, dev.label, dev.name):
                return dev
        return None

    def xml(self) -> str:
        major, minor, git = self.version
        parts = [
            XML_HEADER,
            f'<context name={quoteattr(self.name)} version-major="{major}" '
            f'version-minor="{minor}" version-git={quoteattr(git)} ',
        ]
        parts.append(f"description={quoteattr(self.description)} >" if self.description else ">")
        for key, value in self.attrs.items():
            parts.append(f"<context-attribute name={quoteattr(key)} value={quoteattr(value)} />")
        parts.extend(dev.xml() for dev in self.devices)
        parts.append("</context>")
        return "".join(parts)


def sample_size(device: Device, mask: int) -> int:
    """Bytes per sample for the scan channels enabled in ``mask`` (libiio alignment)."""
    size = 0
    prev_index: int | None = None
    for number, chan in enumerate(device.channels):
        if chan.scan is None:
            break
        if not mask >> number & 1:
            continue
        if prev_index is not None and chan.scan.index == prev_index:
            continue
        length = chan.scan.nbytes
        size += 2 * length - size % length if size % length else length
        prev_index = chan.scan.index
    return size


def parse_mask(text: str, device: Device) -> int:
    """Parse a hex channel mask (8 digits per 32-bit word, most significant word first)."""
    if len(text) != device.mask_words * 8:
        raise IIOError(errno.EINVAL, f"mask {text!r} must have {device.mask_words * 8} digits")
    try:
        return int(text, 16)
    except ValueError as exc:
        raise IIOError(errno.EINVAL, f"mask {text!r} is not hex") from exc


def format_mask(mask: int, device: Device) -> str:
    """The mask as libiio prints it: ``%08x`` per word, most significant word first."""
    words = device.mask_words
    return "".join(f"{(mask >> (32 * i)) & 0xFFFFFFFF:08x}" for i in reversed(range(words)))

"""An IIOD (libiio network daemon) implementation: context model, parser, server, buffers."""

from hardware.iiod.buffers import BufferBackend, BufferSession, deinterleave, interleave
from hardware.iiod.context import (
    XML_HEADER,
    Attribute,
    Channel,
    Context,
    Device,
    IIOError,
    ScanElement,
    format_mask,
    parse_mask,
    sample_size,
)
from hardware.iiod.parser import Command, ParseError, parse_line
from hardware.iiod.server import DEFAULT_PORT, IIODServer

__all__ = [
    "DEFAULT_PORT",
    "XML_HEADER",
    "Attribute",
    "BufferBackend",
    "BufferSession",
    "Channel",
    "Command",
    "Context",
    "Device",
    "IIODServer",
    "IIOError",
    "ParseError",
    "ScanElement",
    "deinterleave",
    "format_mask",
    "interleave",
    "parse_line",
    "parse_mask",
    "sample_size",
]

"""Protocol Buffers wire primitives for the encoders that write OTLP bytes
directly (log_encoding, metric_encoding): tags are written by the callers
as constant bytes; these make varints, length-delimited fields and doubles."""

from __future__ import annotations

import struct

_SMALL_VARINTS = tuple(bytes((n,)) for n in range(0x80))

pack_double = struct.Struct("<d").pack


def varint(value: int) -> bytes:
    """A varint; a negative int64 as its two's complement (ten bytes)."""
    if 0 <= value < 0x80:
        return _SMALL_VARINTS[value]
    if 0 <= value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: tag byte, length, payload."""
    return bytes((tag,)) + varint(len(payload)) + payload

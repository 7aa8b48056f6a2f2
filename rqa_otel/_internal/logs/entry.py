"""One log record as it travels from the calling thread to the sinks."""

from __future__ import annotations

from typing import Any, NamedTuple


class LogEntry(NamedTuple):
    """A log record reduced to what is exported.

    On the hot path (handler, buffer, encoders) entries are plain tuples with
    these fields in this order, unpacked by position: the garbage collector
    stops tracking a tuple of plain values but never a tuple subclass, and
    tracked objects in flight trigger full collections that cost the
    strategy about a tenth of its logging throughput. This class names the
    fields, and code off the hot path (text formats, tests) uses it.
    ``attributes`` holds the quant attributes (``rqa.strategy``,
    ``rqa.stock``, ``rqa.signal``), the record's ``extra`` fields and, for
    exceptions, ``exception.type``/``exception.message``/``exception.stacktrace``.
    ``trace_id``/``span_id`` are 0 outside a span.
    """

    time_ns: int
    level: int
    logger: str
    message: str
    attributes: dict[str, Any]
    trace_id: int = 0
    span_id: int = 0
    trace_flags: int = 0

"""One log record as it travels from the calling thread to the sinks."""

from __future__ import annotations

from typing import Any, NamedTuple


class LogEntry(NamedTuple):
    """A log record reduced to what is exported.

    The calling thread queues the same fields as a plain tuple (cheaper for
    the garbage collector, see LogBuffer.take), and the worker gets them back
    as LogEntry. ``attributes`` holds the quant attributes (``rqa.strategy``,
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

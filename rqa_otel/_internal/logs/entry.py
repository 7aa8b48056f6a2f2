"""One log record as it travels from the calling thread to the sinks."""

from __future__ import annotations

from typing import Any, NamedTuple

from opentelemetry.context import get_current as _current_context
from opentelemetry.trace.propagation import _SPAN_KEY  # what trace.get_current_span() looks up


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


# The active span's ids, for correlating a record. trace.get_current_span()
# goes through three calls and get_span_context() plus int(flags) two more
# (~0.3 us); a backtest logs thousands of records per span, so the ids of the
# last span seen are kept. One tuple, replaced whole: safe across threads.
_last_span: tuple[object, tuple[int, int, int]] = (None, (0, 0, 0))


def active_span_ids() -> tuple[int, int, int]:
    """(trace_id, span_id, trace_flags) of the active span; zeros outside one."""
    global _last_span
    span = _current_context().get(_SPAN_KEY)
    last = _last_span
    if span is last[0]:
        return last[1]
    if span is None:
        ids = (0, 0, 0)
    else:
        context = span.get_span_context()
        ids = (context.trace_id, context.span_id, int(context.trace_flags))
    _last_span = (span, ids)
    return ids

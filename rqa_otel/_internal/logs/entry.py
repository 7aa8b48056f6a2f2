"""One log record as it travels from the calling thread to the sinks."""

from __future__ import annotations

from typing import Any


class LogEntry:
    """A log record reduced to what is exported.

    Built in the calling thread (so it must be cheap: no dataclass machinery,
    no OTel attribute validation) and handed to the export worker.
    ``attributes`` holds the quant attributes (``rqa.strategy``,
    ``rqa.stock``, ``rqa.signal``), the record's ``extra`` fields and, for
    exceptions, ``exception.type``/``exception.message``/``exception.stacktrace``.
    ``trace_id``/``span_id`` are 0 outside a span.
    """

    __slots__ = ("time_ns", "level", "logger", "message", "attributes", "trace_id", "span_id", "trace_flags")

    def __init__(
        self,
        time_ns: int,
        level: int,
        logger: str,
        message: str,
        attributes: dict[str, Any],
        trace_id: int = 0,
        span_id: int = 0,
        trace_flags: int = 0,
    ) -> None:
        self.time_ns = time_ns
        self.level = level
        self.logger = logger
        self.message = message
        self.attributes = attributes
        self.trace_id = trace_id
        self.span_id = span_id
        self.trace_flags = trace_flags

    def __repr__(self) -> str:
        return f"LogEntry({self.level}, {self.logger!r}, {self.message!r}, {self.attributes!r})"

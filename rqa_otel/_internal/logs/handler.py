"""The stdlib logging handler: the only part of the pipeline in the caller's thread.

It does the least that must happen at call time (sampling, the message text,
the quant attributes, the active span) and hands a LogEntry to the bounded
buffer; encoding, scrubbing and sending happen in the export worker.
"""

from __future__ import annotations

import logging
import traceback

from opentelemetry import trace

from rqa_otel import names
from rqa_otel._internal.logs.buffer import INTERNAL_ERROR, SAMPLED, Drops, LogBuffer
from rqa_otel._internal.logs.entry import LogEntry
from rqa_otel._internal.logs.sampling import Sampler
from rqa_otel.quant import as_text, bound_quant_fields

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_STANDARD_COUNT = len(vars(logging.LogRecord("", 0, "", 0, "", (), None)))
# `extra` keys that carry the quant fields: the design's QuantFilter names and ours.
_QUANT_KEYS = {
    "strategy": names.STRATEGY,
    "stock": names.STOCK,
    "signal": names.SIGNAL,
    names.STRATEGY: names.STRATEGY,
    names.STOCK: names.STOCK,
    names.SIGNAL: names.SIGNAL,
}
_get_current_span = trace.get_current_span


class QuantLogHandler(logging.Handler):
    def __init__(
        self, buffer: LogBuffer, sampler: Sampler, drops: Drops, default_strategy: str, level: int = logging.NOTSET
    ) -> None:
        super().__init__(level)
        self._buffer = buffer
        self._sampler = sampler
        self._drops = drops
        self._default_strategy = default_strategy

    def handle(self, record: logging.LogRecord) -> bool:
        # The base class takes a lock around emit(); everything emit() touches
        # is thread-safe on its own, and the lock would serialise all callers.
        if self.filters and not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if not self._sampler.admit(record.name, record.levelno):
                self._drops.add(SAMPLED, record.levelno)
                return
            self._buffer.put(self.entry(record))
        except Exception:  # telemetry never raises into the strategy
            self._drops.add(INTERNAL_ERROR, record.levelno)

    def entry(self, record: logging.LogRecord) -> LogEntry:
        fields = record.__dict__
        bound = bound_quant_fields()
        attributes = {
            names.STRATEGY: bound.strategy or self._default_strategy,
            names.STOCK: bound.stock or names.DEFAULT_STOCK,
            names.SIGNAL: bound.signal or names.DEFAULT_SIGNAL,
        }
        if len(fields) > _STANDARD_COUNT:  # the record has `extra` fields
            for key in fields.keys() - _STANDARD:
                value = fields[key]
                quant = _QUANT_KEYS.get(key)
                if quant is not None:
                    if value is not None:
                        attributes[quant] = as_text(value)
                else:
                    attributes[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            kind, error, _ = record.exc_info
            attributes["exception.type"] = kind.__name__
            attributes["exception.message"] = str(error)
            attributes["exception.stacktrace"] = record.exc_text or "".join(
                traceback.format_exception(*record.exc_info)
            )
        context = _get_current_span().get_span_context()
        return LogEntry(
            int(record.created * 1e9),
            record.levelno,
            record.name,
            record.getMessage(),
            attributes,
            context.trace_id,
            context.span_id,
            context.trace_flags,
        )

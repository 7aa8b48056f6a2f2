"""The stdlib logging handler: the only part of the pipeline in the caller's thread.

It does the least that must happen at call time (sampling, the message text,
the quant attributes, the active span) and hands a LogEntry to the bounded
buffer; encoding, scrubbing and sending happen in the export worker.
"""

from __future__ import annotations

import logging
import traceback
from itertools import islice

from rqa_otel import names
from rqa_otel.export.log_entry import LAST_SPAN as _LAST_SPAN
from rqa_otel.export.log_entry import SPAN_KEY as _SPAN_KEY
from rqa_otel.export.log_entry import current_context as _current_context
from rqa_otel.export.log_entry import span_ids as _span_ids
from rqa_otel.logs.buffer import INTERNAL_ERROR, SAMPLED, Drops, LogBuffer
from rqa_otel.logs.sampling import Sampler
from rqa_otel.quant import bound_quant_fields

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
_bound_get = bound_quant_fields
_STRATEGY, _STOCK, _SIGNAL = names.STRATEGY, names.STOCK, names.SIGNAL
_DEFAULT_STOCK, _DEFAULT_SIGNAL = names.DEFAULT_STOCK, names.DEFAULT_SIGNAL
_CODE_FILE_PATH, _CODE_FUNCTION_NAME, _CODE_LINE_NUMBER = names.CODE_FILE_PATH, names.CODE_FUNCTION_NAME, names.CODE_LINE_NUMBER


_WARNING = logging.WARNING
_LogRecord = logging.LogRecord


def _to_last_resort_if_unhandled(record: logging.LogRecord, ours: logging.Handler) -> None:
    """What Logger.callHandlers does when no handler was found: hand the
    record to logging.lastResort (stderr, the message and any traceback).
    Our handler on the root logger would otherwise swallow it."""
    last_resort = logging.lastResort
    if last_resort is None or record.levelno < last_resort.level:
        return
    logger: logging.Logger | None = logging.getLogger(record.name) if record.name != "root" else logging.getLogger()
    while logger is not None:
        if any(handler is not ours for handler in logger.handlers):
            return
        if not logger.propagate:
            break
        logger = logger.parent  # type: ignore[assignment]
    last_resort.handle(record)


class QuantLogHandler(logging.Handler):
    def __init__(
        self, buffer: LogBuffer, sampler: Sampler, drops: Drops, default_strategy: str, level: int = logging.NOTSET,
        code_attributes: bool = False,
    ) -> None:
        super().__init__(level)
        self._code_attributes = code_attributes
        self._buffer = buffer
        self._sampler = sampler
        self._drops = drops
        self._default_strategy = default_strategy
        self._sampling = bool(sampler.rules)
        self.stands_in_for_last_resort = False
        """Set when this handler sits on the root logger: a warning no other
        handler takes is still printed by logging.lastResort, as it would
        be without telemetry (the user's console stays the user's)."""

    def set_sampling_rules(self, rules) -> None:
        """Sampling rules from a settings reload."""
        self._sampler.replace_rules(rules)
        self._sampling = bool(self._sampler.rules)

    def handle(self, record: logging.LogRecord) -> bool:
        # The base class takes a lock around emit(); everything emit() touches
        # is thread-safe on its own, and the lock would serialise all callers.
        # emit()'s work is done here, one Python call fewer per record: in a
        # strategy every logging call comes between long stretches of its own
        # code, with cold caches, and each frame costs several times what it
        # does in a loop of logging calls.
        if self.filters and not self.filter(record):
            return False
        levelno = record.levelno
        try:
            if self._sampling and levelno < _WARNING and not self._sampler.admit(record.name, levelno):
                self._drops.add(SAMPLED, levelno)
            else:
                self._buffer.put(self.entry(record))
        except Exception:  # telemetry never raises into the strategy
            self._drops.add(INTERNAL_ERROR, levelno)
        if "signal" not in record.__dict__:  # sampled out or failed: entry() did not stamp it
            strategy, stock, signal = _bound_get()
            fields = record.__dict__
            fields.setdefault("stock", stock or _DEFAULT_STOCK)
            fields.setdefault("strategy", strategy or self._default_strategy)
            fields["signal"] = signal or _DEFAULT_SIGNAL
        if self.stands_in_for_last_resort and levelno >= _WARNING:
            _to_last_resort_if_unhandled(record, self)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """What handle() does with a record, without the filters and the
        quant attributes of a record sampled out (for a caller of emit())."""
        try:
            if self._sampling and not self._sampler.admit(record.name, record.levelno):
                self._drops.add(SAMPLED, record.levelno)
                return
            self._buffer.put(self.entry(record))
        except Exception:  # telemetry never raises into the strategy
            self._drops.add(INTERNAL_ERROR, record.levelno)

    def entry(self, record: logging.LogRecord) -> tuple:
        # The hot path of every logging call: plain dict and tuple work only.
        fields = record.__dict__
        strategy, stock, signal = _bound_get()
        attributes = {
            _STRATEGY: strategy or self._default_strategy,
            _STOCK: stock or _DEFAULT_STOCK,
            _SIGNAL: signal or _DEFAULT_SIGNAL,
        }
        if len(fields) > _STANDARD_COUNT:
            # `extra` keys are set after the standard ones, so they sit at the
            # end of the record's __dict__ (with any a formatter added).
            for key in islice(fields, _STANDARD_COUNT, None):
                quant = _QUANT_KEYS.get(key)
                if quant is not None:
                    value = fields[key]
                    if value is not None:  # quant fields are text; anything else is coerced
                        attributes[quant] = value if value.__class__ is str else str(value)
                elif key not in _STANDARD:
                    attributes[key] = fields[key]
        # The design's QuantFilter attributes, for handlers that format
        # %(stock)s after this one (set after the extras were read above).
        if "stock" not in fields:
            fields["stock"] = attributes[_STOCK]
        if "strategy" not in fields:
            fields["strategy"] = attributes[_STRATEGY]
        if "signal" not in fields:
            fields["signal"] = attributes[_SIGNAL]
        if record.exc_info and record.exc_info[0] is not None:
            kind, error, _ = record.exc_info
            attributes["exception.type"] = kind.__name__
            attributes["exception.message"] = str(error)
            attributes["exception.stacktrace"] = record.exc_text or "".join(
                traceback.format_exception(*record.exc_info)
            )
        if self._code_attributes:  # setting logging.code_attributes
            attributes[_CODE_FILE_PATH] = record.pathname
            attributes[_CODE_FUNCTION_NAME] = record.funcName
            attributes[_CODE_LINE_NUMBER] = record.lineno
        # LogRecord.getMessage() and active_span_ids(), inlined for a plain
        # LogRecord (a record factory's class may have its own getMessage).
        if record.__class__ is _LogRecord:
            message = record.msg
            if message.__class__ is not str:
                message = str(message)
            if record.args:
                message = message % record.args
        else:
            message = record.getMessage()
        span = _current_context().get(_SPAN_KEY)
        last = _LAST_SPAN[0]
        ids = last[1] if span is last[0] else _span_ids(span)
        # The fields of a LogEntry as a plain tuple, which the garbage
        # collector stops tracking (see LogBuffer.take).
        return (int(record.created * 1e9), record.levelno, record.name, message, attributes) + ids

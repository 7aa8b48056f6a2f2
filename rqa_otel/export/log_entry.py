"""One log record as it travels from the calling thread to the sinks."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from opentelemetry import context as _context
from opentelemetry.trace.propagation import _SPAN_KEY  # what trace.get_current_span() looks up


def _context_getter():
    """get_current() of the OTel context API is two Python calls around one
    ContextVar.get(); with the default (contextvars) runtime context, call
    that directly. Any other runtime context goes through the API."""
    runtime = getattr(_context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if type(variable).__name__ == "ContextVar" and runtime.get_current() is variable.get():
        return variable.get
    return _context.get_current


_current_context = _context_getter()


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
    ``trace_id``/``span_id`` are 0 outside a span. (A tuple holding a dict
    stays tracked; entries of a registered ``EventShape`` carry ``None`` as
    attributes and their values flat after ``trace_flags``, see there.)
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
# last span seen are kept: LAST_SPAN[0] is (span, (trace_id, span_id,
# trace_flags)), one tuple replaced whole, safe across threads. The log
# handler and the event emitters read it inline:
#     span = current_context().get(SPAN_KEY); last = LAST_SPAN[0]
#     ids = last[1] if span is last[0] else span_ids(span)
LAST_SPAN: list[tuple[object, tuple[int, int, int]]] = [(None, (0, 0, 0))]
SPAN_KEY = _SPAN_KEY
current_context = _current_context


def active_span_ids() -> tuple[int, int, int]:
    """(trace_id, span_id, trace_flags) of the active span; zeros outside one."""
    span = _current_context().get(_SPAN_KEY)
    last = LAST_SPAN[0]
    if span is last[0]:
        return last[1]
    return span_ids(span)


def span_ids(span) -> tuple[int, int, int]:
    """The ids of ``span`` (None: zeros), kept in LAST_SPAN."""
    if span is None:
        ids = (0, 0, 0)
    else:
        context = span.get_span_context()
        ids = (context.trace_id, context.span_id, int(context.trace_flags))
    LAST_SPAN[0] = (span, ids)
    return ids


class EventShape(NamedTuple):
    """The fixed attributes of a high-rate event (a trade), registered once.

    An entry of a registered shape (its logger name is ``name``) may carry
    ``None`` as its attributes and the attribute values themselves after
    the trace flags, flat, in the order ``strings + floats + ints``:
    ``(time, level, name, message, None, trace_id, span_id, flags, *values)``.
    The garbage collector untracks a tuple of plain values at its first
    pass; a dict, or a nested tuple, keeps the entry tracked one generation
    longer, and thousands of entries in flight then make the older
    generations' collections frequent (15 % of a backtest's time). The
    producer guarantees the types: exact ``str``, finite ``float`` and
    ``int``, so that the OTLP-JSON encoder writes the whole record from one
    template.
    """

    name: str
    strings: tuple[str, ...]
    floats: tuple[str, ...]
    ints: tuple[str, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return self.strings + self.floats + self.ints


SHAPED_VALUES = 8
"""Index of a shaped entry's first attribute value."""

_shapes: dict[str, EventShape] = {}
# Every shape of a name by its number of values: an event may have variants
# (a trade with its order's id and type, one without), told apart by size.
_sized: dict[tuple[str, int], EventShape] = {}


def register_shape(shape: EventShape) -> EventShape:
    """Declare an event shape; the same one may be registered again."""
    known = _shapes.setdefault(shape.name, shape)
    if known != shape:
        raise ValueError(f"event {shape.name!r} is already registered with other attributes: {known}")
    _sized[(shape.name, len(shape.keys))] = shape
    return shape


def register_variant(shape: EventShape) -> EventShape:
    """Declare a further shape of an already registered event, with another
    number of values than each of its shapes (entries are told apart by
    their length); the same one may be registered again."""
    if shape.name not in _shapes:
        raise ValueError(f"event {shape.name!r}: register its shape before a variant")
    known = _sized.setdefault((shape.name, len(shape.keys)), shape)
    if known != shape:
        raise ValueError(f"event {shape.name!r} already has a shape of {len(shape.keys)} values: {known}")
    return shape


def shape_of(name: str, size: int | None = None) -> EventShape:
    """The shape of ``name`` (its first), or its variant of ``size`` values."""
    return _shapes[name] if size is None else _sized[(name, size)]


def shaped_entry(time_ns: int, level: int, name: str, message: str, values: tuple) -> tuple:
    """An entry of the registered shape ``name``, correlated with the active span."""
    return (time_ns, level, name, message, None, *active_span_ids(), *values)


def shaped_emitter(put: Callable[[tuple], None], name: str, level: int) -> Callable[[str, tuple, int], None]:
    """``emit(message, values, time_ns)``: ``put(shaped_entry(...))`` in one
    call, for events recorded hundreds of thousands of times a second."""
    shape_of(name)  # registered, or KeyError now rather than in the export worker
    get_context = _current_context
    last_span = LAST_SPAN

    def emit(message: str, values: tuple, time_ns: int) -> None:
        span = get_context().get(_SPAN_KEY)
        last = last_span[0]
        ids = last[1] if span is last[0] else span_ids(span)
        put((time_ns, level, name, message, None) + ids + values)  # concatenation: faster than unpacking

    return emit


def attributes_of(entry: tuple) -> dict[str, Any]:
    """An entry's attributes as a dict, shaped or not."""
    attributes = entry[4]
    if attributes is None:
        return dict(zip(_sized[(entry[2], len(entry) - SHAPED_VALUES)].keys, entry[SHAPED_VALUES:]))
    return attributes


def with_attribute_dict(entry: tuple) -> tuple:
    """The entry with its attributes as a dict, in LogEntry's 8 fields (for
    code off the hot path)."""
    if entry[4] is None:
        return (*entry[:4], attributes_of(entry), *entry[5:SHAPED_VALUES])
    return entry

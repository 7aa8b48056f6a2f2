"""Quant attributes bound to a block of code.

    from rqa_otel.quant import quant_context

    for bar in bars:
        with quant_context(stock=bar.symbol, signal=signal):
            log.info("order sent")      # carries rqa.stock and rqa.signal

Bindings live in a ContextVar, so each thread and each asyncio task sees
its own; nested blocks override only the fields they name. A value given
per call (``extra={"stock": ...}``) beats a bound one.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator, NamedTuple

# What no tag or series name can carry: C0 and C1 control characters (a
# newline ends an InfluxDB line; a terminal escape drives a terminal), the
# Unicode line and paragraph separators, and lone surrogates (not UTF-8).
_UNCARRIABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]").search


def check_label(field: str, value: str) -> str:
    """``value`` itself, or ValueError naming ``field`` when it holds a
    character no series or tag can carry (docs/telemetry.md, "Values that
    name a series"). Strategy, symbol, signal and alert names pass here
    once per series, not per call."""
    found = _UNCARRIABLE(value)
    if found is not None:
        raise ValueError(
            f"{field} {value!r}: holds {found.group()!r} at position {found.start()}; "
            "expected printable text (no control characters, line separators or lone surrogates)"
        )
    return value


class QuantFields(NamedTuple):
    """The bound strategy, stock and signal; None where not bound."""

    strategy: str | None = None
    stock: str | None = None
    signal: str | None = None


UNBOUND = QuantFields()
_bound: ContextVar[QuantFields] = ContextVar("rqa_quant_fields", default=UNBOUND)


def as_text(value: Any) -> str | None:
    """Quant fields are strings; anything else is coerced, never rejected,
    so a strategy passing a numpy int or an enum never breaks its logging."""
    if value is None or isinstance(value, str):
        return value
    return str(value)


@contextmanager
def quant_context(*, strategy: Any = None, stock: Any = None, signal: Any = None) -> Iterator[QuantFields]:
    """Bind quant fields for the duration of the block (fields left None keep
    the outer binding). A value holding a control character raises
    ValueError naming the field (see :func:`check_label`)."""
    outer = _bound.get()
    for field, value in (("strategy", strategy), ("stock", stock), ("signal", signal)):
        if value is not None:
            check_label(field, as_text(value))  # type: ignore[arg-type]
    inner = QuantFields(
        as_text(strategy) if strategy is not None else outer.strategy,
        as_text(stock) if stock is not None else outer.stock,
        as_text(signal) if signal is not None else outer.signal,
    )
    token = _bound.set(inner)
    try:
        yield inner
    finally:
        _bound.reset(token)


bound_quant_fields: Callable[[], QuantFields] = _bound.get
"""The quant fields bound here (``UNBOUND`` outside any ``quant_context``):
the context variable's own ``get``, so the log handler pays no extra call."""

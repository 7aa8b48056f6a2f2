"""QuantFilter: the RQA2025 design's ``logging.Filter`` that gives every
record ``stock``, ``strategy`` and ``signal`` attributes, so a formatter
with ``%(stock)s`` works on records logged without those extras.

    handler.addFilter(QuantFilter())
    handler.setFormatter(logging.Formatter("%(strategy)s %(stock)s %(signal)s %(message)s"))

A value passed per call (``extra={"stock": ...}``) wins; then the fields
bound with ``quant_context``; then the design's defaults (N/A, GLOBAL,
NONE). The filter never drops a record. rqa-otel's own handler
(QuantLogHandler) sets the same three attributes on each record it
handles, so handlers that run after it see them too.
"""

from __future__ import annotations

import logging

from rqa_otel import names
from rqa_otel.quant import bound_quant_fields


class QuantFilter(logging.Filter):
    def __init__(self, name: str = "", default_strategy: str = names.DEFAULT_STRATEGY) -> None:
        super().__init__(name)
        self.default_strategy = default_strategy

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        bound = bound_quant_fields()
        if fields.get("stock") is None:
            record.stock = bound.stock or names.DEFAULT_STOCK
        if fields.get("strategy") is None:
            record.strategy = bound.strategy or self.default_strategy
        if fields.get("signal") is None:
            record.signal = bound.signal or names.DEFAULT_SIGNAL
        return True

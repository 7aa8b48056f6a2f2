"""Records emitted through the OpenTelemetry Logs API join the same pipeline.

Code that uses an OTel ``Logger`` directly (a library, the events API) goes
through the SDK's LoggerProvider; this processor hands its records to the
buffer the stdlib handler fills, so both kinds share sampling-free
accounting, scrubbing and sinks.
"""

from __future__ import annotations

import time

from opentelemetry.sdk._logs import LogRecordProcessor

from rqa_otel import names
from rqa_otel.export.log_entry import LogEntry
from rqa_otel.logs.buffer import LogBuffer


class BufferingLogRecordProcessor(LogRecordProcessor):
    def __init__(self, buffer: LogBuffer, default_strategy: str) -> None:
        self._buffer = buffer
        self._default_strategy = default_strategy

    def on_emit(self, log_record) -> None:
        record = log_record.log_record
        scope = log_record.instrumentation_scope
        severity = record.severity_number.value if record.severity_number is not None else 9
        attributes = {names.STRATEGY: self._default_strategy, names.STOCK: names.DEFAULT_STOCK, names.SIGNAL: names.DEFAULT_SIGNAL}
        attributes.update(record.attributes or {})
        self._buffer.put(
            LogEntry(
                record.timestamp or record.observed_timestamp or time.time_ns(),
                (severity - 1) // 4 * 10,  # back to the stdlib level: 9 INFO -> 20
                scope.name if scope is not None else "opentelemetry",
                "" if record.body is None else str(record.body),
                attributes,
                record.trace_id or 0,
                record.span_id or 0,
                int(record.trace_flags or 0),
            )
        )

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

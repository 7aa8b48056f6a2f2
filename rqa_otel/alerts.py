"""Alert-tagged spans: the one way every capability raises an alert.

An alert is a short span named ``rqa.alert`` carrying ``alert.name``,
``alert.severity`` and the strategy, started as a child of whatever span is
active (so a quota breach shows inside the backtest that caused it), plus one
increment of the ``rqa.alerts`` counter by name, severity and strategy.
Grafana alert rules and dashboards select on these attributes.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from opentelemetry import trace
from opentelemetry.metrics import Meter
from opentelemetry.trace import Status, StatusCode, Tracer

from rqa_otel import names

_log = logging.getLogger("rqa_otel.alerts")


class Alerts:
    def __init__(self, tracer: Tracer, meter: Meter, default_strategy: str) -> None:
        self._tracer = tracer
        self._default_strategy = default_strategy
        self._counter = meter.create_counter(
            names.ALERTS_COUNTER, unit="{alert}", description="Alerts raised, by name, severity and strategy."
        )

    def emit(
        self,
        name: str,
        severity: str = "warning",
        *,
        strategy: str | None = None,
        message: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        exception: BaseException | None = None,
    ) -> None:
        """Emit one alert span and count it.

        Raises ValueError for a bad ``name`` or ``severity`` (a programming
        error, caught the first time the code runs); once the arguments are
        valid, a failure inside telemetry is logged and swallowed.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"alert name must be a non-empty string, got {name!r}")
        if severity not in names.ALERT_SEVERITIES:
            raise ValueError(f"alert severity {severity!r} is not one of {', '.join(names.ALERT_SEVERITIES)}")
        strategy = str(strategy) if strategy else self._default_strategy
        try:
            span_attributes: dict[str, Any] = dict(attributes or {})
            span_attributes.update(
                {names.ALERT_NAME: name, names.ALERT_SEVERITY: severity, names.STRATEGY: strategy}
            )
            if message is not None:
                span_attributes[names.ALERT_MESSAGE] = str(message)
            with self._tracer.start_as_current_span(
                names.ALERT_SPAN, kind=trace.SpanKind.INTERNAL, attributes=span_attributes,
                record_exception=False, set_status_on_exception=False,
            ) as span:
                if exception is not None:
                    span.record_exception(exception)
                if severity == "critical":
                    span.set_status(Status(StatusCode.ERROR, message or name))
            self._counter.add(
                1, {names.ALERT_NAME: name, names.ALERT_SEVERITY: severity, names.STRATEGY: strategy}
            )
        except Exception:
            _log.warning("could not emit alert %r", name, exc_info=True)

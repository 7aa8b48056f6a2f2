"""Alert-tagged spans: the one way every capability raises an alert.

An alert is a short span named ``rqa.alert`` carrying ``rqa.alert.name``,
``rqa.alert.severity`` and the strategy, started as a child of whatever span is
active (so a quota breach shows inside the backtest that caused it), plus one
increment of the ``rqa.alerts`` counter by name, severity and strategy.
Grafana alert rules and dashboards select on these attributes.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

from opentelemetry import trace
from opentelemetry.metrics import Meter
from opentelemetry.trace import Status, StatusCode, Tracer

from rqa_otel import names
from rqa_otel.quant import check_label

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

        Raises ValueError for a bad ``name``, ``severity`` or ``strategy``
        (empty, unknown, or holding a control character: a programming
        error, caught the first time the code runs); once the arguments are
        valid, a failure inside telemetry is logged and swallowed.
        """
        with self.open(name, severity, strategy=strategy, message=message, attributes=attributes) as alert:
            if exception is not None:
                alert.record_exception(exception)

    @contextmanager
    def open(
        self,
        name: str,
        severity: str = "warning",
        *,
        strategy: str | None = None,
        message: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Iterator["OpenAlert"]:
        """An alert whose span stays open for the block, so that what happens
        meanwhile (retry attempts) can be added as events and its outcome
        (a severity raised to critical) set before it is counted."""
        _check(name, severity)
        if strategy:
            check_label("strategy", str(strategy))
        alert = OpenAlert(name, severity, str(strategy) if strategy else self._default_strategy)
        try:
            span_attributes: dict[str, Any] = dict(attributes or {})
            span_attributes.update({names.ALERT_NAME: name, names.STRATEGY: alert.strategy})
            if message is not None:
                span_attributes[names.ALERT_MESSAGE] = str(message)
            span_context = self._tracer.start_as_current_span(
                names.ALERT_SPAN, kind=trace.SpanKind.INTERNAL, attributes=span_attributes,
                record_exception=False, set_status_on_exception=False,
            )
            alert.span = span_context.__enter__()
        except Exception:
            _log.warning("could not emit alert %r", name, exc_info=True)
            span_context = None
        try:
            yield alert
        finally:
            if span_context is not None:
                self._close(alert, span_context, message)

    def _close(self, alert: "OpenAlert", span_context, message: str | None) -> None:
        try:
            alert.span.set_attribute(names.ALERT_SEVERITY, alert.severity)
            if alert.severity == "critical":
                alert.span.set_status(Status(StatusCode.ERROR, message or alert.name))
            span_context.__exit__(None, None, None)
            self._counter.add(
                1, {names.ALERT_NAME: alert.name, names.ALERT_SEVERITY: alert.severity, names.STRATEGY: alert.strategy}
            )
        except Exception:
            _log.warning("could not emit alert %r", alert.name, exc_info=True)


class OpenAlert:
    """An alert being raised: add events and attributes, or raise its severity."""

    def __init__(self, name: str, severity: str, strategy: str) -> None:
        self.name = name
        self.severity = severity
        self.strategy = strategy
        self.span: trace.Span = trace.INVALID_SPAN

    def escalate(self, severity: str) -> None:
        _check(self.name, severity)
        self.severity = severity

    def add_event(self, name: str, attributes: Mapping[str, Any]) -> None:
        self.span.add_event(name, attributes)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self.span.set_attributes(attributes)

    def record_exception(self, exception: BaseException) -> None:
        self.span.record_exception(exception)


def _check(name: str, severity: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"alert name must be a non-empty string, got {name!r}")
    check_label("alert name", name)
    if severity not in names.ALERT_SEVERITIES:
        raise ValueError(f"alert severity {severity!r} is not one of {', '.join(names.ALERT_SEVERITIES)}")

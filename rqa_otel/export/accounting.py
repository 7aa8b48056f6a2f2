"""Exporter wrappers that count what left and never let an exporter raise.

The SDK's processors already catch exporter exceptions, but they log every
one; a back-end that is down for an hour would flood the strategy's own log.
These wrappers turn an exception into a failed export, warn once per failure
episode, and keep the counts that the demo summary and health checks read.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from rqa_otel.export.notices import NOTICES

_log = logging.getLogger("rqa_otel.export")


@dataclass
class ExportCounts:
    """Items (spans, metric data points, log records) per outcome."""

    signal: str
    destination: str
    exported: int = 0
    failed: int = 0


class _Accounting:
    inner: Any

    def __init__(self, signal: str, destination: str) -> None:
        self.counts = ExportCounts(signal, destination)
        self._lock = threading.Lock()
        self._failing = False
        self._in_use = 0
        self._retired: list[Any] = []

    def replace_inner(self, inner: Any, destination: str) -> None:
        """Send to ``inner`` from the next export on (a settings reload
        changed the endpoint). The old exporter is shut down once no export
        uses it, so a batch in flight is neither cut off nor sent twice."""
        with self._lock:
            old, self.inner = self.inner, inner
            self.counts.destination = destination
            self._failing = False
            if self._in_use:
                self._retired.append(old)
                return
        self._quietly(old.shutdown)

    def _using_inner(self, call: Callable[[Any], bool]) -> Callable[[], bool]:
        def run() -> bool:
            with self._lock:
                inner = self.inner
                self._in_use += 1
            try:
                return call(inner)
            finally:
                with self._lock:
                    self._in_use -= 1
                    retired = self._retired if not self._in_use else []
                    self._retired = [] if not self._in_use else self._retired
                for old in retired:
                    self._quietly(old.shutdown)

        return run

    @property
    def failing(self) -> bool:
        """The last export failed."""
        return self._failing

    def _account(self, export: Callable[[], bool], items: int) -> bool:
        try:
            ok = export()
            error: BaseException | None = None
        except Exception as exc:
            ok, error = False, exc
        with self._lock:
            if ok:
                self.counts.exported += items
            else:
                self.counts.failed += items
            starts_episode, self._failing = (not ok and not self._failing), not ok
        if starts_episode:  # and at most one line a minute however often episodes start
            NOTICES.warn(
                ("export_failed", self.counts.destination, self.counts.signal),
                f"exporting {self.counts.signal} to {self.counts.destination} failed "
                f"({error if error is not None else 'exporter reported failure'}); "
                "telemetry continues, further failures are counted",
            )
        return ok

    @staticmethod
    def _quietly(call: Callable[[], Any], default: Any = None) -> Any:
        try:
            return call()
        except Exception:
            _log.debug("exporter shutdown/flush raised", exc_info=True)
            return default


class AccountingSpanExporter(_Accounting, SpanExporter):
    def __init__(self, inner: SpanExporter, destination: str) -> None:
        _Accounting.__init__(self, "traces", destination)
        self.inner = inner

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        ok = self._account(
            self._using_inner(lambda inner: inner.export(spans) is SpanExportResult.SUCCESS), len(spans)
        )
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._quietly(self.inner.shutdown)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._quietly(lambda: self.inner.force_flush(timeout_millis), False)


class AccountingMetricExporter(_Accounting, MetricExporter):
    def __init__(self, inner: MetricExporter, destination: str) -> None:
        _Accounting.__init__(self, "metrics", destination)
        MetricExporter.__init__(
            self,
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner
        self.augment: Callable[[MetricsData], MetricsData] = lambda data: data
        """Adds the project's own aggregates (``metric_producers``) to each export."""

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        metrics_data = self.augment(metrics_data)
        points = _count_data_points(metrics_data)
        ok = self._account(
            self._using_inner(
                lambda inner: inner.export(metrics_data, timeout_millis=timeout_millis) is MetricExportResult.SUCCESS
            ),
            points,
        )
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._quietly(lambda: self.inner.force_flush(timeout_millis), False)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._quietly(lambda: self.inner.shutdown(timeout_millis=timeout_millis))


def _count_data_points(metrics_data: MetricsData) -> int:
    return sum(
        len(metric.data.data_points)
        for resource_metrics in metrics_data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    )

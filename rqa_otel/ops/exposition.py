"""/metrics: the process's OTel metrics in Prometheus text format, collected
on each scrape by a pull reader beside the periodic exporter."""

from __future__ import annotations

import re
from typing import Callable, Iterable

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    MetricReader,
    MetricsData,
    Sum,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily


class PullMetricReader(MetricReader):
    """Collects on demand (a scrape) instead of on a timer."""

    def __init__(self) -> None:
        super().__init__(preferred_temporality={kind: AggregationTemporality.CUMULATIVE for kind in _INSTRUMENT_KINDS()})
        self._latest: MetricsData | None = None
        self.augment: Callable[[MetricsData | None], MetricsData | None] = lambda data: data
        """Adds the project's own aggregates (``metric_producers``) to each scrape."""

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs) -> None:
        self._latest = metrics_data

    def scrape(self) -> MetricsData | None:
        self.collect()
        return self.augment(self._latest)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass


def _INSTRUMENT_KINDS():
    from opentelemetry.sdk.metrics import (
        Counter,
    )
    from opentelemetry.sdk.metrics import Histogram as HistogramInstrument
    from opentelemetry.sdk.metrics import ObservableCounter, ObservableGauge, ObservableUpDownCounter, UpDownCounter

    return (Counter, UpDownCounter, HistogramInstrument, ObservableCounter, ObservableUpDownCounter, ObservableGauge)


_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def prometheus_name(name: str) -> str:
    """OTel instrument or attribute name -> Prometheus name (dots and other
    characters become underscores)."""
    sanitized = _INVALID.sub("_", name)
    return "_" + sanitized if sanitized[:1].isdigit() else sanitized


class OtelCollector:
    """prometheus_client collector over the pull reader's latest collection."""

    def __init__(self, reader: PullMetricReader) -> None:
        self._reader = reader

    def collect(self) -> Iterable:
        data = self._reader.scrape()
        if data is None:
            return
        families: dict[str, object] = {}
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    yield from self._families(metric, families)

    @staticmethod
    def _families(metric, seen: dict) -> Iterable:
        name = prometheus_name(metric.name)
        help_text = metric.description or metric.name
        data = metric.data
        points = list(data.data_points)
        label_names = sorted({prometheus_name(k) for point in points for k in point.attributes})

        def labels(point) -> list[str]:
            values = {prometheus_name(k): str(v) for k, v in point.attributes.items()}
            return [values.get(label, "") for label in label_names]

        if isinstance(data, Sum) and data.is_monotonic:
            family = CounterMetricFamily(name.removesuffix("_total"), help_text, labels=label_names)
            for point in points:
                family.add_metric(labels(point), point.value)
        elif isinstance(data, (Sum, Gauge)):
            # The semantic conventions name up-down counters of things
            # `*.count` (process.thread.count); Prometheus reserves `_count`
            # for histograms and summaries, so a gauge goes without it.
            family = GaugeMetricFamily(name.removesuffix("_count"), help_text, labels=label_names)
            for point in points:
                family.add_metric(labels(point), point.value)
        elif isinstance(data, Histogram):
            family = HistogramMetricFamily(name, help_text, labels=label_names)
            for point in points:
                cumulative, buckets = 0, []
                for bound, count in zip(list(point.explicit_bounds) + [float("inf")], point.bucket_counts):
                    cumulative += count
                    buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
                family.add_metric(labels(point), buckets, point.sum)
        else:  # exponential histograms: not produced by this project (see collector/README.md)
            return
        if family.name in seen:
            return
        seen[family.name] = family
        yield family

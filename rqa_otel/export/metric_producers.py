"""Metrics aggregated by the project itself, joined to the SDK's at export.

The OTel specification has MetricProducer for this; the Python SDK does not.
Hot paths (a trade) update a plain aggregate; at each collection a producer
turns it into SDK ``Metric`` objects, and the exporters and the /metrics
reader append them to what the SDK collected, under the project's scope.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import replace
from typing import Callable, Hashable, Mapping, Sequence

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

MetricProducer = Callable[[], Sequence[Metric]]


class Producers:
    """The producers of one Telemetry handle, and how their metrics join a collection."""

    def __init__(self, resource: Resource, scope: InstrumentationScope) -> None:
        self._resource = resource
        self._scope = scope
        self._producers: list[MetricProducer] = []

    def add(self, producer: MetricProducer) -> None:
        self._producers.append(producer)

    def augment(self, data: MetricsData | None) -> MetricsData | None:
        extra = [metric for producer in list(self._producers) for metric in producer()]
        if not extra:
            return data
        resource_metrics = list(data.resource_metrics) if data is not None else []
        for index, item in enumerate(resource_metrics):
            if item.resource == self._resource:
                resource_metrics[index] = replace(item, scope_metrics=self._join(item.scope_metrics, extra))
                break
        else:
            resource_metrics.append(ResourceMetrics(self._resource, [ScopeMetrics(self._scope, extra, "")], ""))
        return MetricsData(resource_metrics)

    def _join(self, scopes: Sequence[ScopeMetrics], extra: list[Metric]) -> list[ScopeMetrics]:
        # Into the project's own scope when the SDK collected one: encoders
        # key scopes by identity, and a second one would replace the first.
        joined, found = [], False
        for scope_metrics in scopes:
            if scope_metrics.scope == self._scope and not found:
                scope_metrics, found = replace(scope_metrics, metrics=[*scope_metrics.metrics, *extra]), True
            joined.append(scope_metrics)
        if not found:
            joined.append(ScopeMetrics(self._scope, extra, ""))
        return joined


_OVERFLOW = object()


class ExplicitHistogram:
    """A cumulative explicit-bucket histogram by key (one key per attribute
    set): a bisect and three additions per record. At most ``series_limit``
    keys get a point of their own; values of further keys go to one point
    with ``overflow_attributes``, and ``on_overflow()`` is called the first
    time. ``record()`` runs with ``lock`` held, so a caller that updates other
    aggregates under the same lock takes it once."""

    def __init__(
        self,
        name: str,
        unit: str,
        description: str,
        bounds: Sequence[float],
        attributes_of: Callable[[Hashable], Mapping[str, object]],
        series_limit: int,
        overflow_attributes: Mapping[str, object],
        on_overflow: Callable[[], None] = lambda: None,
        lock: threading.Lock | None = None,
    ) -> None:
        self.name, self.unit, self.description = name, unit, description
        self.bounds = tuple(bounds)
        self.lock = lock or threading.Lock()
        self._attributes_of = attributes_of
        self._series_limit = series_limit
        self._overflow_attributes = dict(overflow_attributes)
        self._on_overflow = on_overflow
        self._start_ns = time.time_ns()
        self._points: dict[Hashable, list] = {}  # key -> [counts, sum, min, max, attributes]

    def reset(self) -> None:
        """Start again from nothing (a forked child counts only its own
        values: its parent's are the parent's to report)."""
        self._points.clear()
        self._start_ns = time.time_ns()

    def record(self, value: float, key: Hashable) -> None:
        """Add ``value`` to the point of ``key``; the caller holds ``lock``."""
        point = self._points.get(key)
        if point is None:
            point = self._new_point(key, value)
        point[0][bisect.bisect_left(self.bounds, value)] += 1
        point[1] += value
        if value < point[2]:
            point[2] = value
        if value > point[3]:
            point[3] = value

    def _new_point(self, key: Hashable, value: float) -> list:
        attributes = self._attributes_of(key)
        if len(self._points) >= self._series_limit + (_OVERFLOW in self._points):
            key, attributes = _OVERFLOW, self._overflow_attributes
            if key not in self._points:
                self._on_overflow()
        point = self._points.get(key)
        if point is None:
            point = self._points[key] = [[0] * (len(self.bounds) + 1), 0.0, value, value, dict(attributes)]
        return point

    def __call__(self) -> list[Metric]:
        now = time.time_ns()
        with self.lock:
            points = [
                HistogramDataPoint(attributes, self._start_ns, now, sum(counts), total, list(counts), self.bounds, low, high)
                for counts, total, low, high, attributes in self._points.values()
            ]
        if not points:
            return []
        return [Metric(self.name, self.description, self.unit, Histogram(points, AggregationTemporality.CUMULATIVE))]

"""Reading an SDK InMemoryMetricReader back in tests."""

from __future__ import annotations

from opentelemetry.sdk.metrics.export import InMemoryMetricReader


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[float, dict]]]:
    """Collect once: {instrument name: [(value, attributes), ...]}."""
    found: dict[str, list] = {}
    for resource_metrics in reader.get_metrics_data().resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(
                    (point.value, dict(point.attributes)) for point in metric.data.data_points
                )
    return found

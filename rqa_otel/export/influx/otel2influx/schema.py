"""The otel2influx schema: InfluxDB's names, not the project's own ``rqa.`` names.

From influxdata/influxdb-observability @ 5301efa: common/common.go (measurements,
field keys, attribute keys) and the OpenTelemetry semconv v1.16 constants the
otel2influx package uses (otel.library.*, otel.status_*, event.name,
service.name); MetricExemplarSuffix from otel2influx's exemplar support. Also
the exporter's dimension settings (span_dimensions, log_record_dimensions).
"""

from __future__ import annotations

from typing import Final, Iterable

SCHEMA_TELEGRAF_PROMETHEUS_V1: Final = "telegraf-prometheus-v1"
SCHEMA_TELEGRAF_PROMETHEUS_V2: Final = "telegraf-prometheus-v2"
METRICS_SCHEMAS: Final = (SCHEMA_TELEGRAF_PROMETHEUS_V1, SCHEMA_TELEGRAF_PROMETHEUS_V2)

MEASUREMENT_SPANS: Final = "spans"
MEASUREMENT_SPAN_LINKS: Final = "span-links"
MEASUREMENT_LOGS: Final = "logs"
MEASUREMENT_PROMETHEUS: Final = "prometheus"  # telegraf-prometheus-v2: one measurement

METRIC_GAUGE_FIELD_KEY: Final = "gauge"
METRIC_COUNTER_FIELD_KEY: Final = "counter"
METRIC_HISTOGRAM_COUNT_FIELD_KEY: Final = "count"
METRIC_HISTOGRAM_SUM_FIELD_KEY: Final = "sum"
METRIC_HISTOGRAM_MIN_FIELD_KEY: Final = "min"
METRIC_HISTOGRAM_MAX_FIELD_KEY: Final = "max"
METRIC_HISTOGRAM_INF_FIELD_KEY: Final = "+Inf"
METRIC_HISTOGRAM_BOUND_KEY_V2: Final = "le"
METRIC_HISTOGRAM_COUNT_SUFFIX: Final = "_count"
METRIC_HISTOGRAM_SUM_SUFFIX: Final = "_sum"
METRIC_HISTOGRAM_BUCKET_SUFFIX: Final = "_bucket"
METRIC_HISTOGRAM_MIN_SUFFIX: Final = "_min"
METRIC_HISTOGRAM_MAX_SUFFIX: Final = "_max"
METRIC_SUMMARY_COUNT_FIELD_KEY: Final = "count"
METRIC_SUMMARY_SUM_FIELD_KEY: Final = "sum"
METRIC_SUMMARY_QUANTILE_KEY_V2: Final = "quantile"
METRIC_SUMMARY_COUNT_SUFFIX: Final = "_count"
METRIC_SUMMARY_SUM_SUFFIX: Final = "_sum"
METRIC_EXEMPLAR_SUFFIX: Final = "_exemplar"  # telegraf-prometheus-v1 only

ATTRIBUTE_START_TIME_UNIX_NANO: Final = "start_time_unix_nano"
ATTRIBUTE_TRACE_ID: Final = "trace_id"
ATTRIBUTE_SPAN_ID: Final = "span_id"
ATTRIBUTE_TRACE_STATE: Final = "trace_state"
ATTRIBUTE_PARENT_SPAN_ID: Final = "parent_span_id"
ATTRIBUTE_SPAN_NAME: Final = "span.name"
ATTRIBUTE_SPAN_KIND: Final = "span.kind"
ATTRIBUTE_END_TIME_UNIX_NANO: Final = "end_time_unix_nano"
ATTRIBUTE_DURATION_NANO: Final = "duration_nano"
ATTRIBUTE_OBSERVED_TIME_UNIX_NANO: Final = "observed_time_unix_nano"
ATTRIBUTE_DROPPED_ATTRIBUTES_COUNT: Final = "dropped_attributes_count"
ATTRIBUTE_DROPPED_EVENTS_COUNT: Final = "dropped_events_count"
ATTRIBUTE_DROPPED_LINKS_COUNT: Final = "dropped_links_count"
ATTRIBUTE_ATTRIBUTES: Final = "attributes"
ATTRIBUTE_LINKED_TRACE_ID: Final = "linked_trace_id"
ATTRIBUTE_LINKED_SPAN_ID: Final = "linked_span_id"
ATTRIBUTE_SEVERITY_NUMBER: Final = "severity_number"
ATTRIBUTE_SEVERITY_TEXT: Final = "severity_text"
ATTRIBUTE_BODY: Final = "body"
# semconv v1.16 names used by otel2influx
OTEL_LIBRARY_NAME: Final = "otel.library.name"
OTEL_LIBRARY_VERSION: Final = "otel.library.version"
OTEL_STATUS_CODE: Final = "otel.status_code"
OTEL_STATUS_DESCRIPTION: Final = "otel.status_description"
ATTRIBUTE_EVENT_NAME: Final = "event.name"
ATTRIBUTE_SERVICE_NAME: Final = "service.name"

# The exporter's defaults (span_dimensions, log_record_dimensions).
DEFAULT_SPAN_DIMENSIONS: Final = (ATTRIBUTE_SERVICE_NAME, ATTRIBUTE_SPAN_NAME)
DEFAULT_LOG_RECORD_DIMENSIONS: Final = (ATTRIBUTE_SERVICE_NAME,)


def dimensions_set(dimensions: Iterable[str], name: str) -> frozenset[str]:
    """Validated span_dimensions/log_record_dimensions (``name`` names the setting)."""
    if isinstance(dimensions, str):
        raise ValueError(f"{name}: expected a list of attribute keys, got the string {dimensions!r}")
    seen: set[str] = set()
    duplicates = []
    for key in dimensions:
        if not isinstance(key, str):
            raise ValueError(f"{name}: expected attribute keys (strings), got {key!r}")
        if key in seen:
            duplicates.append(key)
        seen.add(key)
    if duplicates:  # upstream: "duplicate dimension(s) configured"
        raise ValueError(f"{name}: duplicate dimension(s) configured: {','.join(duplicates)}")
    return frozenset(seen)

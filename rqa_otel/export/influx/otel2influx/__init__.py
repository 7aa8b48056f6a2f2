"""OTLP (protobuf-JSON) to InfluxDB points and line protocol, as the Collector writes them.

A pure-Python port of the conversion core of the OpenTelemetry Collector's
``influxdb`` exporter: the Go library otel2influx (influxdata/influxdb-observability
at commit 5301efa, ``otel2influx/metrics_telegraf_prometheus_v1.go``,
``metrics_telegraf_prometheus_v2.go``, ``traces.go``, ``logs.go``, ``common.go`` and
the ``common`` package) and the exporter's line-protocol writer
(opentelemetry-collector-contrib ``exporter/influxdbexporter/writer.go``, which
uses influxdata/line-protocol/v2). ``tests/conformance/otel2influx/`` holds the
cases it is proven against.

API::

    points = metrics_to_points(request)                  # ExportMetricsServiceRequest as json.loads gives it
    points = metrics_to_points(request, SCHEMA_TELEGRAF_PROMETHEUS_V2)
    points = traces_to_points(request)                   # span_dimensions=DEFAULT_SPAN_DIMENSIONS
    points = logs_to_points(request)                     # log_record_dimensions=DEFAULT_LOG_RECORD_DIMENSIONS
    body = to_line_protocol(points)                      # bytes for POST /write?precision=ns

Field values keep their InfluxDB type through their Python type: ``float``
(``1.5``), ``int`` (int64, ``12i``), :class:`UInt` (uint64, ``12u``), ``str``
(``"s"``) and ``bool`` (``true``); :func:`field_type` names it.

Rules inferred from the upstream source (the conformance cases do not reach
them; the Go code at 5301efa could not be read line by line, so these follow
the nearest stored versions of it):

* telegraf-prometheus-v1 writes exemplars (with a trace and span id) as
  points ``<metric>_exemplar`` (influxdb-observability PR #275, merged
  2023-08; the Collector's exporter builds with otel2influx v0.5.12, see
  exporter/influxdbexporter/go.mod, whose ``enqueueExemplars`` does this for
  gauges, sums and histograms); v2 writes none.
* v2 bucket and quantile points carry only their one field (as the v2
  histogram case shows for buckets; assumed for quantiles).
* A histogram's ``sum``/``min``/``max`` are written only when present.
* Event and link ``attributes`` are JSON of the raw values (a list stays a
  list), with ``dropped_attributes_count`` only beside attributes.
* When a tag and a field share a key, the field is dropped and counted in
  ``dropped_attributes_count`` (spans and logs).

Where this port departs from the Go code on purpose:

* A timestamp of 0 counts as absent (upstream tests ``AsTime().IsZero()``,
  which is never true for a pdata timestamp, but its comments and the
  conformance cases mean "absent"): a metric data point or span without one
  is malformed (``ValueError``, as upstream's "metric has no timestamp" /
  "span has no timestamp" errors fail the whole request); a log record
  without one is written at the current time; a span without an end time gets
  no ``end_time_unix_nano``/``duration_nano``.
* Malformed input (wrong JSON types, ids that are not hex, histogram bucket
  counts that do not match the bounds, an exponential histogram, a span
  without ids) raises ``ValueError`` naming the field; upstream fails the
  whole request with a permanent error in the same cases.
* When a span event or link cannot be written (a line needs at least one
  field), upstream counts it in ``dropped_events_count``/``dropped_links_count``
  and also, through a bug in the writer (``encoder.Reset()``), throws away the
  lines of the batch queued before it. This port counts it and keeps the rest.
* String field values escape only ``"`` and ``\\``: a newline is written as
  is, which InfluxDB accepts inside quotes and stores unchanged (newer
  line-protocol encoders write ``\\n``, which InfluxDB 1.x/2.x would store as
  two characters).
* Floats are written with ``repr`` (``1000000.0``) where Go writes
  ``1e+06``: the same value. Field order is insertion order (Go's is random).

Modules: ``schema`` (InfluxDB's measurement, field and tag names; the
dimension settings), ``points`` (:class:`Point`, :class:`UInt`,
:class:`SeriesTags`), ``otlp_json`` (decoding OTLP JSON), ``go_format``
(values as Go's pdata and encoding/json write them), ``metrics``, ``traces``
and ``logs`` (one signal each: the OTLP-JSON decoder and the schema rules
the SDK encoder ``sdk_points`` shares), ``line_protocol`` (the writer). This
package re-exports their public API.
"""

from rqa_otel.export.influx.otel2influx.go_format import as_string
from rqa_otel.export.influx.otel2influx.line_protocol import (
    InvalidPoint,
    OnDrop,
    encode_lines,
    line_strings,
    to_line_protocol,
)
from rqa_otel.export.influx.otel2influx.logs import log_base, log_point, logs_to_points
from rqa_otel.export.influx.otel2influx.metrics import (
    EXPONENTIAL_HISTOGRAM_REJECTED,
    exemplar_point,
    histogram_points,
    is_counter,
    metrics_to_points,
    number_layout,
    number_lines,
    number_point,
    summary_points,
)
from rqa_otel.export.influx.otel2influx.points import FieldType, FieldValue, Point, SeriesTags, UInt, field_type
from rqa_otel.export.influx.otel2influx.schema import (
    ATTRIBUTE_ATTRIBUTES,
    ATTRIBUTE_BODY,
    ATTRIBUTE_DROPPED_ATTRIBUTES_COUNT,
    ATTRIBUTE_DROPPED_EVENTS_COUNT,
    ATTRIBUTE_DROPPED_LINKS_COUNT,
    ATTRIBUTE_DURATION_NANO,
    ATTRIBUTE_END_TIME_UNIX_NANO,
    ATTRIBUTE_EVENT_NAME,
    ATTRIBUTE_LINKED_SPAN_ID,
    ATTRIBUTE_LINKED_TRACE_ID,
    ATTRIBUTE_OBSERVED_TIME_UNIX_NANO,
    ATTRIBUTE_PARENT_SPAN_ID,
    ATTRIBUTE_SERVICE_NAME,
    ATTRIBUTE_SEVERITY_NUMBER,
    ATTRIBUTE_SEVERITY_TEXT,
    ATTRIBUTE_SPAN_ID,
    ATTRIBUTE_SPAN_KIND,
    ATTRIBUTE_SPAN_NAME,
    ATTRIBUTE_START_TIME_UNIX_NANO,
    ATTRIBUTE_TRACE_ID,
    ATTRIBUTE_TRACE_STATE,
    DEFAULT_LOG_RECORD_DIMENSIONS,
    DEFAULT_SPAN_DIMENSIONS,
    MEASUREMENT_LOGS,
    MEASUREMENT_PROMETHEUS,
    MEASUREMENT_SPAN_LINKS,
    MEASUREMENT_SPANS,
    METRIC_COUNTER_FIELD_KEY,
    METRIC_EXEMPLAR_SUFFIX,
    METRIC_GAUGE_FIELD_KEY,
    METRIC_HISTOGRAM_BOUND_KEY_V2,
    METRIC_HISTOGRAM_BUCKET_SUFFIX,
    METRIC_HISTOGRAM_COUNT_FIELD_KEY,
    METRIC_HISTOGRAM_COUNT_SUFFIX,
    METRIC_HISTOGRAM_INF_FIELD_KEY,
    METRIC_HISTOGRAM_MAX_FIELD_KEY,
    METRIC_HISTOGRAM_MAX_SUFFIX,
    METRIC_HISTOGRAM_MIN_FIELD_KEY,
    METRIC_HISTOGRAM_MIN_SUFFIX,
    METRIC_HISTOGRAM_SUM_FIELD_KEY,
    METRIC_HISTOGRAM_SUM_SUFFIX,
    METRIC_SUMMARY_COUNT_FIELD_KEY,
    METRIC_SUMMARY_COUNT_SUFFIX,
    METRIC_SUMMARY_QUANTILE_KEY_V2,
    METRIC_SUMMARY_SUM_FIELD_KEY,
    METRIC_SUMMARY_SUM_SUFFIX,
    METRICS_SCHEMAS,
    OTEL_LIBRARY_NAME,
    OTEL_LIBRARY_VERSION,
    OTEL_STATUS_CODE,
    OTEL_STATUS_DESCRIPTION,
    SCHEMA_TELEGRAF_PROMETHEUS_V1,
    SCHEMA_TELEGRAF_PROMETHEUS_V2,
    dimensions_set,
)
from rqa_otel.export.influx.otel2influx.traces import span_base, span_points, traces_to_points

__all__ = [
    "ATTRIBUTE_ATTRIBUTES",
    "ATTRIBUTE_BODY",
    "ATTRIBUTE_DROPPED_ATTRIBUTES_COUNT",
    "ATTRIBUTE_DROPPED_EVENTS_COUNT",
    "ATTRIBUTE_DROPPED_LINKS_COUNT",
    "ATTRIBUTE_DURATION_NANO",
    "ATTRIBUTE_END_TIME_UNIX_NANO",
    "ATTRIBUTE_EVENT_NAME",
    "ATTRIBUTE_LINKED_SPAN_ID",
    "ATTRIBUTE_LINKED_TRACE_ID",
    "ATTRIBUTE_OBSERVED_TIME_UNIX_NANO",
    "ATTRIBUTE_PARENT_SPAN_ID",
    "ATTRIBUTE_SERVICE_NAME",
    "ATTRIBUTE_SEVERITY_NUMBER",
    "ATTRIBUTE_SEVERITY_TEXT",
    "ATTRIBUTE_SPAN_ID",
    "ATTRIBUTE_SPAN_KIND",
    "ATTRIBUTE_SPAN_NAME",
    "ATTRIBUTE_START_TIME_UNIX_NANO",
    "ATTRIBUTE_TRACE_ID",
    "ATTRIBUTE_TRACE_STATE",
    "DEFAULT_LOG_RECORD_DIMENSIONS",
    "DEFAULT_SPAN_DIMENSIONS",
    "EXPONENTIAL_HISTOGRAM_REJECTED",
    "FieldType",
    "FieldValue",
    "MEASUREMENT_LOGS",
    "MEASUREMENT_PROMETHEUS",
    "MEASUREMENT_SPANS",
    "MEASUREMENT_SPAN_LINKS",
    "METRICS_SCHEMAS",
    "METRIC_COUNTER_FIELD_KEY",
    "METRIC_EXEMPLAR_SUFFIX",
    "METRIC_GAUGE_FIELD_KEY",
    "METRIC_HISTOGRAM_BOUND_KEY_V2",
    "METRIC_HISTOGRAM_BUCKET_SUFFIX",
    "METRIC_HISTOGRAM_COUNT_FIELD_KEY",
    "METRIC_HISTOGRAM_COUNT_SUFFIX",
    "METRIC_HISTOGRAM_INF_FIELD_KEY",
    "METRIC_HISTOGRAM_MAX_FIELD_KEY",
    "METRIC_HISTOGRAM_MAX_SUFFIX",
    "METRIC_HISTOGRAM_MIN_FIELD_KEY",
    "METRIC_HISTOGRAM_MIN_SUFFIX",
    "METRIC_HISTOGRAM_SUM_FIELD_KEY",
    "METRIC_HISTOGRAM_SUM_SUFFIX",
    "METRIC_SUMMARY_COUNT_FIELD_KEY",
    "METRIC_SUMMARY_COUNT_SUFFIX",
    "METRIC_SUMMARY_QUANTILE_KEY_V2",
    "METRIC_SUMMARY_SUM_FIELD_KEY",
    "METRIC_SUMMARY_SUM_SUFFIX",
    "OTEL_LIBRARY_NAME",
    "OTEL_LIBRARY_VERSION",
    "OTEL_STATUS_CODE",
    "OTEL_STATUS_DESCRIPTION",
    "Point",
    "SCHEMA_TELEGRAF_PROMETHEUS_V1",
    "SCHEMA_TELEGRAF_PROMETHEUS_V2",
    "SeriesTags",
    "UInt",
    "as_string",
    "dimensions_set",
    "encode_lines",
    "exemplar_point",
    "field_type",
    "histogram_points",
    "is_counter",
    "line_strings",
    "InvalidPoint",
    "OnDrop",
    "log_base",
    "log_point",
    "logs_to_points",
    "metrics_to_points",
    "number_layout",
    "number_lines",
    "number_point",
    "span_base",
    "span_points",
    "summary_points",
    "to_line_protocol",
    "traces_to_points",
]

"""Metrics to points (otel2influx ``metrics_telegraf_prometheus_v1.go`` and
``metrics_telegraf_prometheus_v2.go``): :func:`metrics_to_points` decodes an
OTLP-JSON request; the schema rules below it (:func:`number_point`,
:func:`number_lines`, :func:`histogram_points`, :func:`summary_points`,
:func:`exemplar_point`) are shared with the SDK encoder (``sdk_points``)."""

from __future__ import annotations

from typing import Any, Callable, Final, Iterable, Mapping, Optional, Sequence

from rqa_otel.export.influx.otel2influx.go_format import bound_key
from rqa_otel.export.influx.otel2influx.line_protocol import (
    INT64_MAX,
    INT64_MIN,
    OnDrop,
    escaped_field_keys,
    line_strings,
)
from rqa_otel.export.influx.otel2influx.otlp_json import (
    decode_enum,
    decode_float,
    decode_hex_id,
    decode_int,
    decode_string,
    list_at,
    object_at,
    put_tags,
)
from rqa_otel.export.influx.otel2influx.points import Point, SeriesTags, make_point
from rqa_otel.export.influx.otel2influx.schema import (
    ATTRIBUTE_SPAN_ID,
    ATTRIBUTE_START_TIME_UNIX_NANO,
    ATTRIBUTE_TRACE_ID,
    MEASUREMENT_PROMETHEUS,
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
    METRIC_SUMMARY_QUANTILE_KEY_V2,
    METRICS_SCHEMAS,
    OTEL_LIBRARY_NAME,
    OTEL_LIBRARY_VERSION,
    SCHEMA_TELEGRAF_PROMETHEUS_V1,
    SCHEMA_TELEGRAF_PROMETHEUS_V2,
)

# OTLP JSON may name an enum instead of numbering it.
_TEMPORALITIES = {
    "AGGREGATION_TEMPORALITY_UNSPECIFIED": 0,
    "AGGREGATION_TEMPORALITY_DELTA": 1,
    "AGGREGATION_TEMPORALITY_CUMULATIVE": 2,
}
_CUMULATIVE = 2


def metrics_to_points(request: Mapping[str, Any], schema: str = SCHEMA_TELEGRAF_PROMETHEUS_V1) -> list[Point]:
    """The points otel2influx writes for an ExportMetricsServiceRequest (OTLP JSON).

    ``telegraf-prometheus-v1``: one measurement per metric; a gauge or any
    sum that is not monotonic and cumulative gets field ``gauge``, a monotonic
    cumulative sum ``counter``; a histogram ``count``, ``sum``, ``min``,
    ``max`` and one field per bucket bound holding the cumulative count
    (``+Inf`` for the last bucket when present); a summary ``count``, ``sum``
    and one field per quantile. Exemplars with a trace and span id become
    points of measurement ``<metric>_exemplar`` (field ``gauge``).

    ``telegraf-prometheus-v2``: measurement ``prometheus``; the field is named
    after the metric (``<metric>``, ``<metric>_count``, ``_sum``, ``_min``,
    ``_max``); each histogram bucket is a point tagged ``le`` with field
    ``<metric>_bucket``, each summary quantile a point tagged ``quantile``.

    Tags: resource attributes, ``otel.library.name``/``otel.library.version``
    of the scope, scope attributes, then data-point attributes (later ones
    win), values as pdata's ``AsString``. ``start_time_unix_nano`` (int) when
    the data point has a start time.

    Raises ValueError for an unknown schema, an exponential histogram (the
    Collector's exporter rejects them too), a data point without a timestamp,
    bucket counts that do not match the bounds, or malformed JSON values.
    """
    if schema not in METRICS_SCHEMAS:
        raise ValueError(f"schema: unknown metrics schema {schema!r}; accepted: {', '.join(METRICS_SCHEMAS)}")
    points: list[Point] = []
    for r, resource_metrics in enumerate(list_at(request, "resourceMetrics")):
        where = f"resourceMetrics[{r}]"
        try:
            resource_tags: dict[str, str] = {}
            put_tags(list_at(object_at(resource_metrics, "resource"), "attributes"), resource_tags)
            scopes = list_at(resource_metrics, "scopeMetrics")
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        for s, scope_metrics in enumerate(scopes):
            where_scope = f"{where}.scopeMetrics[{s}]"
            try:
                tags = dict(resource_tags)
                scope = object_at(scope_metrics, "scope")
                scope_name = scope.get("name")
                if scope_name:
                    tags[OTEL_LIBRARY_NAME] = decode_string(scope_name, "scope.name")
                scope_version = scope.get("version")
                if scope_version:
                    tags[OTEL_LIBRARY_VERSION] = decode_string(scope_version, "scope.version")
                put_tags(list_at(scope, "attributes"), tags)
                metrics = list_at(scope_metrics, "metrics")
            except ValueError as exc:
                raise ValueError(f"{where_scope}: {exc}") from None
            for m, metric in enumerate(metrics):
                try:
                    _write_metric(points, tags, metric, schema == SCHEMA_TELEGRAF_PROMETHEUS_V2)
                except ValueError as exc:
                    name = metric.get("name") if metric.__class__ is dict else None
                    raise ValueError(f"{where_scope}.metrics[{m}] ({name!r}): {exc}") from None
    return points


def _metric_data(metric: Any) -> tuple[str, str, Mapping]:
    """(name, data kind, data) of a Metric; kind "" for a metric without data."""
    if metric.__class__ is not dict:
        raise ValueError(f"expected a Metric object, got {metric!r}")
    name = metric.get("name", "")
    if name.__class__ is not str:
        raise ValueError(f"name: expected a string, got {name!r}")
    for kind in ("gauge", "sum", "histogram", "summary", "exponentialHistogram"):
        data = metric.get(kind)
        if data is not None:
            if data.__class__ is not dict:
                raise ValueError(f"{kind}: expected an object, got {data!r}")
            if kind == "exponentialHistogram":
                raise ValueError(EXPONENTIAL_HISTOGRAM_REJECTED)
            return name, kind, data
    return name, "", {}


EXPONENTIAL_HISTOGRAM_REJECTED: Final = (
    "exponentialHistogram: exponential histograms are rejected, as the Collector's influxdb "
    "exporter rejects them (otel2influx: unknown metric type)"
)


def _data_point(data_point: Any, base_tags: dict[str, str]) -> tuple[dict[str, str], int, int]:
    """initMetricTagsAndTimestamp: (tags, start time or 0, timestamp)."""
    if data_point.__class__ is not dict:
        raise ValueError(f"expected a data point object, got {data_point!r}")
    ts = decode_int(data_point.get("timeUnixNano"), "timeUnixNano")
    if not ts:
        raise ValueError("timeUnixNano: metric has no timestamp")
    start = data_point.get("startTimeUnixNano")
    start = decode_int(start, "startTimeUnixNano") if start is not None else 0
    tags = base_tags.copy()
    attributes = data_point.get("attributes")
    if attributes:
        put_tags(attributes, tags)
    return tags, start, ts


def _number_value(data_point: Mapping) -> float | int | None:
    value = data_point.get("asDouble")
    if value is not None:
        return decode_float(value, "asDouble")
    value = data_point.get("asInt")
    if value is not None:
        return decode_int(value, "asInt")
    return None


def _write_metric(points: list[Point], base_tags: dict[str, str], metric: Any, v2: bool) -> None:
    """Decode one OTLP-JSON Metric and hand its data points to the schema rules below."""
    name, kind, data = _metric_data(metric)
    if not kind:
        return
    append = points.append
    for i, data_point in enumerate(list_at(data, "dataPoints")):
        try:
            tags, start, ts = _data_point(data_point, base_tags)
            if kind == "gauge" or kind == "sum":
                value = _number_value(data_point)
                if value is None:
                    continue
                counter = is_counter(
                    kind == "sum",
                    data.get("isMonotonic") is True,
                    decode_enum(data.get("aggregationTemporality"), _TEMPORALITIES, "aggregationTemporality"),
                )
                number_point(append, v2, name, counter, tags, start, ts, value)
            elif kind == "histogram":
                counts, bounds = _buckets(data_point)
                total, minimum, maximum = (data_point.get(key) for key in ("sum", "min", "max"))
                histogram_points(
                    append, v2, name, tags, start, ts, decode_int(data_point.get("count"), "count"),
                    None if total is None else decode_float(total, "sum"),
                    None if minimum is None else decode_float(minimum, "min"),
                    None if maximum is None else decode_float(maximum, "max"),
                    counts, bounds,
                )
            else:
                summary_points(
                    append, v2, name, tags, start, ts, decode_int(data_point.get("count"), "count"),
                    decode_float(data_point.get("sum"), "sum"), _quantiles(data_point),
                )
            exemplars = data_point.get("exemplars") if kind != "summary" else None
            if exemplars and not v2:
                _write_exemplars(append, name, exemplars)
        except ValueError as exc:
            raise ValueError(f"{kind}.dataPoints[{i}]: {exc}") from None


def _buckets(data_point: Mapping) -> tuple[list[int], list[float]]:
    counts = [decode_int(c, "bucketCounts") for c in list_at(data_point, "bucketCounts")]
    bounds = [decode_float(b, "explicitBounds") for b in list_at(data_point, "explicitBounds")]
    if counts and len(counts) != len(bounds) and len(counts) != len(bounds) + 1:
        # The +Inf bucket may be missing; any other mismatch is an error upstream.
        raise ValueError(
            f"invalid metric histogram bucket counts qty {len(counts)} vs explicit bounds qty {len(bounds)}"
        )
    return counts, bounds


def _quantiles(data_point: Mapping) -> list[tuple[float, float]]:
    result = []
    for item in list_at(data_point, "quantileValues"):
        if item.__class__ is not dict:
            raise ValueError(f"quantileValues: expected objects, got {item!r}")
        result.append((decode_float(item.get("quantile"), "quantile"), decode_float(item.get("value"), "value")))
    return result


def _write_exemplars(append: Callable[[Point], None], name: str, exemplars: Any) -> None:
    if exemplars.__class__ is not list:
        raise ValueError(f"exemplars: expected a list, got {type(exemplars).__name__}")
    for k, exemplar in enumerate(exemplars):
        try:
            if exemplar.__class__ is not dict:
                raise ValueError(f"expected an Exemplar object, got {exemplar!r}")
            value = _number_value(exemplar)
            if value is None:
                continue
            trace_id = decode_hex_id(exemplar.get("traceId"), 32, "traceId")
            span_id = decode_hex_id(exemplar.get("spanId"), 16, "spanId")
            tags: dict[str, str] = {}
            attributes = exemplar.get("filteredAttributes")
            if attributes:
                put_tags(attributes, tags)
            exemplar_point(append, name, tags, decode_int(exemplar.get("timeUnixNano"), "timeUnixNano"), value, trace_id, span_id)
        except ValueError as exc:
            raise ValueError(f"exemplars[{k}]: {exc}") from None


# --- The metric schema rules: one implementation for the OTLP-JSON decoder
# above and the SDK encoder (rqa_otel.export.influx.sdk_points). ``tags`` are the
# resource, scope and data-point tags already merged; ``start`` 0 is absent.


def is_counter(is_sum: bool, monotonic: bool, temporality: int) -> bool:
    """telegraf-prometheus-v1: only a monotonic cumulative sum is a ``counter``; every
    other gauge or sum is a ``gauge``."""
    return is_sum and monotonic and temporality == _CUMULATIVE


def number_layout(v2: bool, name: str, counter: bool) -> tuple[str, str]:
    """(measurement, value field) of a gauge or sum: v1 measurement
    ``<name>`` with field ``gauge``/``counter``; v2 measurement
    ``prometheus`` with field ``<name>``."""
    if v2:
        return MEASUREMENT_PROMETHEUS, name
    return name, METRIC_COUNTER_FIELD_KEY if counter else METRIC_GAUGE_FIELD_KEY


def number_point(
    append: Callable[[Point], None], v2: bool, name: str, counter: bool, tags: dict[str, str], start: int, ts: int,
    value: float | int,
) -> None:
    """A gauge or sum data point (:func:`number_layout`), with its start time when it has one."""
    measurement, key = number_layout(v2, name, counter)
    append(make_point(measurement, tags, {ATTRIBUTE_START_TIME_UNIX_NANO: start, key: value} if start else {key: value}, ts))


def number_lines(
    lines: list[str], v2: bool, name: str, counter: bool, rows: Iterable[tuple[SeriesTags, int, int, Any]],
    on_drop: Optional[OnDrop] = None,
) -> None:
    """The lines of :func:`number_point` for ``rows`` of (series tags, start,
    time, value), written without building a Point per data point: the
    metric exporter's hot path (a test holds it equal to ``number_point`` +
    :func:`line_strings`). A row this shortcut does not cover (a NaN, a
    value that is not a plain int or float, an integer out of range) takes
    the general path, and so does a row it cannot write (``on_drop`` as for
    :func:`line_strings`)."""
    measurement, key = number_layout(v2, name, counter)
    head_key = f"{measurement} {key}"  # a str: its hash is kept, a tuple's is not
    field_keys = escaped_field_keys  # escaped and checked by the general path first
    append = lines.append
    last_ts, ts_text = None, ""
    for tags, start, ts, value in rows:
        cls = value.__class__
        head = tags.heads.get(head_key)
        if (
            head is None
            or head[0] != start
            or ts != last_ts
            or not (cls is float and value - value == 0 or cls is int and INT64_MIN <= value <= INT64_MAX)
        ):
            points: list[Point] = []
            number_point(points.append, v2, name, counter, tags, start, ts, value)
            fits = (cls is float and value - value == 0 or cls is int and INT64_MIN <= value <= INT64_MAX) and (
                0 <= start <= INT64_MAX and 0 < ts <= INT64_MAX
            )
            prefix = tags.prefixes.get(measurement)
            written = None
            if fits and prefix is None:
                # A series' first line: the general writer checks its tags and caches their prefix.
                written = line_strings(points, on_drop)
                if not written:  # left out (and counted): a bad tag stays bad
                    continue
                prefix = tags.prefixes.get(measurement)
            start_key, value_key = field_keys.get(ATTRIBUTE_START_TIME_UNIX_NANO), field_keys.get(key)
            if not fits or prefix is None or value_key is None or (start and start_key is None):
                lines += written if written is not None else line_strings(points, on_drop)  # fills the prefix and key caches
                continue
            if head is None or head[0] != start:
                text = f"{prefix} {start_key}{start}i,{value_key}" if start else f"{prefix} {value_key}"
                head = tags.heads[head_key] = (start, text)
            last_ts, ts_text = ts, f" {ts}\n"
        append(f"{head[1]}{value!r}{ts_text}" if cls is float else f"{head[1]}{value}i{ts_text}")


def histogram_points(
    append: Callable[[Point], None], v2: bool, name: str, tags: dict[str, str], start: int, ts: int, count: int,
    total: float | None, minimum: float | None, maximum: float | None, counts: Sequence[int], bounds: Sequence[float],
) -> None:
    """A histogram data point: ``count``, ``sum``/``min``/``max`` when present
    and, per bucket, the cumulative count: v1 one field per bound (``+Inf``
    last), v2 one point per bound tagged ``le``."""
    fields: dict[str, Any] = {ATTRIBUTE_START_TIME_UNIX_NANO: start} if start else {}
    prefix = name if v2 else ""
    _summary_fields(fields, prefix, count, total)
    if minimum is not None:
        fields[prefix + METRIC_HISTOGRAM_MIN_SUFFIX if v2 else METRIC_HISTOGRAM_MIN_FIELD_KEY] = minimum
    if maximum is not None:
        fields[prefix + METRIC_HISTOGRAM_MAX_SUFFIX if v2 else METRIC_HISTOGRAM_MAX_FIELD_KEY] = maximum
    if v2:
        append(make_point(MEASUREMENT_PROMETHEUS, tags, fields, ts))
        bucket_key = name + METRIC_HISTOGRAM_BUCKET_SUFFIX
    running = 0
    for j, bucket_count in enumerate(counts):
        running += bucket_count
        bound = bound_key(bounds[j]) if j < len(bounds) else METRIC_HISTOGRAM_INF_FIELD_KEY
        if v2:
            bucket_tags = tags.copy()
            bucket_tags[METRIC_HISTOGRAM_BOUND_KEY_V2] = bound
            append(make_point(MEASUREMENT_PROMETHEUS, bucket_tags, {bucket_key: float(running)}, ts))
        else:
            fields[bound] = float(running)
    if not v2:
        append(make_point(name, tags, fields, ts))


def summary_points(
    append: Callable[[Point], None], v2: bool, name: str, tags: dict[str, str], start: int, ts: int, count: int,
    total: float, quantiles: Iterable[tuple[float, float]],
) -> None:
    """A summary data point: ``count``, ``sum`` and per quantile its value:
    v1 one field per quantile, v2 one point per quantile tagged ``quantile``."""
    fields: dict[str, Any] = {ATTRIBUTE_START_TIME_UNIX_NANO: start} if start else {}
    _summary_fields(fields, name if v2 else "", count, total)
    if v2:
        append(make_point(MEASUREMENT_PROMETHEUS, tags, fields, ts))
        for quantile, value in quantiles:
            quantile_tags = tags.copy()
            quantile_tags[METRIC_SUMMARY_QUANTILE_KEY_V2] = bound_key(quantile)
            append(make_point(MEASUREMENT_PROMETHEUS, quantile_tags, {name: value}, ts))
    else:
        for quantile, value in quantiles:
            fields[bound_key(quantile)] = value
        append(make_point(name, tags, fields, ts))


def _summary_fields(fields: dict[str, Any], prefix: str, count: int, total: float | None) -> None:
    if prefix:
        fields[prefix + METRIC_HISTOGRAM_COUNT_SUFFIX] = float(count)
        if total is not None:
            fields[prefix + METRIC_HISTOGRAM_SUM_SUFFIX] = total
    else:
        fields[METRIC_HISTOGRAM_COUNT_FIELD_KEY] = float(count)
        if total is not None:
            fields[METRIC_HISTOGRAM_SUM_FIELD_KEY] = total


def exemplar_point(
    append: Callable[[Point], None], name: str, tags: dict[str, str], ts: int, value: float | int, trace_id: str,
    span_id: str,
) -> None:
    """telegraf-prometheus-v1 only (otel2influx v0.5.12, the version the
    Collector's exporter builds with; PR #275): an exemplar with a trace and
    a span id is a point ``<metric>_exemplar``; tags its filtered attributes,
    trace_id and span_id (no resource tags); field ``gauge``; its own time."""
    if not trace_id or not span_id:
        return
    tags[ATTRIBUTE_TRACE_ID] = trace_id
    tags[ATTRIBUTE_SPAN_ID] = span_id
    append(make_point(name + METRIC_EXEMPLAR_SUFFIX, tags, {METRIC_GAUGE_FIELD_KEY: value}, ts))

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
"""

from __future__ import annotations

import base64
import json
import math
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Final, Iterable, Literal, Mapping, Sequence, Union

# =============================================================================
# The otel2influx schema: InfluxDB's names, not the project's own `rqa.` names.
# From influxdata/influxdb-observability @ 5301efa: common/common.go (measurements,
# field keys, attribute keys) and the OpenTelemetry semconv v1.16 constants the
# otel2influx package uses (otel.library.*, otel.status_*, event.name,
# service.name); MetricExemplarSuffix from otel2influx's exemplar support.
# =============================================================================

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

# pdata's SpanKind.String() and StatusCode.String().
_SPAN_KIND_NAMES: Final = {1: "Internal", 2: "Server", 3: "Client", 4: "Producer", 5: "Consumer"}
_STATUS_CODE_NAMES: Final = {1: "Ok", 2: "Error"}

# =============================================================================
# Points
# =============================================================================

FieldType = Literal["float", "int", "uint", "string", "bool"]


class UInt(int):
    """A uint64 field value, written ``12u`` (a plain ``int`` is an int64, ``12i``)."""

    __slots__ = ()
    __str__ = int.__repr__  # "5", as for an int

    def __repr__(self) -> str:
        return f"UInt({int.__repr__(self)})"


FieldValue = Union[float, int, UInt, str, bool]

_FIELD_TYPES: Final[dict[type, FieldType]] = {float: "float", int: "int", UInt: "uint", str: "string", bool: "bool"}


def field_type(value: FieldValue) -> FieldType:
    """The InfluxDB type of a field value: float, int, uint, string or bool."""
    try:
        return _FIELD_TYPES[value.__class__]
    except KeyError:
        raise ValueError(f"not an InfluxDB field value: {value!r} ({type(value).__name__})") from None


@dataclass(frozen=True, slots=True)
class Point:
    """One InfluxDB point. ``tags`` are as otel2influx hands them to the
    writer (empty values included: :func:`to_line_protocol` skips them, as the
    Collector does); ``fields`` keep their type (see :func:`field_type`)."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_unix_nano: int


# A frozen dataclass __init__ calls object.__setattr__ per field; the slot
# descriptors do the same job in half the time, and points are made by the
# hundred thousand per second.
_new_point = object.__new__
_set_measurement = Point.measurement.__set__  # type: ignore[attr-defined]
_set_tags = Point.tags.__set__  # type: ignore[attr-defined]
_set_fields = Point.fields.__set__  # type: ignore[attr-defined]
_set_time = Point.time_unix_nano.__set__  # type: ignore[attr-defined]


class SeriesTags(dict):
    """The tags of one metric series, built once and shared by its points
    from one export to the next (``sdk_points.MetricsConverter``). It must
    not change once built: :func:`to_line_protocol` keeps the escaped line
    prefix of each measurement on it, which saves most of the cost of a line."""

    __slots__ = ("prefixes", "heads")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.prefixes: dict[str, str] = {}
        # number_lines: per measurement and value field, (start time, the
        # line up to the value): a cumulative series keeps its start time.
        self.heads: dict[str, tuple[int, str]] = {}


def _point(measurement: str, tags: dict, fields: dict, time_unix_nano: int) -> Point:
    p = _new_point(Point)
    _set_measurement(p, measurement)
    _set_tags(p, tags)
    _set_fields(p, fields)
    _set_time(p, time_unix_nano)
    return p


# =============================================================================
# OTLP JSON values
# =============================================================================

_CACHE_LIMIT = 50_000
_CACHEABLE_LENGTH = 256


class _Unsupported(Exception):
    """A NaN or infinite float where Go's json.Marshal fails."""


def _int(value: Any, name: str) -> int:
    """An int64/uint64/fixed64 field: a decimal string (OTLP JSON) or a JSON integer."""
    cls = value.__class__
    if cls is str or cls is int:
        try:
            return int(value)
        except ValueError:
            pass
    elif value is None:
        return 0
    raise ValueError(f"{name}: expected an integer or a decimal string, got {value!r}")


def _float(value: Any, name: str) -> float:
    """A double: a JSON number, or "NaN"/"Infinity"/"-Infinity"/a numeric string."""
    cls = value.__class__
    if cls is float:
        return value
    if cls is int:
        return float(value)
    if cls is str:
        try:
            return float(value)
        except ValueError:
            pass
    elif value is None:
        return 0.0
    raise ValueError(f"{name}: expected a number, got {value!r}")


def _count(obj: Mapping, name: str) -> int:
    """A uint32 count such as droppedAttributesCount (0 when absent)."""
    value = obj.get(name)
    if value is None or value == 0:
        return 0
    if value.__class__ is int and value >= 0:
        return value
    return _int(value, name)


_HEX_DIGITS = "0123456789abcdefABCDEF"
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16


def _hex_id(value: Any, length: int, name: str) -> str:
    """A trace (32) or span (16) id in OTLP JSON's hex; "" when absent or all zero."""
    if not value:
        return ""
    if value.__class__ is str and len(value) == length and not value.strip(_HEX_DIGITS):
        value = value.lower()
        return "" if value == (_ZERO_TRACE_ID if length == 32 else _ZERO_SPAN_ID) else value
    raise ValueError(f"{name}: expected {length} hex digits, got {value!r}")


def _enum(value: Any, names: Mapping[str, int], name: str) -> int:
    """An enum: its number (as OTLP JSON writes it) or its proto name."""
    if value.__class__ is int:
        return value
    if value is None:
        return 0
    if value.__class__ is str:
        number = names.get(value)
        if number is not None:
            return number
    raise ValueError(f"{name}: unknown value {value!r}")


_SPAN_KINDS = {
    f"SPAN_KIND_{n}": i for i, n in enumerate(("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"))
}
_STATUS_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_TEMPORALITIES = {
    "AGGREGATION_TEMPORALITY_UNSPECIFIED": 0,
    "AGGREGATION_TEMPORALITY_DELTA": 1,
    "AGGREGATION_TEMPORALITY_CUMULATIVE": 2,
}
_SEVERITY_NUMBERS = {"SEVERITY_NUMBER_UNSPECIFIED": 0}
for _i, _level in enumerate(("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")):
    for _j in range(4):
        _SEVERITY_NUMBERS[f"SEVERITY_NUMBER_{_level}{'' if _j == 0 else _j + 1}"] = 1 + _i * 4 + _j
del _i, _j, _level
_CUMULATIVE = 2


def _bytes(value: Any) -> bytes:
    if value.__class__ is not str:
        raise ValueError(f"bytesValue: expected base64 text, got {value!r}")
    text = value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        raise ValueError(f"bytesValue: not base64: {value!r}") from None


def _raw(any_value: Any) -> Any:
    """An OTLP JSON AnyValue as pdata's Value.AsRaw() gives it: str, bool, int,
    float, list, dict, bytes, or None (an empty value)."""
    if not any_value:
        return None
    if any_value.__class__ is not dict:
        raise ValueError(f"expected an AnyValue object, got {any_value!r}")
    for kind, value in any_value.items():
        if kind == "stringValue":
            if value.__class__ is str:
                return value
            raise ValueError(f"stringValue: expected a string, got {value!r}")
        if kind == "intValue":
            return _int(value, "intValue")
        if kind == "doubleValue":
            return _float(value, "doubleValue")
        if kind == "boolValue":
            if value is True or value is False:
                return value
            raise ValueError(f"boolValue: expected true or false, got {value!r}")
        if kind == "arrayValue":
            return [_raw(item) for item in _items(value or {}, "values")]
        if kind == "kvlistValue":
            mapping: dict[str, Any] = {}
            for entry in _items(value or {}, "values"):
                mapping[_key(entry)] = _raw(entry.get("value"))
            return mapping
        if kind == "bytesValue":
            return _bytes(value)
    return None


def _key(key_value: Any) -> str:
    if key_value.__class__ is not dict:
        raise ValueError(f"expected a KeyValue object, got {key_value!r}")
    key = key_value.get("key", "")
    if key.__class__ is not str:
        raise ValueError(f"key: expected a string, got {key!r}")
    return key


def _as_string(raw: Any) -> str:
    """pdata's Value.AsString() of an AsRaw() value: what otel2influx writes as a tag value."""
    cls = raw.__class__
    if cls is str:
        return raw
    if cls is bool:
        return "true" if raw else "false"
    if cls is int:
        return str(raw)
    if cls is float:
        try:
            return _es6_float(raw)
        except _Unsupported:
            return "json: unsupported value: " + _format_float_g_special(raw)
    if raw is None:
        return ""
    if cls is bytes:
        return base64.b64encode(raw).decode()
    try:  # map or slice: json.Marshal(AsRaw()), "" when that fails
        return _json(raw)
    except _Unsupported:
        return ""


as_string = _as_string  # for the SDK encoder (rqa_otel.influx.sdk_points)


def _value_as_string(any_value: Any) -> str:
    if any_value.__class__ is dict:
        text = any_value.get("stringValue")
        if text.__class__ is str:
            return text
    return _as_string(_raw(any_value))


def _put_tags(attributes: Any, tags: dict[str, str]) -> None:
    """attribute key -> AsString(value) for each non-empty key (later ones win)."""
    for key_value in attributes:
        key = _key(key_value)
        if key:
            tags[key] = _value_as_string(key_value.get("value"))


def _raw_attributes(attributes: Any) -> list[tuple[str, Any]]:
    """[(key, AsRaw value)] of a KeyValue list, in order."""
    pairs = []
    append = pairs.append
    for key_value in attributes:
        if key_value.__class__ is dict:  # the common case: {"key": k, "value": {"stringValue": s}}
            key = key_value.get("key")
            value = key_value.get("value")
            if key.__class__ is str and value.__class__ is dict and len(value) == 1:
                scalar = value.get("stringValue")
                if scalar.__class__ is str:
                    append((key, scalar))
                    continue
                scalar = value.get("doubleValue")
                if scalar.__class__ is float:
                    append((key, scalar))
                    continue
                scalar = value.get("intValue")
                if scalar.__class__ is str and scalar.isascii() and scalar.isdigit():
                    append((key, int(scalar)))
                    continue
                scalar = value.get("boolValue")
                if scalar is True or scalar is False:
                    append((key, scalar))
                    continue
        append((_key(key_value), _raw(key_value.get("value"))))
    return pairs


# --- Go number formatting -------------------------------------------------------


def _es6_float(f: float) -> str:
    """Go's encoding/json float64 (and pdata's float64AsString): shortest
    digits, fixed notation unless |f| < 1e-6 or >= 1e21 (then 1e-7, 1e+21)."""
    if f - f != 0:  # NaN or ±Inf
        raise _Unsupported
    magnitude = -f if f < 0 else f
    if magnitude == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    text = repr(f)
    if magnitude < 1e-6 or magnitude >= 1e21:
        mantissa, _, exponent = text.partition("e")
        if exponent[:2] == "-0":
            exponent = "-" + exponent[2:]
        return mantissa + "e" + exponent
    if "e" in text:
        return format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def _format_float_f(f: float) -> str:
    """strconv.FormatFloat(f, 'f', -1, 64): histogram bounds and quantiles as keys."""
    if f - f != 0:
        return _format_float_g_special(f)
    text = repr(f)
    if "e" in text:
        return format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def _format_float_g_special(f: float) -> str:
    return "NaN" if f != f else ("+Inf" if f > 0 else "-Inf")


_bound_keys: dict[float, str] = {}


def _bound_key(f: float) -> str:
    if f == 0:  # 0.0 and -0.0 share a dict slot
        return _format_float_f(f)
    key = _bound_keys.get(f)
    if key is None:
        key = _format_float_f(f)
        if len(_bound_keys) < _CACHE_LIMIT:
            _bound_keys[f] = key
    return key


# --- Go json.Marshal of AsRaw() values -------------------------------------------

_encode_basestring: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]
# json.Marshal escapes these (HTMLEscape and the JavaScript line separators).
_GO_JSON_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _json_string(text: str) -> str:
    encoded = _encode_basestring(text)
    if "<" in text or ">" in text or "&" in text or "\u2028" in text or "\u2029" in text:
        encoded = encoded.translate(_GO_JSON_ESCAPES)
    return encoded


def _json(value: Any) -> str:
    """Go's json.Marshal of a pdata AsRaw() value: sorted keys, no spaces,
    ES6 floats; raises _Unsupported for NaN and infinities."""
    cls = value.__class__
    if cls is str:
        return _json_string(value)
    if cls is bool:
        return "true" if value else "false"
    if cls is int:
        return str(value)
    if cls is float:
        return _es6_float(value)
    if value is None:
        return "null"
    if cls is dict:
        return "{" + ",".join([_json_string(k) + ":" + _json(value[k]) for k in sorted(value)]) + "}"
    if cls is list:
        return "[" + ",".join([_json(item) for item in value]) + "]"
    if cls is bytes:
        return '"' + base64.b64encode(value).decode() + '"'
    raise TypeError(f"not an attribute value: {value!r}")


_members: dict[tuple, str] = {}
_MEMBER_CACHEABLE = frozenset((str, int, float, bool, bytes, type(None)))


def _member(key: str, raw: Any) -> str | None:
    """``"key":value`` of an ``attributes`` JSON object, None where Go's
    json.Marshal fails (NaN, ±Inf). Cached: attribute values repeat."""
    cls = raw.__class__
    cacheable = cls in _MEMBER_CACHEABLE
    if cacheable:
        cache_key = (key, cls, raw)
        member = _members.get(cache_key)
        if member is not None:
            return member
    try:
        member = _json_string(key) + ":" + _json(raw)
    except _Unsupported:
        return None
    if cacheable and len(_members) < _CACHE_LIMIT and (cls is not str or len(raw) <= _CACHEABLE_LENGTH):
        _members[cache_key] = member
    return member


def _json_object(members: Mapping[str, str | None]) -> str | None:
    """json.Marshal(map[string]any) from the members of :func:`_member`:
    sorted keys; None when a value cannot be marshalled."""
    if None in members.values():
        return None
    return "{" + ",".join([members[key] for key in sorted(members)]) + "}"


def dimensions_set(dimensions: Iterable[str], name: str) -> frozenset[str]:
    """Validated span_dimensions/log_record_dimensions (``name`` names the setting)."""
    return _dimensions(dimensions, name)


def _dimensions(dimensions: Iterable[str], name: str) -> frozenset[str]:
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


def _items(container: Any, key: str) -> Sequence:
    """The list under ``key`` (empty when absent); a ValueError if it is not a list."""
    if container.__class__ is not dict:
        raise ValueError(f"expected an object holding {key!r}, got {container!r}")
    items = container.get(key)
    if items is None:
        return ()
    if items.__class__ is not list:
        raise ValueError(f"{key}: expected a list, got {type(items).__name__}")
    return items


def _object(container: Mapping, key: str) -> Mapping:
    value = container.get(key)
    if value is None:
        return {}
    if value.__class__ is not dict:
        raise ValueError(f"{key}: expected an object, got {value!r}")
    return value


# =============================================================================
# Metrics (metrics_telegraf_prometheus_v1.go, metrics_telegraf_prometheus_v2.go)
# =============================================================================


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
    for r, resource_metrics in enumerate(_items(request, "resourceMetrics")):
        where = f"resourceMetrics[{r}]"
        try:
            resource_tags: dict[str, str] = {}
            _put_tags(_items(_object(resource_metrics, "resource"), "attributes"), resource_tags)
            scopes = _items(resource_metrics, "scopeMetrics")
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        for s, scope_metrics in enumerate(scopes):
            where_scope = f"{where}.scopeMetrics[{s}]"
            try:
                tags = dict(resource_tags)
                scope = _object(scope_metrics, "scope")
                scope_name = scope.get("name")
                if scope_name:
                    tags[OTEL_LIBRARY_NAME] = _string(scope_name, "scope.name")
                scope_version = scope.get("version")
                if scope_version:
                    tags[OTEL_LIBRARY_VERSION] = _string(scope_version, "scope.version")
                _put_tags(_items(scope, "attributes"), tags)
                metrics = _items(scope_metrics, "metrics")
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
    ts = _int(data_point.get("timeUnixNano"), "timeUnixNano")
    if not ts:
        raise ValueError("timeUnixNano: metric has no timestamp")
    start = data_point.get("startTimeUnixNano")
    start = _int(start, "startTimeUnixNano") if start is not None else 0
    tags = base_tags.copy()
    attributes = data_point.get("attributes")
    if attributes:
        _put_tags(attributes, tags)
    return tags, start, ts


def _number_value(data_point: Mapping) -> float | int | None:
    value = data_point.get("asDouble")
    if value is not None:
        return _float(value, "asDouble")
    value = data_point.get("asInt")
    if value is not None:
        return _int(value, "asInt")
    return None


def _write_metric(points: list[Point], base_tags: dict[str, str], metric: Any, v2: bool) -> None:
    """Decode one OTLP-JSON Metric and hand its data points to the schema rules below."""
    name, kind, data = _metric_data(metric)
    if not kind:
        return
    append = points.append
    for i, data_point in enumerate(_items(data, "dataPoints")):
        try:
            tags, start, ts = _data_point(data_point, base_tags)
            if kind == "gauge" or kind == "sum":
                value = _number_value(data_point)
                if value is None:
                    continue
                counter = is_counter(
                    kind == "sum",
                    data.get("isMonotonic") is True,
                    _enum(data.get("aggregationTemporality"), _TEMPORALITIES, "aggregationTemporality"),
                )
                number_point(append, v2, name, counter, tags, start, ts, value)
            elif kind == "histogram":
                counts, bounds = _buckets(data_point)
                total, minimum, maximum = (data_point.get(key) for key in ("sum", "min", "max"))
                histogram_points(
                    append, v2, name, tags, start, ts, _int(data_point.get("count"), "count"),
                    None if total is None else _float(total, "sum"),
                    None if minimum is None else _float(minimum, "min"),
                    None if maximum is None else _float(maximum, "max"),
                    counts, bounds,
                )
            else:
                summary_points(
                    append, v2, name, tags, start, ts, _int(data_point.get("count"), "count"),
                    _float(data_point.get("sum"), "sum"), _quantiles(data_point),
                )
            exemplars = data_point.get("exemplars") if kind != "summary" else None
            if exemplars and not v2:
                _write_exemplars(append, name, exemplars)
        except ValueError as exc:
            raise ValueError(f"{kind}.dataPoints[{i}]: {exc}") from None


def _buckets(data_point: Mapping) -> tuple[list[int], list[float]]:
    counts = [_int(c, "bucketCounts") for c in _items(data_point, "bucketCounts")]
    bounds = [_float(b, "explicitBounds") for b in _items(data_point, "explicitBounds")]
    if counts and len(counts) != len(bounds) and len(counts) != len(bounds) + 1:
        # The +Inf bucket may be missing; any other mismatch is an error upstream.
        raise ValueError(
            f"invalid metric histogram bucket counts qty {len(counts)} vs explicit bounds qty {len(bounds)}"
        )
    return counts, bounds


def _quantiles(data_point: Mapping) -> list[tuple[float, float]]:
    result = []
    for item in _items(data_point, "quantileValues"):
        if item.__class__ is not dict:
            raise ValueError(f"quantileValues: expected objects, got {item!r}")
        result.append((_float(item.get("quantile"), "quantile"), _float(item.get("value"), "value")))
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
            trace_id = _hex_id(exemplar.get("traceId"), 32, "traceId")
            span_id = _hex_id(exemplar.get("spanId"), 16, "spanId")
            tags: dict[str, str] = {}
            attributes = exemplar.get("filteredAttributes")
            if attributes:
                _put_tags(attributes, tags)
            exemplar_point(append, name, tags, _int(exemplar.get("timeUnixNano"), "timeUnixNano"), value, trace_id, span_id)
        except ValueError as exc:
            raise ValueError(f"exemplars[{k}]: {exc}") from None


# --- The metric schema rules: one implementation for the OTLP-JSON decoder
# above and the SDK encoder (rqa_otel.influx.sdk_points). ``tags`` are the
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
    append(_point(measurement, tags, {ATTRIBUTE_START_TIME_UNIX_NANO: start, key: value} if start else {key: value}, ts))


def number_lines(
    lines: list[str], v2: bool, name: str, counter: bool, rows: Iterable[tuple[SeriesTags, int, int, Any]]
) -> None:
    """The lines of :func:`number_point` for ``rows`` of (series tags, start,
    time, value), written without building a Point per data point: the
    metric exporter's hot path (a test holds it equal to ``number_point`` +
    :func:`line_strings`). A row this shortcut does not cover (a NaN, a
    value that is not a plain int or float, an integer out of range) takes
    the general path."""
    measurement, key = number_layout(v2, name, counter)
    head_key = f"{measurement} {key}"  # a str: its hash is kept, a tuple's is not
    field_keys = _field_keys  # escaped and checked by the general path first
    append = lines.append
    last_ts, ts_text = None, ""
    for tags, start, ts, value in rows:
        cls = value.__class__
        head = tags.heads.get(head_key)
        if (
            head is None
            or head[0] != start
            or ts != last_ts
            or not (cls is float and value - value == 0 or cls is int and _INT64_MIN <= value <= _INT64_MAX)
        ):
            points: list[Point] = []
            number_point(points.append, v2, name, counter, tags, start, ts, value)
            fits = (cls is float and value - value == 0 or cls is int and _INT64_MIN <= value <= _INT64_MAX) and (
                0 <= start <= _INT64_MAX and 0 < ts <= _INT64_MAX
            )
            prefix = tags.prefixes.get(measurement)
            if fits and prefix is None:
                line_strings(points)  # a series' first line: the general writer checks its tags, caches their prefix
                prefix = tags.prefixes.get(measurement)
            start_key, value_key = field_keys.get(ATTRIBUTE_START_TIME_UNIX_NANO), field_keys.get(key)
            if not fits or prefix is None or value_key is None or (start and start_key is None):
                lines += line_strings(points)  # fills the prefix and key caches
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
        append(_point(MEASUREMENT_PROMETHEUS, tags, fields, ts))
        bucket_key = name + METRIC_HISTOGRAM_BUCKET_SUFFIX
    running = 0
    for j, bucket_count in enumerate(counts):
        running += bucket_count
        bound = _bound_key(bounds[j]) if j < len(bounds) else METRIC_HISTOGRAM_INF_FIELD_KEY
        if v2:
            bucket_tags = tags.copy()
            bucket_tags[METRIC_HISTOGRAM_BOUND_KEY_V2] = bound
            append(_point(MEASUREMENT_PROMETHEUS, bucket_tags, {bucket_key: float(running)}, ts))
        else:
            fields[bound] = float(running)
    if not v2:
        append(_point(name, tags, fields, ts))


def summary_points(
    append: Callable[[Point], None], v2: bool, name: str, tags: dict[str, str], start: int, ts: int, count: int,
    total: float, quantiles: Iterable[tuple[float, float]],
) -> None:
    """A summary data point: ``count``, ``sum`` and per quantile its value:
    v1 one field per quantile, v2 one point per quantile tagged ``quantile``."""
    fields: dict[str, Any] = {ATTRIBUTE_START_TIME_UNIX_NANO: start} if start else {}
    _summary_fields(fields, name if v2 else "", count, total)
    if v2:
        append(_point(MEASUREMENT_PROMETHEUS, tags, fields, ts))
        for quantile, value in quantiles:
            quantile_tags = tags.copy()
            quantile_tags[METRIC_SUMMARY_QUANTILE_KEY_V2] = _bound_key(quantile)
            append(_point(MEASUREMENT_PROMETHEUS, quantile_tags, {name: value}, ts))
    else:
        for quantile, value in quantiles:
            fields[_bound_key(quantile)] = value
        append(_point(name, tags, fields, ts))


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
    append(_point(name + METRIC_EXEMPLAR_SUFFIX, tags, {METRIC_GAUGE_FIELD_KEY: value}, ts))


# =============================================================================
# Traces (traces.go)
# =============================================================================


def traces_to_points(
    request: Mapping[str, Any], span_dimensions: Iterable[str] = DEFAULT_SPAN_DIMENSIONS
) -> list[Point]:
    """The points otel2influx writes for an ExportTraceServiceRequest (OTLP JSON).

    Per span, in this order: one ``logs`` point per event (tags trace_id and
    span_id; fields ``event.name``, ``attributes`` and
    ``dropped_attributes_count``; the event's time), one ``span-links``
    point per link (tags trace_id, span_id, linked_trace_id, linked_span_id;
    fields ``trace_state``, ``attributes``, ``dropped_attributes_count``; the
    span's start time), then the ``spans`` point at the span's start time.

    Span tags: trace_id, span_id and every resource, scope or span attribute
    whose key is in ``span_dimensions`` (value as AsString). All other
    attributes go into one ``attributes`` field: JSON, keys sorted. Fields:
    trace_state, parent_span_id, span.name, span.kind (Internal, Server…),
    end_time_unix_nano and duration_nano (int), otel.status_code (Ok/Error),
    otel.status_description, dropped_{attributes,events,links}_count (uint).
    The scope's name and version are not written. ``span.name`` is a field
    unless a span *attribute* of that key is a dimension.

    Raises ValueError for a span without trace id, span id or start time,
    for duplicate dimensions and for malformed JSON values.
    """
    dimensions = _dimensions(span_dimensions, "span_dimensions")
    points: list[Point] = []
    for where_scope, resource_attributes, scope_attributes, spans in _scoped(request, "resourceSpans", "scopeSpans", "spans"):
        # The resource and scope part of every span's tags and attributes.
        base_tags, base_members = span_base(dimensions, resource_attributes, scope_attributes)
        for i, span in enumerate(spans):
            try:
                _write_span(points, span, dimensions, base_tags, base_members)
            except ValueError as exc:
                name = span.get("name") if span.__class__ is dict else None
                raise ValueError(f"{where_scope}.spans[{i}] ({name!r}): {exc}") from None
    return points


def _scoped(request: Any, resource_key: str, scope_key: str, items_key: str):
    """(where, resource attributes, scope attributes, items) for each scope
    of a trace or logs request; a malformed level raises ValueError naming
    its path (``resourceSpans[0].scopeSpans[1]``)."""
    for r, resource in enumerate(_items(request, resource_key)):
        where = f"{resource_key}[{r}]"
        try:
            resource_attributes = _raw_attributes(_items(_object(resource, "resource"), "attributes"))
            scopes = _items(resource, scope_key)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        for s, scope in enumerate(scopes):
            where_scope = f"{where}.{scope_key}[{s}]"
            try:
                scope_attributes = _raw_attributes(_items(_object(scope, "scope"), "attributes"))
                items = _items(scope, items_key)
            except ValueError as exc:
                raise ValueError(f"{where_scope}: {exc}") from None
            yield where_scope, resource_attributes, scope_attributes, items


def span_base(
    dimensions: frozenset[str], *attribute_lists: list[tuple[str, Any]]
) -> tuple[dict[str, str], dict[str, str | None]]:
    """(tags, ``attributes`` members) that the resource and scope attributes
    give every span of a scope."""
    tags: dict[str, str] = {}
    members: dict[str, str | None] = {}
    for attributes in attribute_lists:
        _merge_span_attributes(attributes, dimensions, tags, members)
    return tags, members


def _merge_span_attributes(
    attributes: list[tuple[str, Any]], dimensions: frozenset[str], tags: dict[str, str], members: dict[str, str | None]
) -> None:
    """Attributes in span_dimensions become tags, the others members of the
    ``attributes`` JSON (later ones win)."""
    cache = _members
    for key, raw in attributes:
        if key in dimensions:
            if key in tags:  # a dimension seen before: the value also goes into `attributes`
                members[key] = _member(key, raw)
            tags[key] = _as_string(raw)
        else:
            cls = raw.__class__
            member = cache.get((key, cls, raw)) if cls is str or cls is int or cls is float else None
            members[key] = member if member is not None else _member(key, raw)


def _write_span(
    points: list[Point],
    span: Any,
    dimensions: frozenset[str],
    base_tags: dict[str, str],
    base_members: dict[str, str | None],
) -> None:
    """Decode one OTLP-JSON Span and hand it to :func:`span_points`."""
    if span.__class__ is not dict:
        raise ValueError(f"expected a Span object, got {span!r}")
    trace_id = _hex_id(span.get("traceId"), 32, "traceId")
    if not trace_id:
        raise ValueError("traceId: span has no trace ID")
    span_id = _hex_id(span.get("spanId"), 16, "spanId")
    if not span_id:
        raise ValueError("spanId: span has no span ID")
    trace_state = span.get("traceState")
    name = span.get("name")
    start = _int(span.get("startTimeUnixNano"), "startTimeUnixNano")
    if not start:
        raise ValueError("startTimeUnixNano: span has no timestamp")
    events = _decoded(span, "events", "an Event", _event_values)
    links = _decoded(span, "links", "a Link", _link_values)
    status = _object(span, "status")
    message = status.get("message")
    span_points(
        points, dimensions, base_tags, base_members, trace_id, span_id,
        _raw_attributes(_items(span, "attributes")), _count(span, "droppedAttributesCount"),
        _string(trace_state, "traceState") if trace_state else "",
        _hex_id(span.get("parentSpanId"), 16, "parentSpanId"),
        _string(name, "name") if name else "",
        _enum(span.get("kind"), _SPAN_KINDS, "kind"),
        start, _int(span.get("endTimeUnixNano"), "endTimeUnixNano"),
        events, _count(span, "droppedEventsCount"), links, _count(span, "droppedLinksCount"),
        _enum(status.get("code"), _STATUS_CODES, "status.code") if status else 0,
        _string(message, "status.message") if status and message else "",
    )


def _decoded(span: Mapping, key: str, what: str, decode: Callable[[dict], tuple]) -> list[tuple]:
    """``decode`` of each object in ``span[key]``; errors name ``key[i]``."""
    result = []
    for i, item in enumerate(_items(span, key)):
        try:
            if item.__class__ is not dict:
                raise ValueError(f"expected {what} object, got {item!r}")
            result.append(decode(item))
        except ValueError as exc:
            raise ValueError(f"{key}[{i}]: {exc}") from None
    return result


def _event_values(event: dict) -> tuple:
    name = event.get("name")
    return (
        _string(name, "name") if name else "",
        _int(event.get("timeUnixNano"), "timeUnixNano"),
        _raw_attributes(_items(event, "attributes")),
        _count(event, "droppedAttributesCount"),
    )


def _link_values(link: dict) -> tuple:
    trace_state = link.get("traceState")
    return (
        _hex_id(link.get("traceId"), 32, "traceId"),
        _hex_id(link.get("spanId"), 16, "spanId"),
        _string(trace_state, "traceState") if trace_state else "",
        _raw_attributes(_items(link, "attributes")),
        _count(link, "droppedAttributesCount"),
    )


def span_points(
    points: list[Point],
    dimensions: frozenset[str],
    base_tags: dict[str, str],
    base_members: dict[str, str | None],
    trace_id: str,
    span_id: str,
    attributes: list[tuple[str, Any]],
    dropped_attributes: int,
    trace_state: str,
    parent_span_id: str,
    name: str,
    kind: int,
    start: int,
    end: int,
    events: Iterable[tuple[str, int, list[tuple[str, Any]], int]],
    dropped_events: int,
    links: Iterable[tuple[str, str, str, list[tuple[str, Any]], int]],
    dropped_links: int,
    status_code: int,
    status_message: str,
) -> None:
    """The span schema rules, for the OTLP-JSON decoder and the SDK encoder
    alike: the span's events (``logs``), links (``span-links``), then the
    ``spans`` point. Ids are lower-case hex ("" when absent), ``kind`` and
    ``status_code`` OTLP's numbers, attributes ``(key, AsRaw value)`` pairs,
    ``events`` ``(name, time, attributes, dropped attributes)``, ``links``
    ``(trace id, span id, trace state, attributes, dropped attributes)``."""
    tags = base_tags.copy()
    fields: dict[str, Any] = {}
    members = base_members.copy()
    if attributes:
        _merge_span_attributes(attributes, dimensions, tags, members)
    if members:
        text = _json_object(members)
        if text is None:  # json.Marshal fails on NaN/Inf: the span's attributes count as dropped
            dropped_attributes += len(attributes)
        else:
            fields[ATTRIBUTE_ATTRIBUTES] = text
    if trace_state:
        fields[ATTRIBUTE_TRACE_STATE] = trace_state
    if parent_span_id:
        fields[ATTRIBUTE_PARENT_SPAN_ID] = parent_span_id
    if name:
        fields[ATTRIBUTE_SPAN_NAME] = name
    if kind:
        fields[ATTRIBUTE_SPAN_KIND] = _SPAN_KIND_NAMES.get(kind, "")  # pdata: "" for an unknown kind
    if end:
        fields[ATTRIBUTE_END_TIME_UNIX_NANO] = end
        fields[ATTRIBUTE_DURATION_NANO] = end - start

    for event in events:
        if not _write_span_event(points, trace_id, span_id, *event):
            dropped_events += 1
    if dropped_events:
        fields[ATTRIBUTE_DROPPED_EVENTS_COUNT] = UInt(dropped_events)
    for link in links:
        if not _write_span_link(points, trace_id, span_id, start, *link):
            dropped_links += 1
    if dropped_links:
        fields[ATTRIBUTE_DROPPED_LINKS_COUNT] = UInt(dropped_links)

    code_name = _STATUS_CODE_NAMES.get(status_code)
    if code_name:
        fields[OTEL_STATUS_CODE] = code_name
    if status_message:
        fields[OTEL_STATUS_DESCRIPTION] = status_message

    tags[ATTRIBUTE_TRACE_ID] = trace_id
    tags[ATTRIBUTE_SPAN_ID] = span_id
    for key in tags:
        if key in fields:  # tag and field keys conflict: the field is dropped
            dropped_attributes += 1
            del fields[key]
    if dropped_attributes:
        fields[ATTRIBUTE_DROPPED_ATTRIBUTES_COUNT] = UInt(dropped_attributes)
    points.append(_point(MEASUREMENT_SPANS, tags, fields, start))


def _write_span_event(
    points: list[Point], trace_id: str, span_id: str, name: str, ts: int, attributes: list, dropped: int
) -> bool:
    """Queue the event's ``logs`` point; False when it has nothing to write
    (no name, no attributes: a line needs a field), which upstream counts as
    a dropped event."""
    fields: dict[str, Any] = {}
    if name:
        fields[ATTRIBUTE_EVENT_NAME] = name
    if attributes:
        _attributes_fields(attributes, dropped, fields)
    if not fields:
        return False
    points.append(_point(MEASUREMENT_LOGS, {ATTRIBUTE_TRACE_ID: trace_id, ATTRIBUTE_SPAN_ID: span_id}, fields, ts))
    return True


def _write_span_link(
    points: list[Point], trace_id: str, span_id: str, start: int,
    linked_trace_id: str, linked_span_id: str, trace_state: str, attributes: list, dropped: int,
) -> bool:
    """Queue the link's ``span-links`` point; False when it cannot be
    written (no linked ids, or no field), which upstream counts as dropped."""
    if not linked_trace_id or not linked_span_id:
        return False
    fields: dict[str, Any] = {}
    if trace_state:
        fields[ATTRIBUTE_TRACE_STATE] = trace_state
    if attributes:
        _attributes_fields(attributes, dropped, fields)
    if not fields:
        return False
    tags = {
        ATTRIBUTE_TRACE_ID: trace_id,
        ATTRIBUTE_SPAN_ID: span_id,
        ATTRIBUTE_LINKED_TRACE_ID: linked_trace_id,
        ATTRIBUTE_LINKED_SPAN_ID: linked_span_id,
    }
    points.append(_point(MEASUREMENT_SPAN_LINKS, tags, fields, start))
    return True


def _attributes_fields(attributes: list[tuple[str, Any]], dropped: int, fields: dict[str, Any]) -> None:
    """An event's or link's non-empty attributes: ``attributes`` (JSON) and
    ``dropped_attributes_count`` (only written when there are attributes)."""
    text = _json_object({key: _member(key, raw) for key, raw in attributes})
    if text is None:
        dropped += len(attributes)
    else:
        fields[ATTRIBUTE_ATTRIBUTES] = text
    if dropped:
        fields[ATTRIBUTE_DROPPED_ATTRIBUTES_COUNT] = UInt(dropped)


def _string(value: Any, name: str) -> str:
    if value.__class__ is str:
        return value
    raise ValueError(f"{name}: expected a string, got {value!r}")


# =============================================================================
# Logs (logs.go)
# =============================================================================


def logs_to_points(
    request: Mapping[str, Any], log_record_dimensions: Iterable[str] = DEFAULT_LOG_RECORD_DIMENSIONS
) -> list[Point]:
    """The ``logs`` points otel2influx writes for an ExportLogsServiceRequest (OTLP JSON).

    Tags: trace_id and span_id (when the record has both) and the resource,
    scope or record attributes whose key is in ``log_record_dimensions``.
    Fields: ``body`` (AsString: a map or list body is JSON), ``attributes``
    (all other attributes, JSON), ``severity_number`` (int),
    ``severity_text``, ``observed_time_unix_nano`` (int) and
    ``dropped_attributes_count`` (uint). A record without a timestamp is
    written at the current time. The scope's name and version are not written.
    """
    dimensions = _dimensions(log_record_dimensions, "log_record_dimensions")
    points: list[Point] = []
    for where_scope, resource_attributes, scope_attributes, records in _scoped(request, "resourceLogs", "scopeLogs", "logRecords"):
        base_tags, base_members = log_base(dimensions, resource_attributes, scope_attributes)
        for i, record in enumerate(records):
            try:
                _write_log_record(points, record, dimensions, base_tags, base_members)
            except ValueError as exc:
                raise ValueError(f"{where_scope}.logRecords[{i}]: {exc}") from None
    return points


def log_base(
    dimensions: frozenset[str], *attribute_lists: list[tuple[str, Any]]
) -> tuple[dict[str, str], dict[str, str | None]]:
    """(tags, ``attributes`` members) that the resource and scope attributes
    give every log record of a scope."""
    tags: dict[str, str] = {}
    members: dict[str, str | None] = {}
    for attributes in attribute_lists:
        _merge_log_attributes(attributes, dimensions, tags, members)
    return tags, members


def _merge_log_attributes(
    attributes: list[tuple[str, Any]], dimensions: frozenset[str], tags: dict[str, str], members: dict[str, str | None]
) -> None:
    cache = _members
    for key, raw in attributes:
        if not key:
            continue
        if key in dimensions:
            tags[key] = _as_string(raw)
        else:
            cls = raw.__class__
            member = cache.get((key, cls, raw)) if cls is str or cls is int or cls is float else None
            members[key] = member if member is not None else _member(key, raw)


def _write_log_record(
    points: list[Point],
    record: Any,
    dimensions: frozenset[str],
    base_tags: dict[str, str],
    base_members: dict[str, str | None],
) -> None:
    """Decode one OTLP-JSON LogRecord and hand it to :func:`log_point`."""
    if record.__class__ is not dict:
        raise ValueError(f"expected a LogRecord object, got {record!r}")
    severity_text = record.get("severityText")
    log_point(
        points, dimensions, base_tags, base_members,
        _int(record.get("timeUnixNano"), "timeUnixNano"),
        _int(record.get("observedTimeUnixNano"), "observedTimeUnixNano"),
        _hex_id(record.get("traceId"), 32, "traceId"),
        _hex_id(record.get("spanId"), 16, "spanId"),
        _enum(record.get("severityNumber"), _SEVERITY_NUMBERS, "severityNumber"),
        _string(severity_text, "severityText") if severity_text else "",
        _value_as_string(record.get("body")),
        _raw_attributes(_items(record, "attributes")),
        _count(record, "droppedAttributesCount"),
    )


def log_point(
    points: list[Point],
    dimensions: frozenset[str],
    base_tags: dict[str, str],
    base_members: dict[str, str | None],
    ts: int,
    observed: int,
    trace_id: str,
    span_id: str,
    severity_number: int,
    severity_text: str,
    body: str,
    attributes: list[tuple[str, Any]],
    dropped_attributes: int,
) -> None:
    """The log record schema rules, for the OTLP-JSON decoder and the SDK
    encoder alike: one ``logs`` point. ``body`` is already pdata's AsString."""
    if not ts:  # "valid in OpenTelemetry, but not in InfluxDB": now
        ts = time.time_ns()
    tags = base_tags.copy()
    fields: dict[str, Any] = {}
    if observed:
        fields[ATTRIBUTE_OBSERVED_TIME_UNIX_NANO] = observed
    if trace_id and span_id:
        tags[ATTRIBUTE_TRACE_ID] = trace_id
        tags[ATTRIBUTE_SPAN_ID] = span_id
    if severity_number:
        fields[ATTRIBUTE_SEVERITY_NUMBER] = severity_number
    if severity_text:
        fields[ATTRIBUTE_SEVERITY_TEXT] = severity_text
    fields[ATTRIBUTE_BODY] = body
    members = base_members.copy()
    if attributes:
        _merge_log_attributes(attributes, dimensions, tags, members)
    if members:
        text = _json_object(members)
        if text is None:  # json.Marshal fails on NaN/Inf: the record's attributes count as dropped
            dropped_attributes += len(attributes)
        else:
            fields[ATTRIBUTE_ATTRIBUTES] = text
    for key in tags:
        if key in fields:  # tag and field keys conflict: the field is dropped
            dropped_attributes += 1
            del fields[key]
    if dropped_attributes:
        fields[ATTRIBUTE_DROPPED_ATTRIBUTES_COUNT] = UInt(dropped_attributes)
    points.append(_point(MEASUREMENT_LOGS, tags, fields, ts))


# =============================================================================
# Line protocol (exporter/influxdbexporter/writer.go + line-protocol/v2 Encoder)
# =============================================================================

_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(1 << 63), (1 << 63) - 1, (1 << 64) - 1
# line-protocol/v2 refuses these in measurements and keys (validMeasurementOrKey).
_NON_PRINTABLE = frozenset(chr(c) for c in (*range(0x20), 0x7F))
_measurements: dict[str, str] = {}
_tag_pairs: dict[tuple[str, str], str] = {}
_field_keys: dict[str, str] = {}
# "measurement,k=v,..." by (measurement, tuple(tags.items())): metric points
# repeat their tag sets. Points tagged with a trace id (spans, events, links,
# trace-correlated logs, exemplars) have unique tag sets and skip it.
_prefixes: dict[tuple, str] = {}


def to_line_protocol(points: Iterable[Point]) -> bytes:
    """InfluxDB line protocol (nanosecond timestamps, UTF-8), one line per
    point: :func:`encode_lines` of :func:`line_strings`."""
    return encode_lines(line_strings(points))


def encode_lines(lines: Iterable[str]) -> bytes:
    """Lines of :func:`line_strings` or :func:`number_lines` as UTF-8 bytes."""
    text = "".join(lines)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (json.loads lets "\ud800" through): Go's JSON decoder
        # turns them into U+FFFD, and so does this.
        return "".join(c if not 0xD800 <= ord(c) <= 0xDFFF else "\ufffd" for c in text).encode("utf-8")


def line_strings(points: Iterable[Point]) -> list[str]:
    """One line-protocol line per point, each ending in a newline.

    As the Collector's writer: tags sorted by key, tags with an empty key or
    value and fields with an empty key left out, NaN and infinite floats left
    out (InfluxDB has no such values). Escaping: measurement ``,`` and space;
    tag keys, tag values and field keys ``,`` ``=`` and space; string field
    values ``"`` and ``\\``.

    Raises ValueError, naming the point, where the Collector fails the batch:
    a measurement, key or tag value that is empty or holds a control
    character or a trailing backslash, a point left without fields, an
    integer out of the int64/uint64 range.
    """
    lines = []
    append = lines.append
    prefixes, field_keys = _prefixes, _field_keys
    for index, point in enumerate(points):
        try:
            tags = point.tags
            if tags.__class__ is SeriesTags:
                prefix = tags.prefixes.get(point.measurement)
                if prefix is None:
                    prefix = tags.prefixes[point.measurement] = _prefix(index, point)
                parts = [prefix]
            elif ATTRIBUTE_TRACE_ID in tags:
                parts = [_prefix(index, point)]
            else:
                cache_key = (point.measurement, tuple(tags.items()))
                prefix = prefixes.get(cache_key)
                if prefix is None:
                    prefix = _prefix(index, point)
                    if len(prefixes) >= _CACHE_LIMIT:
                        prefixes.clear()
                    prefixes[cache_key] = prefix
                parts = [prefix]
            separator = " "
            for key, value in point.fields.items():
                encoded_key = field_keys.get(key)
                if encoded_key is None:
                    encoded_key = _escape_field_key(index, point, key)
                    if not encoded_key:
                        continue
                cls = value.__class__
                # One f-string per field: the commonest types first.
                if cls is int:
                    if not _INT64_MIN <= value <= _INT64_MAX:
                        raise ValueError(_point_error(index, point, f"field {key!r}: {value} is out of the int64 range"))
                    parts.append(f"{separator}{encoded_key}{value}i")
                elif cls is float:
                    if value - value != 0:  # NaN, ±Inf: lineprotocol.NewValue refuses them; the field is left out
                        continue
                    parts.append(f"{separator}{encoded_key}{value!r}")
                elif cls is str:
                    if "\\" in value or '"' in value:
                        value = value.replace("\\", "\\\\").replace('"', '\\"')
                    parts.append(f'{separator}{encoded_key}"{value}"')
                elif cls is UInt:
                    if not 0 <= value <= _UINT64_MAX:
                        raise ValueError(_point_error(index, point, f"field {key!r}: {value} is out of the uint64 range"))
                    parts.append(f"{separator}{encoded_key}{int.__repr__(value)}u")
                elif cls is bool:
                    parts.append(f"{separator}{encoded_key}{'true' if value else 'false'}")
                else:
                    raise ValueError(
                        _point_error(index, point, f"field {key!r}: {value!r} is not a float, int, UInt, str or bool")
                    )
                separator = ","
            if separator == " ":
                raise ValueError(_point_error(index, point, "no fields to write (a line needs at least one)"))
            ts = point.time_unix_nano
            if ts.__class__ is not int or ts < _INT64_MIN or ts > _INT64_MAX:
                raise ValueError(_point_error(index, point, f"timestamp {ts!r} is not an int64 of nanoseconds"))
        except (TypeError, AttributeError) as exc:  # not a Point, tags that are not strings…
            raise ValueError(f"point {index}: cannot be written: {exc}") from None
        parts.append(f" {ts}\n")
        append("".join(parts))
    return lines


def _prefix(index: int, point: Point) -> str:
    """The escaped measurement and sorted tags of a line."""
    measurement = point.measurement
    escaped = _measurements.get(measurement)
    if escaped is None:
        escaped = _escape_measurement(index, point)
    tags = point.tags
    if not tags:
        return escaped
    parts = [escaped]
    tag_pairs = _tag_pairs
    for pair in sorted(tags.items()):
        encoded = tag_pairs.get(pair)
        if encoded is None:
            encoded = _escape_tag(index, point, pair)
        parts.append(encoded)
    return "".join(parts)


def _point_error(index: int, point: Point, message: str) -> str:
    return f"point {index} (measurement {point.measurement!r}, time {point.time_unix_nano}): {message}"


def _check_name(index: int, point: Point, what: str, text: Any) -> None:
    if text.__class__ is not str:
        raise ValueError(_point_error(index, point, f"{what} {text!r} is not a string"))
    if not text or not _NON_PRINTABLE.isdisjoint(text) or text[-1] == "\\":
        raise ValueError(
            _point_error(
                index,
                point,
                f"{what} {text!r} cannot be written: empty, a control character or a trailing backslash",
            )
        )


def _escape_measurement(index: int, point: Point) -> str:
    measurement = point.measurement
    _check_name(index, point, "measurement", measurement)
    escaped = measurement.replace(",", "\\,").replace(" ", "\\ ")
    if len(_measurements) < _CACHE_LIMIT:
        _measurements[measurement] = escaped
    return escaped


def _escape_key(text: str) -> str:
    return text.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _escape_tag(index: int, point: Point, pair: tuple[str, str]) -> str:
    key, value = pair
    if (not key or not value) and key.__class__ is str and value.__class__ is str:
        return ""  # writer.go optimizeTags: empty tag keys and values are left out
    _check_name(index, point, "tag key", key)
    _check_name(index, point, f"value of tag {key!r}", value)
    encoded = "," + _escape_key(key) + "=" + _escape_key(value)
    if len(_tag_pairs) < _CACHE_LIMIT and len(value) <= _CACHEABLE_LENGTH:
        _tag_pairs[pair] = encoded
    return encoded


def _escape_field_key(index: int, point: Point, key: str) -> str:
    if key == "":  # writer.go convertFields: empty field keys are left out
        return ""
    _check_name(index, point, "field key", key)
    encoded = _escape_key(key) + "="
    if len(_field_keys) < _CACHE_LIMIT:
        _field_keys[key] = encoded
    return encoded

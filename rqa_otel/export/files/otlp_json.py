"""The embedded default exporter: OTLP JSON lines.

Each export call appends one line holding one Export{Trace,Metrics,Logs}ServiceRequest
in OTLP's protobuf-JSON mapping, which is what the Collector's ``file``
exporter writes and its ``otlpjsonfile`` receiver reads: lowerCamelCase
field names, integer enums, 64-bit integers as decimal strings, and trace and
span ids as hex (the one place OTLP departs from the proto3 JSON mapping,
which would write them as base64).
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any, Sequence

from opentelemetry.sdk.metrics.export import Gauge, Histogram, MetricExporter, MetricExportResult, MetricsData, Sum
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from rqa_otel.export.files.rotating import RotatingFile
from rqa_otel.export.scrubbing import plain_attributes, span_attributes
from rqa_otel.export.otlp.log_encoding import json_any_value

_ID_FIELDS = frozenset(("traceId", "spanId", "parentSpanId"))

# One encoder (json.dumps with these arguments builds one per call). The
# documents are built here and never circular (a resource's encoding is
# shared, not nested in itself): the C encoder's cycle check, an id kept
# per dict and list, was a fifth of its time.
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode

FILE_NAMES = {"traces": "traces.jsonl", "metrics": "metrics.jsonl", "logs": "logs.jsonl"}


def request_to_json_line(request: Any) -> bytes:
    """One OTLP protobuf request as one OTLP-JSON line (ending in a newline)."""
    # Imported here: the embedded default writes its lines directly, and
    # loads protobuf's JSON mapping only for what takes this path.
    from google.protobuf.json_format import MessageToDict

    document = MessageToDict(request, use_integers_for_enums=True)
    _ids_to_hex(document)
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _ids_to_hex(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _ids_to_hex(value)
    elif isinstance(node, list):
        for item in node:
            _ids_to_hex(item)


_SPAN_KINDS = {kind: kind.value + 1 for kind in SpanKind}  # OTLP counts from SPAN_KIND_UNSPECIFIED = 0
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200


def spans_to_json_line(spans: Sequence[ReadableSpan]) -> bytes:
    """What ``request_to_json_line(encode_spans(spans))`` writes, built
    directly: a run span with hundreds of trade events took milliseconds
    through protobuf objects and MessageToDict. A test holds the two equal.
    Written as text, as json.dumps would write the same document (see
    ``metrics_to_json_line``)."""
    groups: dict[Any, dict[Any, list[str]]] = {}
    resource = scopes = None
    for span in spans:
        # A resource hashes by encoding its attributes as JSON: once per
        # resource object (a provider's spans share one), not per span.
        if span.resource is not resource or scopes is None:
            resource = span.resource
            scopes = groups.setdefault(resource, {})
        scopes.setdefault(span.instrumentation_scope, []).append(_span(span))
    resource_spans = []
    for resource, scopes in groups.items():
        scope_spans = []
        for scope, encoded in scopes.items():
            entry = '{"scope":' + _dumps(_scope(scope)) + ',"spans":[' + ",".join(encoded) + "]"
            if scope is not None and scope.schema_url:
                entry += ',"schemaUrl":' + _dumps(scope.schema_url)
            scope_spans.append(entry + "}")
        item = '{"resource":' + _dumps(_resource(resource)) + ',"scopeSpans":[' + ",".join(scope_spans) + "]"
        if resource.schema_url:
            item += ',"schemaUrl":' + _dumps(resource.schema_url)
        resource_spans.append(item + "}")
    return ('{"resourceSpans":[' + ",".join(resource_spans) + "]}").encode() + b"\n"


def _scope(scope) -> dict:
    if scope is None:
        return {}
    encoded: dict[str, Any] = {}
    if scope.name:
        encoded["name"] = scope.name
    if scope.version:
        encoded["version"] = scope.version
    return _with_attributes(encoded, scope.attributes)


def _with_attributes(target: dict, attributes, dropped: int = 0) -> dict:
    if attributes:
        target["attributes"] = _key_values(plain_attributes(attributes))
    if dropped:
        target["droppedAttributesCount"] = dropped
    return target


_INT64 = 1 << 63


def _key_values(attributes) -> list:
    """``json_any_value`` per item, the common scalars inline (a Python call
    per attribute was most of encoding a span or a point)."""
    encoded = []
    append = encoded.append
    for key, value in attributes.items():
        cls = value.__class__
        if cls is str:
            append({"key": key, "value": {"stringValue": value}})
        elif cls is float:
            append({"key": key, "value": {"doubleValue": value}})
        elif cls is int and -_INT64 <= value < _INT64:
            append({"key": key, "value": {"intValue": str(value)}})
        elif cls is bool:
            append({"key": key, "value": {"boolValue": value}})
        else:
            append({"key": key, "value": json_any_value(value)})
    return encoded


_resource_cache: tuple[Any, dict] = (None, {})


def _resource(resource) -> dict:
    """A resource's encoding, once per resource object (a provider's
    signals share one; its attributes never change). Read-only afterwards."""
    global _resource_cache
    cached, encoded = _resource_cache
    if cached is not resource:
        encoded = _with_attributes({}, resource.attributes)
        _resource_cache = (resource, encoded)
    return encoded


def _flags(context) -> int:
    return _HAS_IS_REMOTE | (_IS_REMOTE if context is not None and context.is_remote else 0)


def _attributes_json(parts: list, attributes, dropped: int = 0) -> None:
    """``_with_attributes`` as JSON text fields appended to ``parts``."""
    if attributes:
        parts.append('"attributes":' + _key_values_json(attributes))
    if dropped:
        parts.append('"droppedAttributesCount":' + str(int(dropped)))


def _span(span: ReadableSpan) -> str:
    context = span.get_span_context()
    parts = ['"traceId":"%032x","spanId":"%016x"' % (context.trace_id, context.span_id)]
    if context.trace_state:
        parts.append('"traceState":' + _dumps(",".join(f"{k}={v}" for k, v in context.trace_state.items())))
    if span.parent is not None:
        parts.append('"parentSpanId":"%016x"' % span.parent.span_id)
    parts.append('"flags":' + str(_flags(span.parent)))
    if span.name:
        parts.append('"name":' + _dumps(span.name))
    parts.append('"kind":' + str(_SPAN_KINDS[span.kind]))
    if span.start_time:
        parts.append('"startTimeUnixNano":"' + str(span.start_time) + '"')
    if span.end_time:
        parts.append('"endTimeUnixNano":"' + str(span.end_time) + '"')
    _attributes_json(parts, span_attributes(span), span.dropped_attributes)
    events = span.events
    if events:
        encoded = []
        for event in events:
            fields = ['"timeUnixNano":"' + str(event.timestamp) + '"']
            if event.name:
                fields.append('"name":' + _dumps(event.name))
            _attributes_json(fields, event.attributes, event.dropped_attributes)
            encoded.append("{" + ",".join(fields) + "}")
        parts.append('"events":[' + ",".join(encoded) + "]")
    if span.dropped_events:
        parts.append('"droppedEventsCount":' + str(int(span.dropped_events)))
    links = span.links
    if links:
        encoded = []
        for link in links:
            fields = ['"traceId":"%032x","spanId":"%016x"' % (link.context.trace_id, link.context.span_id)]
            _attributes_json(fields, link.attributes, link.dropped_attributes)
            fields.append('"flags":' + str(_flags(link.context)))
            encoded.append("{" + ",".join(fields) + "}")
        parts.append('"links":[' + ",".join(encoded) + "]")
    if span.dropped_links:
        parts.append('"droppedLinksCount":' + str(int(span.dropped_links)))
    status = []
    if span.status.description:
        status.append('"message":' + _dumps(span.status.description))
    if span.status.status_code.value:
        status.append('"code":' + str(int(span.status.status_code.value)))
    parts.append('"status":{' + ",".join(status) + "}")
    return "{" + ",".join(parts) + "}"


def metrics_to_json_line(metrics_data: MetricsData) -> bytes:
    """What ``request_to_json_line(encode_metrics(metrics_data))`` writes,
    built directly for sums, gauges and explicit histograms, exemplars
    included (exponential histograms take the protobuf path): each collection went
    through protobuf objects and MessageToDict, the largest part of the
    exporter's cost and of the final flush. A test holds the two equal.
    Written as text, as json.dumps would write the same document (a test
    holds that too): a dict per point and attribute, then the encoder's
    walk over them, were most of the cost of a short program's last
    collection."""
    resources: dict[Any, dict[Any, str]] = {}
    for resource_metrics in metrics_data.resource_metrics:
        # As encode_metrics: keyed by resource, then by scope (later entries replace).
        scopes: dict[Any, str] = {}
        resources[resource_metrics.resource] = scopes
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope
            metrics = [_metric(metric) for metric in scope_metrics.metrics]
            if any(metric is None for metric in metrics):
                from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

                return request_to_json_line(encode_metrics(metrics_data))
            entry = '{"scope":' + _dumps(_scope(scope))
            if metrics:
                entry += ',"metrics":[' + ",".join(metrics) + "]"  # type: ignore[arg-type]
            if scope is not None and scope.schema_url:
                entry += ',"schemaUrl":' + _dumps(scope.schema_url)
            scopes[scope] = entry + "}"
    resource_list = []
    for resource, scopes in resources.items():
        item = '{"resource":' + _dumps(_resource(resource))
        if scopes:
            item += ',"scopeMetrics":[' + ",".join(scopes.values()) + "]"
        if resource.schema_url:
            item += ',"schemaUrl":' + _dumps(resource.schema_url)
        resource_list.append(item + "}")
    text = '{"resourceMetrics":[' + ",".join(resource_list) + "]}" if resource_list else "{}"
    return text.encode() + b"\n"


_json_string = json.encoder.encode_basestring  # what the encoder above makes of a str
_float_repr = float.__repr__
_INFINITY = math.inf


def _json_float(value: float) -> str:
    """A float as json.dumps writes it (allow_nan: NaN and Infinity bare)."""
    if value != value:
        return "NaN"
    if value == _INFINITY:
        return "Infinity"
    if value == -_INFINITY:
        return "-Infinity"
    return _float_repr(value)


_KEY_HEADS: dict[Any, str] = {}


def _key_values_json(attributes) -> str:
    """``_key_values(attributes)`` as JSON text."""
    parts = []
    append = parts.append
    heads = _KEY_HEADS
    for key, value in plain_attributes(attributes).items():
        head = heads.get(key)
        if head is None:
            head = '{"key":' + _dumps(key) + ',"value":'
            if len(heads) < 4096:  # series keys repeat; a bound against a key per value
                heads[key] = head
        cls = value.__class__
        if cls is str:
            append(head + '{"stringValue":' + _json_string(value) + "}}")
        elif cls is float:
            append(head + '{"doubleValue":' + _json_float(value) + "}}")
        elif cls is int and -_INT64 <= value < _INT64:
            append(head + '{"intValue":"' + str(value) + '"}}')
        elif cls is bool:
            append(head + ('{"boolValue":true}}' if value else '{"boolValue":false}}'))
        else:
            append(head + _dumps(json_any_value(value)) + "}")
    return "[" + ",".join(parts) + "]"


def _double(value: float) -> Any:
    """protobuf's JSON mapping of a double: a number, or one of its names."""
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _times(target: dict, point, start: bool = True) -> dict:
    if start and point.start_time_unix_nano:
        target["startTimeUnixNano"] = str(point.start_time_unix_nano)
    if point.time_unix_nano:
        target["timeUnixNano"] = str(point.time_unix_nano)
    return target


def _exemplars(target: dict, exemplars) -> bool:
    """A point's exemplars as encode_metrics writes them (counters recorded
    inside a sampled span carry some: the run's alerts and trading errors).
    False for a value protobuf's path would refuse, so that it does."""
    encoded = []
    for exemplar in exemplars:
        item = _with_attributes({}, exemplar.filtered_attributes)
        if exemplar.time_unix_nano:
            item["timeUnixNano"] = str(exemplar.time_unix_nano)
        value = exemplar.value
        if isinstance(value, float):
            item["asDouble"] = _double(value)
        elif isinstance(value, int):
            item["asInt"] = str(int(value))
        else:
            return False
        if exemplar.span_id is not None and exemplar.trace_id is not None:
            item["spanId"] = f"{exemplar.span_id:016x}"
            item["traceId"] = f"{exemplar.trace_id:032x}"
        encoded.append(item)
    if encoded:
        target["exemplars"] = encoded
    return True


def _number_point(point, start: bool) -> str | None:
    parts = []
    if point.attributes:
        parts.append('"attributes":' + _key_values_json(point.attributes))
    if start and point.start_time_unix_nano:  # a gauge's point has no start
        parts.append('"startTimeUnixNano":"' + str(point.start_time_unix_nano) + '"')
    if point.time_unix_nano:
        parts.append('"timeUnixNano":"' + str(point.time_unix_nano) + '"')
    value = point.value
    if isinstance(value, int):
        parts.append('"asInt":"' + str(int(value)) + '"')
    elif value.__class__ is float:
        parts.append('"asDouble":' + _json_float(value))
    else:
        parts.append('"asDouble":' + _dumps(_double(value)))
    if point.exemplars:
        exemplars: dict = {}
        if not _exemplars(exemplars, point.exemplars):
            return None
        if exemplars:
            parts.append('"exemplars":' + _dumps(exemplars["exemplars"]))
    return "{" + ",".join(parts) + "}"


def _histogram_point(point) -> dict | None:
    encoded = _times(_with_attributes({}, point.attributes), point)
    if point.exemplars and not _exemplars(encoded, point.exemplars):
        return None
    if point.count:
        encoded["count"] = str(point.count)
    if point.sum is not None:  # optional fields: present when set, even to 0
        encoded["sum"] = _double(point.sum)
    if point.bucket_counts:
        encoded["bucketCounts"] = [str(count) for count in point.bucket_counts]
    if point.explicit_bounds:
        encoded["explicitBounds"] = [_double(bound) for bound in point.explicit_bounds]
    if point.min is not None:
        encoded["min"] = _double(point.min)
    if point.max is not None:
        encoded["max"] = _double(point.max)
    return encoded


def _metric(metric) -> str | None:
    parts = []
    if metric.name:
        parts.append('"name":' + _dumps(metric.name))
    if metric.description:
        parts.append('"description":' + _dumps(metric.description))
    if metric.unit:
        parts.append('"unit":' + _dumps(metric.unit))
    data = metric.data
    if isinstance(data, Histogram):
        histograms = [_histogram_point(point) for point in data.data_points]
        points = [None if point is None else _dumps(point) for point in histograms]
        key = "histogram"
    elif isinstance(data, (Sum, Gauge)):
        points = [_number_point(point, isinstance(data, Sum)) for point in data.data_points]
        key = "sum" if isinstance(data, Sum) else "gauge"
    else:
        return None  # exponential histograms: the protobuf path
    if any(point is None for point in points):
        return None  # an exemplar value protobuf refuses: its path raises as before
    if points:  # encode_metrics sets nothing for a metric without points
        body = '"' + key + '":{"dataPoints":[' + ",".join(points) + "]"  # type: ignore[arg-type]
        if key != "gauge" and data.aggregation_temporality:
            body += ',"aggregationTemporality":' + str(int(data.aggregation_temporality))
        if key == "sum" and data.is_monotonic:
            body += ',"isMonotonic":true'
        parts.append(body + "}")
    return "{" + ",".join(parts) + "}"


class OtlpJsonSpanExporter(SpanExporter):
    def __init__(self, file: RotatingFile) -> None:
        self._file = file

    @property
    def path(self) -> Path:
        return self._file.path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        written = self._file.write_lines(spans_to_json_line(spans), count=len(spans))
        return SpanExportResult.SUCCESS if written else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._file.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class OtlpJsonMetricExporter(MetricExporter):
    def __init__(self, file: RotatingFile) -> None:
        super().__init__()
        self._file = file

    @property
    def path(self) -> Path:
        return self._file.path

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        written = self._file.write_lines(metrics_to_json_line(metrics_data))
        return MetricExportResult.SUCCESS if written else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._file.close()

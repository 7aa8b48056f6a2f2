"""SDK metrics as ExportMetricsServiceRequest protobuf bytes, written
directly (as rqa_otel.export.otlp.log_encoding writes logs).

The SDK exporters' encoder (opentelemetry-exporter-otlp-proto-common) needs
protobuf and the generated OTLP classes: ~30 ms to import, on every start
of a process that exports metrics over OTLP. This writer gives the same
bytes for what a process usually records: sums, gauges and explicit-bucket
histograms without exemplars, with str/bool/int/float attributes. For
anything else ``encode_request`` returns None and the caller uses the SDK's
encoder. tests/test_metric_protobuf.py holds the bytes equal to the SDK's.
"""

from __future__ import annotations

import struct
from typing import Any, Mapping

from opentelemetry.sdk.metrics.export import Gauge, Histogram, MetricsData, Sum

from rqa_otel.export.otlp.protobuf_wire import length_delimited as _field
from rqa_otel.export.otlp.protobuf_wire import pack_double as _double
from rqa_otel.export.otlp.protobuf_wire import varint as _varint

_fixed64 = struct.Struct("<Q").pack
_sfixed64 = struct.Struct("<q").pack
_INT64 = range(-(1 << 63), 1 << 63)


class Unsupported(Exception):
    """What this writer leaves to the SDK's encoder."""


def encode_request(data: MetricsData) -> bytes | None:
    """The request's bytes, or None for what only the SDK's encoder writes."""
    try:
        return _request(data)
    except (Unsupported, UnicodeEncodeError):
        return None


def _text(tag: int, value: str) -> bytes:
    """A string field; proto3 leaves out the empty one."""
    return _field(tag, value.encode()) if value else b""


def _any_value(value: Any) -> bytes:
    kind = value.__class__
    if kind is str:
        return _field(0x0A, value.encode())
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is int:
        if value not in _INT64:
            raise Unsupported("int beyond int64")
        return b"\x18" + _varint(value)
    if kind is float:
        return b"\x21" + _double(value)
    raise Unsupported(f"attribute of type {kind.__name__}")


def _attributes(tag: int, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    return b"".join(
        _field(tag, _text(0x0A, key) + _field(0x12, _any_value(value))) for key, value in attributes.items()
    )


def _request(data: MetricsData) -> bytes:
    # Grouped by resource, then scope, in dicts as the SDK's encoder does
    # (an equal resource or scope seen again takes the earlier one's place).
    resources: dict[Any, tuple[Any, dict[Any, bytes]]] = {}  # by resource: (the first such, its scopes)
    for resource_metrics in data.resource_metrics:
        scopes: dict[Any, bytes] = {}
        resources[resource_metrics.resource] = (resource_metrics.resource, scopes)
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope
            if scope is None:
                raise Unsupported("a scope of None")
            encoded_scope = _text(0x0A, scope.name) + _text(0x12, scope.version or "") + _attributes(0x1A, scope.attributes)
            body = _field(0x0A, encoded_scope) + b"".join(_field(0x12, _metric(m)) for m in scope_metrics.metrics)
            scopes[scope] = body + _text(0x1A, scope.schema_url or "")
    out = []
    for resource, scopes in resources.values():
        body = _field(0x0A, _attributes(0x0A, resource.attributes))
        body += b"".join(_field(0x12, scope) for scope in scopes.values())
        out.append(_field(0x0A, body + _text(0x1A, resource.schema_url or "")))
    return b"".join(out)


def _metric(metric: Any) -> bytes:
    head = _text(0x0A, metric.name) + _text(0x12, metric.description or "") + _text(0x1A, metric.unit or "")
    data = metric.data
    points = data.data_points
    if not points:
        if data.__class__ in (Gauge, Sum, Histogram):
            return head
        raise Unsupported(type(data).__name__)
    if data.__class__ is Gauge:
        return head + _field(0x2A, b"".join(_field(0x0A, _number_point(p, False)) for p in points))
    if data.__class__ is Sum:
        body = b"".join(_field(0x0A, _number_point(p, True)) for p in points)
        body += _enum(0x10, data.aggregation_temporality) + (b"\x18\x01" if data.is_monotonic else b"")
        return head + _field(0x3A, body)
    if data.__class__ is Histogram:
        body = b"".join(_field(0x0A, _histogram_point(p)) for p in points) + _enum(0x10, data.aggregation_temporality)
        return head + _field(0x4A, body)
    raise Unsupported(type(data).__name__)  # exponential histograms


def _enum(tag: int, value: Any) -> bytes:
    number = int(value)
    return bytes((tag,)) + _varint(number) if number else b""


def _times(point: Any, with_start: bool) -> bytes:
    out = b""
    if with_start and point.start_time_unix_nano:
        out += b"\x11" + _fixed64(point.start_time_unix_nano)
    if point.time_unix_nano:
        out += b"\x19" + _fixed64(point.time_unix_nano)
    return out


def _number_point(point: Any, with_start: bool) -> bytes:
    if point.exemplars:
        raise Unsupported("exemplars")
    value = point.value
    if isinstance(value, int):
        if value not in _INT64:
            raise Unsupported("int beyond int64")
        encoded = b"\x31" + _sfixed64(value)
    else:
        encoded = b"\x21" + _double(value)
    return _times(point, with_start) + encoded + _attributes(0x3A, point.attributes)


def _histogram_point(point: Any) -> bytes:
    if point.exemplars:
        raise Unsupported("exemplars")
    out = [_times(point, True)]
    if point.count:
        out.append(b"\x21" + _fixed64(point.count))
    if point.sum is not None:
        out.append(b"\x29" + _double(point.sum))
    if point.bucket_counts:
        out.append(_field(0x32, b"".join(_fixed64(c) for c in point.bucket_counts)))
    if point.explicit_bounds:
        out.append(_field(0x3A, b"".join(_double(b) for b in point.explicit_bounds)))
    out.append(_attributes(0x4A, point.attributes))
    if point.min is not None:
        out.append(b"\x59" + _double(point.min))
    if point.max is not None:
        out.append(b"\x61" + _double(point.max))
    return b"".join(out)

"""Logs to points (otel2influx ``logs.go``): :func:`logs_to_points` decodes
an OTLP-JSON request; :func:`log_base` and :func:`log_point` are the log
record schema rules, shared with the SDK encoder (``sdk_points``)."""

from __future__ import annotations

import time
from typing import Any, Iterable, Mapping

from rqa_otel.export.influx.otel2influx.go_format import as_string, json_member, json_member_cache, json_object
from rqa_otel.export.influx.otel2influx.otlp_json import (
    decode_as_string,
    decode_attributes,
    decode_count,
    decode_enum,
    decode_hex_id,
    decode_int,
    decode_string,
    list_at,
    scoped_items,
)
from rqa_otel.export.influx.otel2influx.points import Point, UInt, make_point
from rqa_otel.export.influx.otel2influx.schema import (
    ATTRIBUTE_ATTRIBUTES,
    ATTRIBUTE_BODY,
    ATTRIBUTE_DROPPED_ATTRIBUTES_COUNT,
    ATTRIBUTE_OBSERVED_TIME_UNIX_NANO,
    ATTRIBUTE_SEVERITY_NUMBER,
    ATTRIBUTE_SEVERITY_TEXT,
    ATTRIBUTE_SPAN_ID,
    ATTRIBUTE_TRACE_ID,
    DEFAULT_LOG_RECORD_DIMENSIONS,
    MEASUREMENT_LOGS,
    dimensions_set,
)

# OTLP JSON may name an enum instead of numbering it.
_SEVERITY_NUMBERS = {"SEVERITY_NUMBER_UNSPECIFIED": 0}
for _i, _level in enumerate(("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")):
    for _j in range(4):
        _SEVERITY_NUMBERS[f"SEVERITY_NUMBER_{_level}{'' if _j == 0 else _j + 1}"] = 1 + _i * 4 + _j
del _i, _j, _level


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
    dimensions = dimensions_set(log_record_dimensions, "log_record_dimensions")
    points: list[Point] = []
    for where_scope, resource_attributes, scope_attributes, records in scoped_items(request, "resourceLogs", "scopeLogs", "logRecords"):
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
    cache = json_member_cache
    for key, raw in attributes:
        if not key:
            continue
        if key in dimensions:
            tags[key] = as_string(raw)
        else:
            cls = raw.__class__
            member = cache.get((key, cls, raw)) if cls is str or cls is int or cls is float else None
            members[key] = member if member is not None else json_member(key, raw)


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
        decode_int(record.get("timeUnixNano"), "timeUnixNano"),
        decode_int(record.get("observedTimeUnixNano"), "observedTimeUnixNano"),
        decode_hex_id(record.get("traceId"), 32, "traceId"),
        decode_hex_id(record.get("spanId"), 16, "spanId"),
        decode_enum(record.get("severityNumber"), _SEVERITY_NUMBERS, "severityNumber"),
        decode_string(severity_text, "severityText") if severity_text else "",
        decode_as_string(record.get("body")),
        decode_attributes(list_at(record, "attributes")),
        decode_count(record, "droppedAttributesCount"),
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
        text = json_object(members)
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
    points.append(make_point(MEASUREMENT_LOGS, tags, fields, ts))

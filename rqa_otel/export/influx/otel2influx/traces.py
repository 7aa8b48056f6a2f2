"""Traces to points (otel2influx ``traces.go``): :func:`traces_to_points`
decodes an OTLP-JSON request; :func:`span_base` and :func:`span_points` are
the span schema rules, shared with the SDK encoder (``sdk_points``)."""

from __future__ import annotations

from typing import Any, Callable, Final, Iterable, Mapping

from rqa_otel.export.influx.otel2influx.go_format import as_string, json_member, json_member_cache, json_object
from rqa_otel.export.influx.otel2influx.otlp_json import (
    decode_attributes,
    decode_count,
    decode_enum,
    decode_hex_id,
    decode_int,
    decode_string,
    list_at,
    object_at,
    scoped_items,
)
from rqa_otel.export.influx.otel2influx.points import Point, UInt, make_point
from rqa_otel.export.influx.otel2influx.schema import (
    ATTRIBUTE_ATTRIBUTES,
    ATTRIBUTE_DROPPED_ATTRIBUTES_COUNT,
    ATTRIBUTE_DROPPED_EVENTS_COUNT,
    ATTRIBUTE_DROPPED_LINKS_COUNT,
    ATTRIBUTE_DURATION_NANO,
    ATTRIBUTE_END_TIME_UNIX_NANO,
    ATTRIBUTE_EVENT_NAME,
    ATTRIBUTE_LINKED_SPAN_ID,
    ATTRIBUTE_LINKED_TRACE_ID,
    ATTRIBUTE_PARENT_SPAN_ID,
    ATTRIBUTE_SPAN_ID,
    ATTRIBUTE_SPAN_KIND,
    ATTRIBUTE_SPAN_NAME,
    ATTRIBUTE_TRACE_ID,
    ATTRIBUTE_TRACE_STATE,
    DEFAULT_SPAN_DIMENSIONS,
    MEASUREMENT_LOGS,
    MEASUREMENT_SPAN_LINKS,
    MEASUREMENT_SPANS,
    OTEL_STATUS_CODE,
    OTEL_STATUS_DESCRIPTION,
    dimensions_set,
)

# pdata's SpanKind.String() and StatusCode.String().
_SPAN_KIND_NAMES: Final = {1: "Internal", 2: "Server", 3: "Client", 4: "Producer", 5: "Consumer"}
_STATUS_CODE_NAMES: Final = {1: "Ok", 2: "Error"}
# OTLP JSON may name an enum instead of numbering it.
_SPAN_KINDS = {
    f"SPAN_KIND_{n}": i for i, n in enumerate(("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"))
}
_STATUS_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


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
    dimensions = dimensions_set(span_dimensions, "span_dimensions")
    points: list[Point] = []
    for where_scope, resource_attributes, scope_attributes, spans in scoped_items(request, "resourceSpans", "scopeSpans", "spans"):
        # The resource and scope part of every span's tags and attributes.
        base_tags, base_members = span_base(dimensions, resource_attributes, scope_attributes)
        for i, span in enumerate(spans):
            try:
                _write_span(points, span, dimensions, base_tags, base_members)
            except ValueError as exc:
                name = span.get("name") if span.__class__ is dict else None
                raise ValueError(f"{where_scope}.spans[{i}] ({name!r}): {exc}") from None
    return points



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
    cache = json_member_cache
    for key, raw in attributes:
        if key in dimensions:
            if key in tags:  # a dimension seen before: the value also goes into `attributes`
                members[key] = json_member(key, raw)
            tags[key] = as_string(raw)
        else:
            cls = raw.__class__
            member = cache.get((key, cls, raw)) if cls is str or cls is int or cls is float else None
            members[key] = member if member is not None else json_member(key, raw)


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
    trace_id = decode_hex_id(span.get("traceId"), 32, "traceId")
    if not trace_id:
        raise ValueError("traceId: span has no trace ID")
    span_id = decode_hex_id(span.get("spanId"), 16, "spanId")
    if not span_id:
        raise ValueError("spanId: span has no span ID")
    trace_state = span.get("traceState")
    name = span.get("name")
    start = decode_int(span.get("startTimeUnixNano"), "startTimeUnixNano")
    if not start:
        raise ValueError("startTimeUnixNano: span has no timestamp")
    events = _decoded(span, "events", "an Event", _event_values)
    links = _decoded(span, "links", "a Link", _link_values)
    status = object_at(span, "status")
    message = status.get("message")
    span_points(
        points, dimensions, base_tags, base_members, trace_id, span_id,
        decode_attributes(list_at(span, "attributes")), decode_count(span, "droppedAttributesCount"),
        decode_string(trace_state, "traceState") if trace_state else "",
        decode_hex_id(span.get("parentSpanId"), 16, "parentSpanId"),
        decode_string(name, "name") if name else "",
        decode_enum(span.get("kind"), _SPAN_KINDS, "kind"),
        start, decode_int(span.get("endTimeUnixNano"), "endTimeUnixNano"),
        events, decode_count(span, "droppedEventsCount"), links, decode_count(span, "droppedLinksCount"),
        decode_enum(status.get("code"), _STATUS_CODES, "status.code") if status else 0,
        decode_string(message, "status.message") if status and message else "",
    )


def _decoded(span: Mapping, key: str, what: str, decode: Callable[[dict], tuple]) -> list[tuple]:
    """``decode`` of each object in ``span[key]``; errors name ``key[i]``."""
    result = []
    for i, item in enumerate(list_at(span, key)):
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
        decode_string(name, "name") if name else "",
        decode_int(event.get("timeUnixNano"), "timeUnixNano"),
        decode_attributes(list_at(event, "attributes")),
        decode_count(event, "droppedAttributesCount"),
    )


def _link_values(link: dict) -> tuple:
    trace_state = link.get("traceState")
    return (
        decode_hex_id(link.get("traceId"), 32, "traceId"),
        decode_hex_id(link.get("spanId"), 16, "spanId"),
        decode_string(trace_state, "traceState") if trace_state else "",
        decode_attributes(list_at(link, "attributes")),
        decode_count(link, "droppedAttributesCount"),
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
        text = json_object(members)
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
    points.append(make_point(MEASUREMENT_SPANS, tags, fields, start))


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
    points.append(make_point(MEASUREMENT_LOGS, {ATTRIBUTE_TRACE_ID: trace_id, ATTRIBUTE_SPAN_ID: span_id}, fields, ts))
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
    points.append(make_point(MEASUREMENT_SPAN_LINKS, tags, fields, start))
    return True


def _attributes_fields(attributes: list[tuple[str, Any]], dropped: int, fields: dict[str, Any]) -> None:
    """An event's or link's non-empty attributes: ``attributes`` (JSON) and
    ``dropped_attributes_count`` (only written when there are attributes)."""
    text = json_object({key: json_member(key, raw) for key, raw in attributes})
    if text is None:
        dropped += len(attributes)
    else:
        fields[ATTRIBUTE_ATTRIBUTES] = text
    if dropped:
        fields[ATTRIBUTE_DROPPED_ATTRIBUTES_COUNT] = UInt(dropped)

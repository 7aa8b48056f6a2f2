"""OpenTelemetry SDK data to otel2influx points, without going through OTLP.

The in-process InfluxDB exporters start from SDK objects (``ReadableSpan``,
``MetricsData``, ``ReadableLogRecord``) and from the log pipeline's entry
tuples. Encoding those as OTLP and decoding them again would cost more than
the conversion itself, so this module reads the SDK objects directly and
hands the values to the schema rules of :mod:`rqa_otel.export.influx.otel2influx`
(``span_points``, ``log_point``, ``number_point``…): one implementation of
the schema for both paths. Values are mapped as the SDK's OTLP encoders map
them (tests check both paths give the same points).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Iterable, Iterator

from opentelemetry.sdk.metrics.export import (
    ExponentialHistogram,
    Gauge,
    Histogram,
    MetricsData,
    Sum,
)

from rqa_otel.export.influx import otel2influx as o2i
from rqa_otel.export.influx.otel2influx import Point
from rqa_otel.export.influx.series_budget import DeltaState, SeriesBudget, step_many
from rqa_otel.export.log_entry import with_attribute_dict
from rqa_otel.export.otlp.log_encoding import severity

_log = logging.getLogger("rqa_otel.export")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_CACHE_LIMIT = 50_000
_CUMULATIVE = 2  # AggregationTemporality.CUMULATIVE


def raw(value: Any) -> Any:
    """An attribute or body value as pdata's AsRaw() would give it after the
    SDK's OTLP encoding: sequences become lists, mappings dicts, an int
    outside int64 and any other type its ``str`` (as the project's log
    encoder does)."""
    cls = value.__class__
    if cls is str or cls is float or cls is bool or cls is bytes:
        return value
    if cls is int:
        return value if _INT64_MIN <= value <= _INT64_MAX else str(value)
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {str(k): raw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [raw(item) for item in value]
    for base in (bool, int, float, str):  # subclasses (enums, numpy scalars…) as their base type
        if isinstance(value, base):
            return raw(base(value) if base is not str else str.__str__(value))
    return str(value)


def raw_items(attributes: Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    if not attributes:
        return []
    return [(key, raw(value)) for key, value in attributes.items()]


def _hex(number: int | None, width: int) -> str:
    return format(number, f"0{width}x") if number else ""


# --- spans ---------------------------------------------------------------------


def spans_to_points(spans: Iterable[Any], dimensions: frozenset[str]) -> list[Point]:
    """The points of ``ReadableSpan`` objects (``dimensions`` from
    :func:`otel2influx.dimensions_set`)."""
    points: list[Point] = []
    bases: dict[tuple[int, int], tuple[Any, Any, tuple]] = {}
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope
        key = (id(resource), id(scope))
        cached = bases.get(key)
        if cached is None:  # the objects are kept in the entry, so their ids stay theirs
            scope_attributes = raw_items(getattr(scope, "attributes", None)) if scope is not None else []
            cached = bases[key] = (resource, scope, o2i.span_base(dimensions, raw_items(resource.attributes), scope_attributes))
        base_tags, base_members = cached[2]
        context, parent, status = span.context, span.parent, span.status
        o2i.span_points(
            points, dimensions, base_tags, base_members,
            _hex(context.trace_id, 32), _hex(context.span_id, 16),
            raw_items(span.attributes), span.dropped_attributes,
            context.trace_state.to_header() if context.trace_state else "",
            _hex(parent.span_id, 16) if parent is not None else "",
            span.name or "",
            span.kind.value + 1,  # the SDK counts from INTERNAL = 0, OTLP from UNSPECIFIED = 0
            span.start_time or 0, span.end_time or 0,
            [(event.name or "", event.timestamp, raw_items(event.attributes), event.dropped_attributes) for event in span.events],
            span.dropped_events,
            [
                (
                    # No trace state: the SDK's OTLP encoder sends none for links,
                    # so the Collector path never sees one.
                    _hex(link.context.trace_id, 32), _hex(link.context.span_id, 16), "",
                    raw_items(link.attributes), link.dropped_attributes,
                )
                for link in span.links
            ],
            span.dropped_links,
            status.status_code.value,
            status.description or "",
        )
    return points


# --- metrics ---------------------------------------------------------------------


class MetricsConverter:
    """``MetricsData`` to points. Keeps, per series, the merged tag dict
    between exports: the SDK hands the same attributes object for a series
    at every collection, and building tags is most of the work per point."""

    def __init__(
        self, schema: str = o2i.SCHEMA_TELEGRAF_PROMETHEUS_V1, budget: SeriesBudget | None = None,
        on_drop: o2i.OnDrop | None = None,
    ) -> None:
        """``budget``: the series budget (``series_budget``); None writes
        what the Collector's exporter writes with no processors before it."""
        if schema not in o2i.METRICS_SCHEMAS:
            raise ValueError(f"metrics_schema: unknown metrics schema {schema!r}; accepted: {', '.join(o2i.METRICS_SCHEMAS)}")
        self.v2 = schema == o2i.SCHEMA_TELEGRAF_PROMETHEUS_V2
        # id(attributes) -> (attributes, base tags, tags): the attributes
        # object is held, so its id cannot be reused while the entry lives.
        self._series: dict[int, tuple[Any, dict, dict]] = {}
        self._bases: dict[tuple, tuple[Any, Any, dict]] = {}
        self._warned: set[str] = set()
        # A point the line protocol cannot carry: left out and reported
        # here; without it, the whole export fails (the Collector's way).
        self._on_drop = on_drop
        self._filter = budget.filter if budget is not None else None
        self._delta = DeltaState() if budget is not None and budget.delta else None
        self._guard = budget.guard if budget is not None else None
        self._dropped = budget.metrics if budget is not None else None
        if self._guard is not None:
            self._guard.make_tags = o2i.SeriesTags
        # Budget path: id(attributes) -> (attributes, base, routed tags, identity)
        self._routes: dict[str, dict[int, tuple]] = {}  # metric -> id(attributes) -> _route's entry
        self._identities: dict[int, tuple[dict, frozenset]] = {}  # id(base tags) -> (base tags, resource identity)

    def lines(self, data: MetricsData) -> list[str]:
        """The line-protocol lines of ``data``."""
        lines: list[str] = []
        for _ in self.fill(lines, data):
            pass
        return lines

    def fill(self, lines: list[str], data: MetricsData) -> Iterator[None]:
        """Appends the lines of ``data`` to ``lines``, pausing after each
        metric: the exporter sends the lines ready so far while the rest
        are written."""
        v2 = self.v2
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                base = self._base(resource_metrics.resource, scope_metrics.scope)
                for metric in scope_metrics.metrics:
                    self._metric(lines, v2, base, metric)
                    yield

    def _base(self, resource: Any, scope: Any) -> dict[str, str]:
        key = (id(resource), id(scope))
        cached = self._bases.get(key)
        if cached is None:
            tags: dict[str, str] = {}
            attributes = resource.attributes
            if self._filter is not None:
                identity = frozenset((k, str(v)) for k, v in (attributes or {}).items())
                attributes = self._filter.keep(attributes)
            _put_tags(attributes, tags)
            if scope is not None:
                if scope.name:
                    tags[o2i.OTEL_LIBRARY_NAME] = scope.name
                if scope.version:
                    tags[o2i.OTEL_LIBRARY_VERSION] = scope.version
                _put_tags(getattr(scope, "attributes", None), tags)
            if len(self._bases) >= 1000:
                self._bases.clear()
                self._identities.clear()
            if self._filter is not None:
                # The stream identity keeps what the tags lose (the instance):
                # two resources differing only there are two streams.
                self._identities[id(tags)] = (tags, identity)
            cached = self._bases[key] = (resource, scope, tags)
        return cached[2]

    def _route(self, name: str, base: dict[str, str], attributes: Any) -> tuple:
        """The budget's entry of a data point: (attributes, base, tags to
        write, its stream's delta cell, whether the tags are an overflow
        series), kept per metric and attributes object."""
        routes = self._routes.get(name)
        if routes is None or len(routes) >= _CACHE_LIMIT:
            routes = self._routes[name] = {}
        tags = self._tags(base, attributes)
        identity = (name, self._identities[id(base)][1], frozenset(tags.items()))
        guard = self._guard
        routed = guard.route(name, base, tags) if guard is not None else tags
        cell = self._delta.cell(identity) if self._delta is not None else []
        entry = (attributes, base, routed, cell, guard is not None and guard.is_overflow(routed))
        if attributes is not None:
            routes[id(attributes)] = entry
        return entry

    @staticmethod
    def _increment_lines(lines: list[str], name: str, rows: list[tuple]) -> list[tuple]:
        """The lines of increments whose series' line prefix is known,
        written here: each export moves their start time, which
        ``number_lines`` caches per series, so it would take its slow path
        for every one. Returns the rows left to it (first lines of a series,
        values it must check)."""
        left = []
        append = lines.append
        for row in rows:
            tags, start, ts, value = row
            prefix = tags.prefixes.get(name)
            cls = value.__class__
            if prefix is None or not 0 < start <= _INT64_MAX or not 0 < ts <= _INT64_MAX:
                left.append(row)
            elif cls is int and _INT64_MIN <= value <= _INT64_MAX:
                append(f"{prefix} start_time_unix_nano={start}i,gauge={value}i {ts}\n")
            elif cls is float and value - value == 0:
                append(f"{prefix} start_time_unix_nano={start}i,gauge={value!r} {ts}\n")
            else:
                left.append(row)
        return left

    def _tags(self, base: dict[str, str], attributes: Any) -> dict[str, str]:
        entry = self._series.get(id(attributes))
        if entry is not None and entry[0] is attributes and entry[1] is base:
            return entry[2]
        tags = o2i.SeriesTags(base)
        _put_tags(attributes, tags)
        if attributes is not None:
            if len(self._series) >= _CACHE_LIMIT:
                self._series.clear()
            self._series[id(attributes)] = (attributes, base, tags)
        return tags

    def _metric(self, lines: list[str], v2: bool, base: dict[str, str], metric: Any) -> None:
        if self._filter is not None:
            self._budget_metric(lines, v2, base, metric)
            return
        name, data = metric.name, metric.data
        points: list[Point] = []  # what takes the general path: histograms, exemplars
        append = points.append
        cls = data.__class__
        if cls is Sum or cls is Gauge:
            counter = o2i.is_counter(cls is Sum, getattr(data, "is_monotonic", False), getattr(data, "aggregation_temporality", 0))
            data_points = data.data_points
            for point in data_points:
                if not point.time_unix_nano:
                    raise ValueError(f"metric {name!r}: metric has no timestamp")
                if point.exemplars and not v2:
                    _exemplars(append, name, point.exemplars)
            series, tags_of = self._series, self._tags
            rows = [  # _tags, inlined: this runs per data point
                (
                    entry[2]
                    if (entry := series.get(id(attributes := point.attributes))) is not None
                    and entry[0] is attributes and entry[1] is base
                    else tags_of(base, attributes),
                    point.start_time_unix_nano or 0, point.time_unix_nano, point.value,
                )
                for point in data_points
            ]
            o2i.number_lines(lines, v2, name, counter, rows, self._on_drop)
        elif cls is Histogram:
            for point in data.data_points:
                ts = point.time_unix_nano
                if not ts:
                    raise ValueError(f"metric {name!r}: metric has no timestamp")
                o2i.histogram_points(
                    append, v2, name, self._tags(base, point.attributes), point.start_time_unix_nano or 0, ts,
                    point.count, point.sum, point.min, point.max, point.bucket_counts, point.explicit_bounds,
                )
                if point.exemplars and not v2:
                    _exemplars(append, name, point.exemplars)
        elif cls is ExponentialHistogram:
            if name not in self._warned:  # reported once per metric, not per export
                self._warned.add(name)
                _log.warning("metric %r is not written to InfluxDB: %s", name, o2i.EXPONENTIAL_HISTOGRAM_REJECTED)
        else:
            raise ValueError(f"metric {name!r}: unknown metric data {cls.__name__}")
        if points:
            lines += o2i.line_strings(points, self._on_drop)


    def _budget_metric(self, lines: list[str], v2: bool, base: dict[str, str], metric: Any) -> None:
        """``_metric`` under the series budget: tags filtered and routed by
        the guard, cumulative sums and histograms as increments, the points
        that share an overflow series added up, no exemplars (each would be a
        series of its own, tagged with its trace id)."""
        name, data = metric.name, metric.data
        if self._dropped.excluded(name):
            return
        cls = data.__class__
        delta, route = self._delta, self._route
        if cls is Sum or cls is Gauge:
            counter = o2i.is_counter(cls is Sum, getattr(data, "is_monotonic", False), getattr(data, "aggregation_temporality", 0))
            as_delta = counter and delta is not None
            routes = self._routes.get(name) or {}
            guard = self._guard
            if not as_delta and (guard is None or not guard.overflowing(name)):
                # Nothing to subtract or add up: the plain path's comprehension.
                data_points = data.data_points
                for point in data_points:
                    if not point.time_unix_nano:
                        raise ValueError(f"metric {name!r}: metric has no timestamp")
                rows = [
                    (
                        entry[2]
                        if (entry := routes.get(id(attributes := point.attributes))) is not None
                        and entry[0] is attributes and entry[1] is base
                        else route(name, base, attributes)[2],
                        point.start_time_unix_nano or 0, point.time_unix_nano, point.value,
                    )
                    for point in data_points
                ]
                if guard is None or not guard.overflowing(name):  # a new series may have overflowed just now
                    o2i.number_lines(lines, v2, name, counter and delta is None, rows, self._on_drop)
                    return
                routes = self._routes.get(name) or {}
            rows: list[tuple[Any, int, int, Any]] = []
            append = rows.append
            write_increments, add_line = as_delta and not v2, lines.append
            merged: dict[int, int] = {}  # id(overflow tags) -> index in rows
            for point in data.data_points:
                attributes = point.attributes
                entry = routes.get(id(attributes))
                if entry is None or entry[0] is not attributes or entry[1] is not base:
                    entry = route(name, base, attributes)
                    routes = self._routes[name]
                ts, start, value = point.time_unix_nano, point.start_time_unix_nano or 0, point.value
                if not ts:
                    raise ValueError(f"metric {name!r}: metric has no timestamp")
                if as_delta:
                    # step(), inlined: this runs per data point.
                    cell = entry[3]
                    if cell and cell[0] == start:
                        if ts <= cell[1]:
                            continue  # not newer than the last one seen: nothing new
                        previous_time, previous = cell[1], cell[2]
                        cell[1] = ts
                        cell[2] = value
                        if value >= previous:
                            start, value = previous_time, value - previous
                    else:
                        cell[:] = (start, ts, value)
                tags = entry[2]
                if write_increments and not entry[4]:
                    # _increment_lines, inlined for the rows it writes.
                    prefix = tags.prefixes.get(name)
                    vcls = value.__class__
                    if prefix is not None and 0 < start <= _INT64_MAX and ts <= _INT64_MAX:
                        if vcls is int and _INT64_MIN <= value <= _INT64_MAX:
                            add_line(f"{prefix} start_time_unix_nano={start}i,gauge={value}i {ts}\n")
                            continue
                        if vcls is float and value - value == 0:
                            add_line(f"{prefix} start_time_unix_nano={start}i,gauge={value!r} {ts}\n")
                            continue
                if entry[4]:
                    index = merged.get(id(tags))
                    if index is not None:
                        old = rows[index]
                        # Increments and totals add up; a gauge keeps one value.
                        rows[index] = (tags, min(old[1], start), max(old[2], ts), old[3] + value if cls is Sum else value)
                        continue
                    merged[id(tags)] = len(rows)
                append((tags, start, ts, value))
            if as_delta and not v2:
                rows = self._increment_lines(lines, name, rows)
            o2i.number_lines(lines, v2, name, counter and delta is None, rows, self._on_drop)
        elif cls is Histogram:
            points: list[Point] = []
            pending: dict[int, list] = {}
            for point in data.data_points:
                ts = point.time_unix_nano
                if not ts:
                    raise ValueError(f"metric {name!r}: metric has no timestamp")
                attributes = point.attributes
                entry = (self._routes.get(name) or {}).get(id(attributes))
                if entry is None or entry[0] is not attributes or entry[1] is not base:
                    entry = route(name, base, attributes)
                tags = entry[2]
                start, values = point.start_time_unix_nano or 0, (point.count, point.sum, *point.bucket_counts)
                low, high = point.min, point.max
                if delta is not None and getattr(data, "aggregation_temporality", 0) == _CUMULATIVE:
                    stepped = step_many(entry[3], start, ts, values)
                    if stepped is None:
                        continue
                    start, values = stepped
                    low = high = None  # the extremes since start say nothing about one interval
                if values[0] == 0 and delta is not None:
                    continue  # no new value: an empty increment adds no point
                if entry[4]:
                    held = pending.get(id(tags))
                    if held is not None and len(held[3]) == len(values):
                        held[1], held[2] = min(held[1], start), max(held[2], ts)
                        held[3] = tuple(a + b for a, b in zip(held[3], values))
                        continue
                    pending[id(tags)] = [tags, start, ts, values, point.explicit_bounds, None, None]
                    continue
                o2i.histogram_points(points.append, v2, name, tags, start, ts, values[0], values[1], low, high, values[2:], point.explicit_bounds)
            for tags, start, ts, values, bounds, low, high in pending.values():
                o2i.histogram_points(points.append, v2, name, tags, start, ts, values[0], values[1], low, high, values[2:], bounds)
            if points:
                lines += o2i.line_strings(points, self._on_drop)
        elif cls is ExponentialHistogram:
            if name not in self._warned:
                self._warned.add(name)
                _log.warning("metric %r is not written to InfluxDB: %s", name, o2i.EXPONENTIAL_HISTOGRAM_REJECTED)
        else:
            raise ValueError(f"metric {name!r}: unknown metric data {cls.__name__}")


def _put_tags(attributes: Mapping[str, Any] | None, tags: dict[str, str]) -> None:
    if attributes:
        as_string = o2i.as_string
        for key, value in attributes.items():
            if key:
                cls = value.__class__
                tags[key] = value if cls is str else as_string(raw(value))


def _exemplars(append: Callable[[Point], None], name: str, exemplars: Sequence[Any]) -> None:
    for exemplar in exemplars:
        if exemplar.value is None:
            continue
        tags: dict[str, str] = {}
        _put_tags(exemplar.filtered_attributes, tags)
        o2i.exemplar_point(
            append, name, tags, exemplar.time_unix_nano, exemplar.value,
            _hex(exemplar.trace_id, 32), _hex(exemplar.span_id, 16),
        )


# --- logs ---------------------------------------------------------------------------


class LogEntriesConverter:
    """The log pipeline's entries (``LogEntry`` fields by position) to
    ``logs`` points, as ``LogsEncoder`` would encode them for OTLP: the
    logger is the scope name (not written by otel2influx), the message the
    body, the level the severity."""

    def __init__(self, resource_attributes: Mapping[str, Any], dimensions: frozenset[str]) -> None:
        self._dimensions = dimensions
        self._base = o2i.log_base(dimensions, raw_items(resource_attributes))
        self._severities: dict[int, tuple[int, str]] = {}

    def convert(self, entries: Iterable[Sequence[Any]], observed_ns: int) -> list[Point]:
        points: list[Point] = []
        dimensions = self._dimensions
        base_tags, base_members = self._base
        severities = self._severities
        log_point = o2i.log_point
        for entry in entries:
            if entry[4] is None:  # a registered event shape: values flat after the flags
                entry = with_attribute_dict(entry)
            time_ns, level, _logger, message, attributes, trace_id, span_id, _flags = entry
            level_severity = severities.get(level)
            if level_severity is None:
                level_severity = severities[level] = severity(level)
            log_point(
                points, dimensions, base_tags, base_members, time_ns, observed_ns,
                _hex(trace_id, 32) if trace_id else "", _hex(span_id, 16) if trace_id else "",
                level_severity[0], level_severity[1], message, raw_items(attributes), 0,
            )
        return points


def log_records_to_points(records: Iterable[Any], dimensions: frozenset[str]) -> list[Point]:
    """The points of the SDK's ``ReadableLogRecord`` objects."""
    points: list[Point] = []
    bases: dict[tuple[int, int], tuple[Any, Any, tuple]] = {}
    for readable in records:
        record, resource, scope = readable.log_record, readable.resource, readable.instrumentation_scope
        key = (id(resource), id(scope))
        cached = bases.get(key)
        if cached is None:
            scope_attributes = raw_items(getattr(scope, "attributes", None)) if scope is not None else []
            cached = bases[key] = (resource, scope, o2i.log_base(dimensions, raw_items(resource.attributes), scope_attributes))
        base_tags, base_members = cached[2]
        number = record.severity_number.value if record.severity_number is not None else 0
        o2i.log_point(
            points, dimensions, base_tags, base_members,
            record.timestamp or 0, record.observed_timestamp or 0,
            _hex(record.trace_id, 32), _hex(record.span_id, 16),
            number, record.severity_text or "",
            o2i.as_string(raw(record.body)), raw_items(record.attributes), readable.dropped_attributes,
        )
    return points

"""The series budget: metric series that grow with what is measured
(strategy x symbol x side x host), never with runs, processes or instances.

In InfluxDB every metric attribute, resource attributes included, is a tag,
and every distinct tag set is a series held in the index. A resource that
carries ``service.instance.id`` and ``process.pid`` makes every run a new
set of series. Three steps keep the count bounded; the Collector configs
do the same with processors (``collector/*.yaml``: ``cumulativetodelta``,
then ``transform`` deleting the same resource attributes), so both paths
write the same tag set:

- :class:`TagFilter`: resource attributes that do not become metric tags
  (``export.influxdb.metric_resource_exclude``). They stay on spans and logs,
  where they are fields, not tags. The same matching names the per-process
  metrics that are not written at all (``export.influxdb.metric_exclude``,
  default ``process.*``: one series per pid, meant for live views).
- :class:`DeltaState`: cumulative monotonic sums and histograms become the
  increments since the previous export (``export.influxdb.metric_temporality
  = delta``), keyed by the full identity, instance included. Without it two
  processes writing one series would interleave their running totals;
  increments from any number of processes add up. Sums then land in the
  ``gauge`` field (otel2influx writes only cumulative monotonic sums as
  ``counter``), exactly as after the Collector's ``cumulativetodelta``.
- :class:`SeriesGuard`: at most ``series_limit`` series per metric in one
  process, and no per-run identity (``rqa.run.id``, ``service.instance.id``
  ...) on a metric data point. The excess goes to the metric's overflow
  series (``otel.metric.overflow=true``); a warning names the attribute once,
  and the count of diverted points is kept (``diverted``). Never an error.

Docs: docs/capacity.md (the budget as a formula).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from rqa_otel import names

_log = logging.getLogger("rqa_otel.export")

TEMPORALITIES: Final = ("delta", "cumulative")
DEFAULT_TEMPORALITY: Final = "delta"
# Per process or per SDK build; `process.*` also covers the command line and
# executable path the SDK's process detector adds.
DEFAULT_RESOURCE_EXCLUDE: Final = (names.SERVICE_INSTANCE_ID, "process.*", "telemetry.sdk.*")
# Per-process gauges (one series per pid) are for live views: /metrics and
# OTLP keep them; InfluxDB keeps the per-strategy aggregates (rqa.strategy.*).
DEFAULT_METRIC_EXCLUDE: Final = ("process.*",)
DEFAULT_SERIES_LIMIT: Final = 2000
# Attribute keys unique per run, order or trade by definition: on a metric
# data point each value is a new series, in every process.
PER_RUN_KEYS: Final = frozenset({
    names.SERVICE_INSTANCE_ID, names.RUN_ID, names.ORDER_ID, names.TRADE_SEQUENCE,
})
OVERFLOW_TAGS: Final = {names.METRIC_OVERFLOW: "true"}
_STATE_LIMIT = 200_000  # series whose previous value is kept; past it the oldest half is forgotten


class TagFilter:
    """Which resource attributes become metric tags: every key but those
    named, a trailing ``*`` matching a prefix (``process.*``)."""

    def __init__(self, exclude: Iterable[str] = DEFAULT_RESOURCE_EXCLUDE) -> None:
        exclude = tuple(exclude)
        self.exact = frozenset(key for key in exclude if not key.endswith("*"))
        self.prefixes = tuple(key[:-1] for key in exclude if key.endswith("*"))

    def excluded(self, key: str) -> bool:
        return key in self.exact or (bool(self.prefixes) and key.startswith(self.prefixes))

    def keep(self, attributes: Mapping[str, Any] | None) -> dict[str, Any]:
        if not attributes:
            return {}
        return {key: value for key, value in attributes.items() if not self.excluded(key)}


class DeltaState:
    """Cumulative to delta, as the Collector's ``cumulativetodelta``
    processor does: the first point of a stream is its value since its start
    time; a new start time or a lower value is a reset, and the point's own
    value is the increment; a point no newer than the last one seen is
    dropped (None). ``key`` must hold the stream's whole identity. A stream's
    state is a small list (its ``cell``), which a caller may keep and pass
    to :func:`step` itself."""

    def __init__(self) -> None:
        self._cells: dict[Any, list] = {}

    def cell(self, key: Any) -> list:
        cell = self._cells.get(key)
        if cell is None:
            if len(self._cells) >= _STATE_LIMIT:  # the oldest half; a caller's kept cell still works
                for old in list(self._cells)[: _STATE_LIMIT // 2]:
                    del self._cells[old]
            cell = self._cells[key] = []
        return cell

    def delta(self, key: Any, start: int, time: int, value: float) -> tuple[int, float] | None:
        """(start of the increment, increment) of one sum point, or None."""
        return step(self.cell(key), start, time, value)

    def delta_many(self, key: Any, start: int, time: int, values: tuple) -> tuple[int, tuple] | None:
        """A histogram's (count, sum, bucket counts...) as increments, or None."""
        return step_many(self.cell(key), start, time, values)


def step_many(cell: list, start: int, time: int, values: tuple) -> tuple[int, tuple] | None:
    """One histogram point through a stream's ``cell``; ``values`` is
    (count, sum, bucket counts...)."""
    if cell and cell[0] == start and len(cell[2]) == len(values):
        if time <= cell[1]:
            return None
        increments = tuple(now - before for now, before in zip(values, cell[2]))
        previous_time = cell[1]
        cell[1], cell[2] = time, values
        if increments[0] >= 0:
            return previous_time, increments
        return start, values  # the count fell: a reset
    cell[:] = (start, time, values)
    return start, values


def step(cell: list, start: int, time: int, value: float) -> tuple[int, float] | None:
    """One sum point through a stream's ``cell`` (see :class:`DeltaState`)."""
    if cell and cell[0] == start:
        if time <= cell[1]:
            return None
        previous_time, previous = cell[1], cell[2]
        cell[1], cell[2] = time, value
        if value >= previous:
            return previous_time, value - previous
        return start, value
    cell[:] = (start, time, value)
    return start, value


class SeriesGuard:
    """Bounded series per metric, with the overflow series for the excess.

    ``route(metric, base, tags)`` returns the tags a point is written with:
    its own, or the metric's overflow tags (``base`` plus
    ``otel.metric.overflow=true``) when ``tags`` carry a per-run key or the
    metric already has ``limit`` series. The caller adds up points that
    land on the same overflow series in one export."""

    def __init__(self, limit: int = DEFAULT_SERIES_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"export.influxdb.series_limit: expected an integer >= 1, got {limit!r}")
        self.limit = limit
        self._series: dict[str, dict[frozenset, dict]] = {}
        self._overflow: dict[tuple[str, frozenset], Any] = {}
        self._overflow_ids: set[int] = set()
        self._overflowing: set[str] = set()
        self.make_tags: Any = dict  # the converter hands its SeriesTags class
        self._warned: set[tuple[str, str]] = set()
        self.diverted = 0
        """Points written to an overflow series instead of their own (since start)."""

    def overflowing(self, metric: str) -> bool:
        """Whether ``metric`` has sent a point to its overflow series."""
        return metric in self._overflowing

    def is_overflow(self, tags: Mapping[str, str]) -> bool:
        return id(tags) in self._overflow_ids

    def route(self, metric: str, base: Mapping[str, str], tags: Mapping[str, str]) -> Mapping[str, str]:
        known = self._series.setdefault(metric, {})
        key = frozenset(tags.items())
        if key in known:
            return tags
        per_run = next((k for k in tags if k in PER_RUN_KEYS and k not in base), None)
        if per_run is None and len(known) < self.limit:
            known[key] = tags
            return tags
        self.diverted += 1
        self._overflowing.add(metric)
        attribute = per_run or self._widest(known.values(), base)
        if (metric, attribute) not in self._warned:
            self._warned.add((metric, attribute))
            why = (
                "a per-run identity on a metric makes a new series every run"
                if per_run else f"metric {metric!r} reached export.influxdb.series_limit = {self.limit} series"
            )
            _log.warning(
                "metric %r: attribute %r makes InfluxDB series grow without bound (%s); its points go to the "
                "overflow series (%s=true). Put it on spans or log events instead.",
                metric, attribute, why, names.METRIC_OVERFLOW,
            )
        base_key = (metric, frozenset(base.items()))
        overflow = self._overflow.get(base_key)
        if overflow is None:
            overflow = self._overflow[base_key] = self.make_tags({**base, **OVERFLOW_TAGS})
            self._overflow_ids.add(id(overflow))  # held in _overflow: the id stays its own
        return overflow

    @staticmethod
    def _widest(series: Iterable[Mapping[str, str]], base: Mapping[str, str]) -> str:
        """The attribute with the most distinct values among ``series``."""
        values: dict[str, set] = {}
        for tags in series:
            for key, value in tags.items():
                if key not in base:
                    values.setdefault(key, set()).add(value)
        return max(values, key=lambda k: len(values[k])) if values else "(resource)"


@dataclass
class SeriesBudget:
    """The three steps, configured: ``filter`` (resource attributes that are
    not tags), ``delta`` (cumulative to delta), ``guard`` (series limit and
    per-run keys). One per metrics converter: the guard and the delta state
    are that exporter's."""

    filter: TagFilter = field(default_factory=TagFilter)
    delta: bool = True
    guard: SeriesGuard | None = field(default_factory=SeriesGuard)
    metrics: TagFilter = field(default_factory=lambda: TagFilter(DEFAULT_METRIC_EXCLUDE))
    """Metric names not written at all (the same matching as ``filter``)."""

    @classmethod
    def from_settings(
        cls, exclude: Iterable[str], temporality: str, limit: int, metric_exclude: Iterable[str] = DEFAULT_METRIC_EXCLUDE,
    ) -> "SeriesBudget":
        if temporality not in TEMPORALITIES:
            raise ValueError(f"export.influxdb.metric_temporality: expected one of {', '.join(TEMPORALITIES)}, got {temporality!r}")
        return cls(TagFilter(exclude), temporality == "delta", SeriesGuard(limit) if limit else None, TagFilter(metric_exclude))


class OtlpJsonBudget:
    """What the shipped Collector configs' processors do to an OTLP-JSON
    metrics request before the influxdb exporter sees it
    (``filter/series_budget``, ``cumulativetodelta/series_budget``,
    ``transform/series_budget``), with the same defaults as the in-process
    exporter: ``rqa-otel lp --series-budget``. Keeps its delta state across
    the requests it is given, in order."""

    _DELTA, _CUMULATIVE_NAMES = 1, (2, "AGGREGATION_TEMPORALITY_CUMULATIVE")

    def __init__(self, budget: SeriesBudget | None = None) -> None:
        self.budget = budget or SeriesBudget(guard=None)
        self._state = DeltaState()

    def apply(self, request: dict) -> dict:
        """``request`` processed (a new dict; the input is not changed)."""
        import json

        budget = self.budget
        out = []
        for resource_metrics in request.get("resourceMetrics") or []:
            resource = resource_metrics.get("resource") or {}
            attributes = resource.get("attributes") or []
            identity = json.dumps(attributes, sort_keys=True)
            kept = [kv for kv in attributes if not budget.filter.excluded(kv.get("key", ""))]
            scopes = []
            for scope_metrics in resource_metrics.get("scopeMetrics") or []:
                scope_name = (scope_metrics.get("scope") or {}).get("name", "")
                metrics = [
                    self._metric(metric, (identity, scope_name))
                    for metric in scope_metrics.get("metrics") or []
                    if not budget.metrics.excluded(metric.get("name", ""))
                ]
                scopes.append({**scope_metrics, "metrics": metrics})
            out.append({**resource_metrics, "resource": {**resource, "attributes": kept}, "scopeMetrics": scopes})
        return {**request, "resourceMetrics": out}

    def _metric(self, metric: dict, where: tuple) -> dict:
        import json

        if not self.budget.delta:
            return metric
        name = metric.get("name", "")
        for kind in ("sum", "histogram"):
            data = metric.get(kind)
            if not isinstance(data, dict) or data.get("aggregationTemporality") not in self._CUMULATIVE_NAMES:
                continue
            if kind == "sum" and data.get("isMonotonic") is not True:
                continue
            points = []
            for point in data.get("dataPoints") or []:
                key = (where, name, json.dumps(point.get("attributes") or [], sort_keys=True))
                start, time = int(point.get("startTimeUnixNano") or 0), int(point.get("timeUnixNano") or 0)
                if kind == "sum":
                    field = "asInt" if "asInt" in point else "asDouble"
                    value = int(point[field]) if field == "asInt" else float(point.get(field) or 0.0)
                    start, value = self._state.delta(key, start, time, value)
                    points.append({**point, "startTimeUnixNano": str(start), field: str(value) if field == "asInt" else value})
                else:
                    counts = tuple(int(c) for c in point.get("bucketCounts") or [])
                    values = (int(point.get("count") or 0), float(point.get("sum") or 0.0), *counts)
                    start, values = self._state.delta_many(key, start, time, values)
                    new = {k: v for k, v in point.items() if k not in ("min", "max")}
                    new.update(startTimeUnixNano=str(start), count=str(values[0]), sum=values[1],
                               bucketCounts=[str(c) for c in values[2:]])
                    points.append(new)
            return {**metric, kind: {**data, "aggregationTemporality": self._DELTA, "dataPoints": points}}
        return metric

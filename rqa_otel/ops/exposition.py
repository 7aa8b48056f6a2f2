"""/metrics: the process's OTel metrics in Prometheus or OpenMetrics text,
collected on each scrape by a pull reader beside the periodic exporter.

Names and labels follow the OpenTelemetry specification's Prometheus
compatibility rules ("OTLP Metric points to Prometheus") as the Collector's
``prometheus`` exporter applies them, so a user who scrapes both this
endpoint and a Collector sees one name per metric:

- metric names: every run of characters outside ``[a-zA-Z0-9:]`` (``_``
  included) separates words, joined again with one ``_``; the unit follows
  as a word (``By`` -> ``bytes``, ``s`` -> ``seconds``, ``{thing}`` dropped,
  ``a/b`` -> ``a_per_b``) unless the name has it already; monotonic sums end
  in ``_total``; gauges with unit ``1`` end in ``_ratio``;
- label names: characters outside ``[a-zA-Z0-9_]`` become ``_``, runs of
  ``_`` one ``_``; a leading digit or single ``_`` gets ``key_``. Attribute
  keys that become the same label have their values joined with ``;`` in the
  order of the original keys;
- every point carries ``otel_scope_name``, ``otel_scope_version`` and
  ``otel_scope_schema_url`` and, as the Collector writes them, ``job``
  (``service.namespace/service.name``) and ``instance`` (``service.instance.id``);
  ``target_info`` (a gauge of 1) carries the other resource attributes.

prometheus_client does the writing (text 0.0.4, or OpenMetrics 1.0 when the
scraper's Accept header asks for it). opentelemetry-exporter-prometheus was
weighed and not used: it maps unit ``1`` to no suffix (not ``_ratio``), lets
colliding label keys overwrite each other and writes no ``job``/``instance``.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Callable, Iterable, Mapping

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    MetricReader,
    MetricsData,
    Sum,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric as Family
from prometheus_client.utils import floatToGoString

_log = logging.getLogger("rqa_otel.ops")


class PullMetricReader(MetricReader):
    """Collects on demand (a scrape) instead of on a timer."""

    def __init__(self) -> None:
        super().__init__(preferred_temporality={kind: AggregationTemporality.CUMULATIVE for kind in _INSTRUMENT_KINDS()})
        self._latest: MetricsData | None = None
        self.augment: Callable[[MetricsData | None], MetricsData | None] = lambda data: data
        """Adds the project's own aggregates (``metric_producers``) to each scrape."""

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs) -> None:
        self._latest = metrics_data

    def scrape(self) -> MetricsData | None:
        self.collect()
        return self.augment(self._latest)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass


def _INSTRUMENT_KINDS():
    from opentelemetry.sdk.metrics import (
        Counter,
    )
    from opentelemetry.sdk.metrics import Histogram as HistogramInstrument
    from opentelemetry.sdk.metrics import ObservableCounter, ObservableGauge, ObservableUpDownCounter, UpDownCounter

    return (Counter, UpDownCounter, HistogramInstrument, ObservableCounter, ObservableUpDownCounter, ObservableGauge)


# --- names ---------------------------------------------------------------------

# The Collector's unit words (prometheus/otlptranslator, the specification's
# "Metric Metadata": abbreviations to full words, "1" to no unit word).
_UNIT_WORDS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds", "us": "microseconds",
    "ns": "nanoseconds", "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes",
    "TiBy": "tebibytes", "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "TBy": "terabytes",
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams", "Cel": "celsius",
    "Hz": "hertz", "1": "", "%": "percent",
}
_PER_UNIT_WORDS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}
_NAME_SEPARATORS = re.compile(r"[^a-zA-Z0-9:]+")
_NOT_ALPHANUMERIC = re.compile(r"[^a-zA-Z0-9]+")
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_UNDERSCORES = re.compile(r"__+")

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"


def _unit_word(unit: str, words: Mapping[str, str]) -> str:
    unit = unit.strip()
    if not unit or "{" in unit or "}" in unit:
        return ""
    return "_".join(part for part in _NOT_ALPHANUMERIC.split(words.get(unit, unit)) if part)


def metric_name(name: str, unit: str, kind: str, *, otel_gauge: bool = False) -> str:
    """The Prometheus name of an OTel metric: ``kind`` is the Prometheus type
    (``counter`` for monotonic sums), ``otel_gauge`` whether the OTel type is
    a Gauge (only those get ``_ratio``, as in the Collector)."""
    words = [word for word in _NAME_SEPARATORS.split(name) if word]
    main, _, per = unit.partition("/")
    main_word = _unit_word(main, _UNIT_WORDS)
    if main_word in words:
        main_word = ""
    per_word = _unit_word(per, _PER_UNIT_WORDS)
    per_word = "per_" + per_word if per_word else ""
    if per_word in words:
        per_word = ""
    if per_word:
        main_word = main_word.rstrip("_")
    words += [word for word in (main_word, per_word) if word]
    if kind == COUNTER:
        words = [word for word in words if word != "total"] + ["total"]
    if unit == "1" and otel_gauge:
        words = [word for word in words if word != "ratio"] + ["ratio"]
    joined = "_".join(words)
    return "_" + joined if joined[:1].isdigit() else joined


def label_name(key: str) -> str:
    """The Prometheus label of an OTel attribute key."""
    label = _UNDERSCORES.sub("_", _LABEL_INVALID.sub("_", key))
    if label[:1].isdigit():
        return "key_" + label
    if label.startswith("_") and not label.startswith("__"):
        return "key" + label
    return label


def prometheus_name(name: str) -> str:
    """An attribute key as a label (kept for code written against the old name)."""
    return label_name(name)


def _text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))  # OTel's attribute specification: arrays as JSON
    return str(value)


def labels_of(attributes: Mapping[str, object]) -> dict[str, str]:
    """Attributes -> labels; keys that become one label have their values
    joined with ``;`` in the lexicographical order of the original keys."""
    labels: dict[str, str] = {}
    for key in sorted(attributes):
        label = label_name(key)
        value = _text(attributes[key])
        labels[label] = labels[label] + ";" + value if label in labels else value
    return labels


# --- the collector ---------------------------------------------------------------

_JOB_INSTANCE_KEYS = ("service.name", "service.namespace", "service.instance.id")


def _job_and_instance(resource: Mapping[str, object]) -> dict[str, str]:
    labels = {}
    if "service.name" in resource:
        namespace = _text(resource.get("service.namespace", ""))
        name = _text(resource["service.name"])
        labels["job"] = f"{namespace}/{name}" if namespace else name
    if "service.instance.id" in resource:
        labels["instance"] = _text(resource["service.instance.id"])
    return labels


class OtelCollector:
    """prometheus_client collector over the pull reader's latest collection."""

    def __init__(self, reader: PullMetricReader) -> None:
        self._reader = reader
        self._warned: set[tuple[str, str]] = set()

    def collect(self) -> Iterable[Family]:
        data = self._reader.scrape()
        if data is None:
            return
        families: dict[str, tuple[str, Family]] = {}  # Prometheus name -> (OTel name, family)
        targets: dict[tuple, Family] = {}
        for resource_metrics in data.resource_metrics:
            resource = dict(resource_metrics.resource.attributes)
            target = _job_and_instance(resource)
            self._target_info(resource, target, targets)
            for scope_metrics in resource_metrics.scope_metrics:
                scope = scope_metrics.scope
                scope_labels = {
                    "otel_scope_name": scope.name or "",
                    "otel_scope_version": scope.version or "",
                    "otel_scope_schema_url": scope.schema_url or "",
                }
                for key, value in (getattr(scope, "attributes", None) or {}).items():
                    scope_labels[label_name("otel_scope_" + key)] = _text(value)
                for metric in scope_metrics.metrics:
                    self._add(metric, {**scope_labels, **target}, families)
        yield from targets.values()
        for _, family in families.values():
            yield family

    @staticmethod
    def _target_info(resource: Mapping[str, object], target: dict[str, str], targets: dict) -> None:
        key = tuple(sorted(target.items()))
        if key in targets or not resource:
            return
        labels = labels_of({k: v for k, v in resource.items() if k not in _JOB_INSTANCE_KEYS})
        # A gauge of 1, as the Collector writes it (client_golang has no info type).
        family = Family("target_info", "Target metadata", "gauge")
        family.add_sample("target_info", {**labels, **target}, 1)
        targets[key] = family

    def _add(self, metric, common: dict[str, str], families: dict[str, tuple[str, Family]]) -> None:
        data = metric.data
        if isinstance(data, Sum) and data.is_monotonic:
            kind = COUNTER
        elif isinstance(data, (Sum, Gauge)):
            kind = GAUGE
        elif isinstance(data, Histogram):
            kind = HISTOGRAM
        else:  # exponential histograms: not produced by this project (see collector/README.md)
            return
        if not data.data_points:
            return
        name = metric_name(metric.name, metric.unit or "", kind, otel_gauge=isinstance(data, Gauge))
        family_name = name.removesuffix("_total") if kind == COUNTER else name
        known = families.get(family_name)
        if known is None:
            family = Family(family_name, metric.description or metric.name, kind, self._unit_metadata(family_name, metric.unit))
            families[family_name] = (metric.name, family)
        elif known[0] != metric.name or known[1].type != kind:
            self._warn_collision(family_name, known[0], metric.name)
            return
        else:  # the same metric from another scope: its scope labels tell them apart
            family = known[1]
        for point in data.data_points:
            labels = {**labels_of(point.attributes), **common}
            if kind == HISTOGRAM:
                cumulative = 0
                for bound, count in zip(list(point.explicit_bounds) + [float("inf")], point.bucket_counts):
                    cumulative += count
                    family.add_sample(name + "_bucket", {**labels, "le": floatToGoString(bound)}, cumulative)
                family.add_sample(name + "_count", labels, point.count)
                family.add_sample(name + "_sum", labels, point.sum)
            else:
                family.add_sample(name, labels, point.value)

    @staticmethod
    def _unit_metadata(family_name: str, unit: str | None) -> str:
        # OpenMetrics writes a # UNIT line, whose unit must end the name.
        word = _unit_word((unit or "").partition("/")[0], _UNIT_WORDS)
        return word if word and family_name.endswith("_" + word) else ""

    def _warn_collision(self, prometheus: str, kept: str, dropped: str) -> None:
        if (prometheus, dropped) in self._warned:
            return
        self._warned.add((prometheus, dropped))
        _log.warning(
            "/metrics: metric %r has the same Prometheus name %r as %r; only %r is exposed (rename one of them)",
            dropped, prometheus, kept, kept,
        )


def render(registry, accept: str | None) -> tuple[bytes, str]:
    """The exposition of ``registry`` in the format the scraper's Accept
    header asks for: OpenMetrics 1.0 for ``application/openmetrics-text``,
    else Prometheus text 0.0.4. Returns ``(body, content_type)``."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type

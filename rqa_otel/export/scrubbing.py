"""Secrets scrubbed from spans on their way out (every text a span
carries), from metric series where the SDK creates them, and from
exemplars; the ``Scrubber`` of ``rqa_otel.scrub`` does the matching."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any, Mapping, Sequence

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.metrics.view import Aggregation, DefaultAggregation, View
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, Status

from rqa_otel.scrub import MARKER, Scrubber

_log = logging.getLogger("rqa_otel")


class ScrubbingSpanExporter(SpanExporter):
    """Wraps a SpanExporter; spans reach it with secrets scrubbed.

    Scrubbed: span attributes, event names and attributes, link attributes,
    the span name and the status description (an exception's text). The
    SDK's spans are immutable, so a span with something to redact is rebuilt
    as a ``ReadableSpan`` with the same context, parent, resource, kind,
    status code, start/end time, instrumentation scope and dropped counts;
    a clean span is passed through as the same object. A span whose
    scrubbing fails is dropped, never exported unscrubbed.
    """

    def __init__(self, exporter: SpanExporter, scrubber: Scrubber) -> None:
        self._exporter = exporter
        self._scrubber = scrubber

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        scrubbed = []
        for span in spans:
            try:
                scrubbed.append(self.scrub_span(span))
            except Exception:
                _log.warning("could not scrub span %r; it was dropped", getattr(span, "name", "?"), exc_info=True)
        return self._exporter.export(scrubbed)

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)

    def scrub_span(self, span: ReadableSpan) -> ReadableSpan:
        """``span`` itself when clean, else a scrubbed copy."""
        scrubber = self._scrubber
        changed = False

        name = scrubber.scrub_text(span.name)
        changed |= name is not span.name

        original_attributes = span_attributes(span)
        attributes: Any = original_attributes
        scrubbed_attributes = scrubber.scrub_attributes(attributes) if attributes else attributes
        if scrubbed_attributes is not attributes:
            changed = True
            attributes = _bounded(scrubbed_attributes, span.dropped_attributes)

        events: Any = span.events
        new_events = []
        events_changed = False
        for event in events:
            event_name = scrubber.scrub_text(event.name)
            event_attributes = plain_attributes(event.attributes)
            scrubbed = scrubber.scrub_attributes(event_attributes) if event_attributes else event_attributes
            if event_name is not event.name or scrubbed is not event_attributes:
                events_changed = True
                if scrubbed is not event_attributes:
                    scrubbed = _bounded(scrubbed, event.dropped_attributes)
                else:  # the original, with its dropped count
                    scrubbed = event.attributes
                event = Event(event_name, scrubbed, event.timestamp)
            new_events.append(event)
        if events_changed:
            changed = True
            events = _bounded_list(new_events, span.dropped_events)

        links: Any = span.links
        new_links = []
        links_changed = False
        for link in links:
            link_attributes = plain_attributes(link.attributes)
            scrubbed = scrubber.scrub_attributes(link_attributes) if link_attributes else link_attributes
            if scrubbed is not link_attributes:
                links_changed = True
                link = Link(link.context, _bounded(scrubbed, link.dropped_attributes))
            new_links.append(link)
        if links_changed:
            changed = True
            links = _bounded_list(new_links, span.dropped_links)

        status = span.status
        if status.description:
            description = scrubber.scrub_text(status.description)
            if description is not status.description:
                changed = True
                status = Status(status.status_code, description)

        if not changed:
            return span
        if not events_changed:
            events = _bounded_list(events, span.dropped_events)
        if not links_changed:
            links = _bounded_list(links, span.dropped_links)
        if attributes is original_attributes:
            attributes = _bounded(attributes, span.dropped_attributes)
        return ReadableSpan(
            name=name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=attributes,
            events=events,
            links=links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )


def plain_attributes(attributes: Any) -> Any:
    """The dict behind the SDK's ``BoundedAttributes`` (read, never
    written): iterating the mapping itself costs a Python call per item,
    the larger part of scrubbing and encoding a span. Anything else as is."""
    if attributes.__class__ is BoundedAttributes:
        inner = getattr(attributes, "_dict", None)
        if inner.__class__ is dict:
            return inner
    return attributes


def span_attributes(span: Any) -> Any:
    """A span's attributes without the read-only view ``span.attributes``
    makes per access (see ``plain_attributes``)."""
    inner = getattr(span, "_attributes", None)
    if inner.__class__ is BoundedAttributes:
        return plain_attributes(inner)
    return span.attributes


def _bounded(attributes: Mapping[str, Any], dropped: int) -> BoundedAttributes:
    """Immutable attributes that report the original span's dropped count."""
    bounded = BoundedAttributes(maxlen=None, attributes=attributes, immutable=True, max_value_len=None)
    bounded.dropped = dropped
    return bounded


def _bounded_list(items: Sequence[Any], dropped: int) -> BoundedList:
    bounded = BoundedList(None)
    bounded.extend(list(items))
    bounded.dropped = dropped
    return bounded


# --- metrics ------------------------------------------------------------------


def scrubbing_view(scrubber: Scrubber) -> View:
    """A view for every instrument whose series attributes are scrubbed
    where the SDK creates the series: once per series, so ``Counter.add``
    pays nothing for it; an attribute set seen before finds its series
    without scrubbing. The aggregation is the default one (what the
    readers here ask for). Exemplars' filtered attributes (measurement
    attributes a series does not keep: all of them on the overflow series)
    are scrubbed when collected."""
    return View(instrument_name="*", aggregation=_ScrubbingAggregation(scrubber))


class _ScrubbingAggregation(Aggregation):
    """The default aggregation, its series' attributes scrubbed. A short
    program's final flush is its first collection: every observable
    gauge's series is set up then (about 75 in the demo), so the set-up
    is direct: the concrete aggregation is looked up by the instrument's
    class (``DefaultAggregation`` walks a chain of isinstance checks
    against ABCs per series), and the scrubbed reservoir builder is made
    once per aggregation type."""

    def __init__(self, scrubber: Scrubber) -> None:
        self._scrubber = scrubber
        self._default = DefaultAggregation()
        self._builders: dict[Any, Any] = {}

    def _create_aggregation(self, instrument: Any, attributes: Any, reservoir_factory: Any, start_time_unix_nano: int) -> Any:
        if attributes:
            try:
                attributes = _encodable(self._scrubber.scrub_attributes(attributes))
            except Exception:  # never exported unscrubbed
                _log.warning("could not scrub the attributes of a %r series; their values are withheld", instrument.name)
                attributes = {key: MARKER for key in attributes}
        make = _DEFAULTS.get(instrument.__class__)
        if make is not None:
            try:
                return make(instrument, attributes, self._reservoirs(reservoir_factory), start_time_unix_nano)
            except (TypeError, AttributeError):  # the SDK's internals changed: its own way from now on
                _log.debug("direct aggregation set-up failed; DefaultAggregation from now on", exc_info=True)
                _DEFAULTS.clear()
        return self._default._create_aggregation(instrument, attributes, self._reservoirs(reservoir_factory), start_time_unix_nano)

    def _reservoirs(self, reservoir_factory: Any) -> Any:
        """``reservoir_factory`` with every reservoir it builds scrubbed; one
        builder per aggregation type (the factory is the view's: a pure function)."""
        builders = self._builders.get(reservoir_factory)
        if builders is None:
            builders = self._builders[reservoir_factory] = {}
        scrubber = self._scrubber

        def reservoirs(aggregation_type: Any) -> Any:
            builder = builders.get(aggregation_type)
            if builder is None:
                build = reservoir_factory(aggregation_type)

                def builder(**kwargs: Any) -> _ScrubbedReservoir:
                    return _ScrubbedReservoir(build(**kwargs), scrubber)

                builders[aggregation_type] = builder
            return builder

        return reservoirs


def _default_aggregations() -> dict[type, Any]:
    """What ``DefaultAggregation`` creates, by the SDK's concrete instrument
    class (a test holds each equal to it); empty if the SDK's internals
    moved, and every instrument then takes ``DefaultAggregation`` itself."""
    try:
        from opentelemetry.sdk.metrics._internal import aggregation as agg, instrument as inst

        delta, cumulative = agg.AggregationTemporality.DELTA, agg.AggregationTemporality.CUMULATIVE
        Sum, LastValue, Histogram = agg._SumAggregation, agg._LastValueAggregation, agg._ExplicitBucketHistogramAggregation
    except (ImportError, AttributeError):  # pragma: no cover (another SDK)
        return {}

    def sum_of(monotonic: bool, temporality: Any) -> Any:
        def make(instrument, attributes, reservoirs, start):
            return Sum(
                attributes, reservoir_builder=reservoirs(Sum), instrument_is_monotonic=monotonic,
                instrument_aggregation_temporality=temporality, start_time_unix_nano=start,
            )

        return make

    def histogram(instrument, attributes, reservoirs, start):
        return Histogram(
            attributes, reservoir_builder=reservoirs(Histogram), instrument_aggregation_temporality=delta,
            boundaries=instrument._advisory.explicit_bucket_boundaries, start_time_unix_nano=start,
        )

    def last_value_of(synchronous: bool) -> Any:
        def make(instrument, attributes, reservoirs, start):
            return LastValue(attributes, reservoir_builder=reservoirs(LastValue), instrument_is_synchronous=synchronous)

        return make

    makers = {
        "Counter": sum_of(True, delta),
        "UpDownCounter": sum_of(False, delta),
        "ObservableCounter": sum_of(True, cumulative),
        "ObservableUpDownCounter": sum_of(False, cumulative),
        "Histogram": histogram,
        "ObservableGauge": last_value_of(False),
        "Gauge": last_value_of(True),
    }
    table: dict[type, Any] = {}
    for name, make in makers.items():
        public = getattr(inst, name, None)
        concrete = getattr(inst, "_" + name, None)
        if public is None or concrete is None:
            return {}
        table[public] = table[concrete] = make
    return table


_DEFAULTS = _default_aggregations()


_SURROGATE = re.compile("[\ud800-\udfff]")


def _encodable(attributes: Mapping[str, Any]) -> Mapping[str, Any]:
    """Lone surrogates in string values as U+FFFD, once per series: the
    OTLP encoder would otherwise drop the attribute with a logged traceback
    at every export (the series would merge with its neighbour's)."""
    if not any(value.__class__ is str and _SURROGATE.search(value) for value in attributes.values()):
        return attributes
    return {
        key: _SURROGATE.sub("\ufffd", value) if value.__class__ is str else value for key, value in attributes.items()
    }


class _ScrubbedReservoir:
    """An exemplar reservoir whose exemplars leave with scrubbed attributes.
    Most series are never offered one (observable gauges; measurements
    outside a sampled span): their collection asks the SDK's reservoir
    nothing (its lock, a sort and a reset per point) and returns no exemplar,
    as it would have."""

    __slots__ = ("_reservoir", "_scrubber", "_offered")

    def __init__(self, reservoir: Any, scrubber: Scrubber) -> None:
        self._reservoir = reservoir
        self._scrubber = scrubber
        self._offered = False

    def offer(self, value: Any, time_unix_nano: int, attributes: Any, context: Any) -> None:
        self._reservoir.offer(value, time_unix_nano, attributes, context)
        self._offered = True

    def collect(self, point_attributes: Any) -> list:
        if not self._offered:
            return []
        self._offered = False  # before: an offer during the collection counts for the next
        exemplars = self._reservoir.collect(point_attributes)
        scrub = self._scrubber.scrub_attributes
        return [
            replace(exemplar, filtered_attributes=scrub(exemplar.filtered_attributes)) if exemplar.filtered_attributes else exemplar
            for exemplar in exemplars
        ]


def scrub_resource_attributes(attributes: Mapping[str, Any], scrubber: Scrubber) -> dict[str, Any]:
    """Resource attributes (``resource_attributes``, OTEL_RESOURCE_ATTRIBUTES:
    ``db.dsn=postgres://u:PW@h/x``) as they may leave the process."""
    return dict(scrubber.scrub_attributes(attributes))

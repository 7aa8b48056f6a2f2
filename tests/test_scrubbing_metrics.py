"""Metric series are scrubbed where the SDK creates them (the scrubbing
view), with the aggregation the SDK's default would create: checked per
instrument kind against DefaultAggregation itself, and through a real
MeterProvider's first collection (a short program's final flush)."""

from __future__ import annotations

import pytest
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import DefaultAggregation

from rqa_otel.export.scrubbing import scrubbing_view
from rqa_otel.scrub import MARKER, Scrubber

SECRET = "hunter2-Very-Secret"


def _instruments(meter):
    return {
        "counter": meter.create_counter("c"),
        "up_down_counter": meter.create_up_down_counter("u"),
        "observable_counter": meter.create_observable_counter("oc", []),
        "observable_up_down_counter": meter.create_observable_up_down_counter("ou", []),
        "histogram": meter.create_histogram("h", explicit_bucket_boundaries_advisory=[1.0, 5.0, 25.0]),
        "histogram_default_bounds": meter.create_histogram("h2"),
        "observable_gauge": meter.create_observable_gauge("og", []),
        "gauge": meter.create_gauge("g"),
    }


def _state(aggregation) -> dict:
    state = {k: v for k, v in vars(aggregation).items() if k not in ("_lock", "_reservoir")}
    reservoir = aggregation._reservoir
    inner = getattr(reservoir, "_reservoir", reservoir)  # ours wraps the SDK's
    state["reservoir"] = (type(inner), inner._size, getattr(inner, "_boundaries", None))
    return state


@pytest.mark.parametrize("kind", list(_instruments(MeterProvider().get_meter("kinds"))))
def test_each_instrument_gets_what_the_default_aggregation_would_create(kind):
    from opentelemetry.sdk.metrics._internal.view import _default_reservoir_factory

    instrument = _instruments(MeterProvider().get_meter("kinds"))[kind]
    view = scrubbing_view(Scrubber())
    for attributes in (None, {"rqa.strategy": "s", "rqa.stock": "AAPL"}):
        ours = view._aggregation._create_aggregation(instrument, attributes, _default_reservoir_factory, 123)
        default = DefaultAggregation()._create_aggregation(instrument, attributes, _default_reservoir_factory, 123)
        assert type(ours) is type(default)
        assert _state(ours) == _state(default)


def test_first_collection_redacts_secrets_in_observable_gauges_counters_and_histograms():
    scrubber = Scrubber()
    scrubber.register_secret(SECRET)
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader], views=[scrubbing_view(scrubber)]).get_meter("t")
    series = {"db.password": "pw-1234567", "rqa.note": f"dsn uses {SECRET}", "rqa.strategy": "s"}

    def observe(options: CallbackOptions):
        return [Observation(1.5, series), Observation(2.5, {"rqa.strategy": "s", "rqa.resource": "cpu"})]

    meter.create_observable_gauge("rqa.test.gauge", [observe])
    meter.create_observable_counter("rqa.test.observed", [lambda options: [Observation(3, series)]])
    meter.create_counter("rqa.test.count").add(1, series)
    meter.create_histogram("rqa.test.hist").record(4.0, series)

    points = {
        metric.name: [dict(point.attributes) for point in metric.data.data_points]
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    redacted = {"db.password": MARKER, "rqa.note": f"dsn uses {MARKER}", "rqa.strategy": "s"}
    assert points == {
        "rqa.test.gauge": [redacted, {"rqa.strategy": "s", "rqa.resource": "cpu"}],
        "rqa.test.observed": [redacted],
        "rqa.test.count": [redacted],
        "rqa.test.hist": [redacted],
    }
    assert SECRET not in repr(points) and "pw-1234567" not in repr(points)


def test_exemplars_come_only_from_offered_measurements_and_leave_scrubbed():
    from opentelemetry.sdk.metrics import Counter
    from opentelemetry.sdk.trace import TracerProvider

    scrubber = Scrubber()
    scrubber.register_secret(SECRET)
    # One series per counter, so the second attribute set overflows and all
    # of its measurement's attributes become the exemplar's filtered ones.
    reader = InMemoryMetricReader(cardinality_limits={Counter: 1})
    meter = MeterProvider(metric_readers=[reader], views=[scrubbing_view(scrubber)]).get_meter("t")
    tracer = TracerProvider().get_tracer("t")
    counter = meter.create_counter("rqa.test.count")

    def exemplars():
        return {
            tuple(sorted(point.attributes.items())): [dict(e.filtered_attributes or {}) for e in point.exemplars]
            for resource in reader.get_metrics_data().resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            for point in metric.data.data_points
        }

    counter.add(1, {"rqa.strategy": "s"})  # outside a span: no exemplar
    assert exemplars() == {(("rqa.strategy", "s"),): []}
    with tracer.start_as_current_span("sampled"):
        counter.add(1, {"rqa.strategy": "s"})
        counter.add(1, {"rqa.strategy": "t", "api_key": "k-123456789", "rqa.note": f"via {SECRET}"})
    assert exemplars() == {
        (("rqa.strategy", "s"),): [{}],
        (("otel.metric.overflow", True),): [{"rqa.strategy": "t", "api_key": MARKER, "rqa.note": f"via {MARKER}"}],
    }
    counter.add(1, {"rqa.strategy": "s"})  # offered nothing since the last collection: none again
    assert exemplars() == {(("rqa.strategy", "s"),): [], (("otel.metric.overflow", True),): []}


def test_an_sdk_whose_aggregations_take_other_arguments_still_gets_its_series(monkeypatch):
    """The direct set-up reaches into the SDK's aggregation classes; if a
    new SDK changed their arguments, its own DefaultAggregation takes over
    and every series is still collected (scrubbed)."""
    from rqa_otel.export import scrubbing

    def changed(*args, **kwargs):
        raise TypeError("__init__() got an unexpected keyword argument 'reservoir_builder'")

    monkeypatch.setattr(scrubbing, "_DEFAULTS", {kind: changed for kind in scrubbing._DEFAULTS})
    scrubber = Scrubber()
    scrubber.register_secret(SECRET)
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader], views=[scrubbing_view(scrubber)]).get_meter("t")
    meter.create_counter("rqa.test.count").add(2, {"rqa.note": f"via {SECRET}"})
    meter.create_observable_gauge("rqa.test.gauge", [lambda options: [Observation(1.5, {"rqa.strategy": "s"})]])
    points = {
        metric.name: [(dict(point.attributes), point.value) for point in metric.data.data_points]
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert points == {"rqa.test.count": [({"rqa.note": f"via {MARKER}"}, 2)], "rqa.test.gauge": [({"rqa.strategy": "s"}, 1.5)]}
    assert scrubbing._DEFAULTS == {}

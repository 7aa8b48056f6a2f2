"""The default propagators (opentelemetry-api's tracecontext and baggage,
made without an entry-point scan) are the ones their entry points name."""

from __future__ import annotations

from importlib.metadata import entry_points

from opentelemetry import propagate

from rqa_otel.config import load_settings
from rqa_otel.pipeline import _API_PROPAGATORS, install_sdk_globals


def test_default_propagators_match_their_entry_points():
    for name, make in _API_PROPAGATORS.items():
        [point] = entry_points(group="opentelemetry_propagator", name=name)
        assert type(make()) is point.load()
    before = propagate.get_global_textmap()
    try:
        install_sdk_globals(load_settings(environ={}))
        assert propagate.get_global_textmap().fields == {"traceparent", "tracestate", "baggage"}
    finally:
        propagate.set_global_textmap(before)

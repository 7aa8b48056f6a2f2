"""Names that moved or were renamed keep working for code written against
them, and say where the new name is."""

import warnings

import pytest


@pytest.fixture
def handle(file_telemetry):
    return file_telemetry(strategy="alpha")


def test_telemetry_config_is_the_live_settings_with_a_deprecation_warning(handle):
    with pytest.warns(DeprecationWarning, match="Telemetry.live_settings"):
        live = handle.config
    assert live is handle.live_settings
    assert live.current.strategy == "alpha"
    assert live.reload().outcome == "unchanged"


def test_telemetry_resources_is_the_resource_gauges_with_a_deprecation_warning(handle):
    with pytest.warns(DeprecationWarning, match="Telemetry.resource_gauges"):
        gauges = handle.resources
    assert gauges is handle.resource_gauges
    assert gauges is not None and gauges.refresh() is not None
    # `resource` is the OTel Resource every signal carries, not the gauges.
    assert handle.resource.attributes["rqa.strategy"] == "alpha"


def test_new_names_do_not_warn(handle):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert handle.live_settings.current.strategy == "alpha"
        assert handle.resource_gauges is not None


def test_old_module_paths_are_the_new_objects():
    import rqa_otel.circuit_breaker
    import rqa_otel.influx.exporter
    import rqa_otel.trading_errors
    from rqa_otel.export.influx import exporter
    from rqa_otel.trading import circuit_breaker, errors

    for name in errors.__all__:
        assert getattr(rqa_otel.trading_errors, name) is getattr(errors, name)
    assert rqa_otel.circuit_breaker.CircuitBreaker is circuit_breaker.CircuitBreaker
    for name in rqa_otel.influx.exporter.__all__:
        assert getattr(rqa_otel.influx.exporter, name) is getattr(exporter, name)

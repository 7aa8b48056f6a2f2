"""setup() to a real OTLP receiver (rotel) over grpc and http/protobuf."""

from __future__ import annotations

import pytest

import rqa_otel
from rqa_otel import names


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_span_metric_and_log_arrive_with_their_attributes(rotel, protocol):
    endpoint = rotel.grpc_endpoint if protocol == "grpc" else rotel.http_endpoint
    telemetry = rqa_otel.setup(
        strategy="momentum_a",
        service_name="rqa-roundtrip",
        environment="test",
        overrides={
            "export": {"traces": "otlp", "metrics": "otlp", "logs": "otlp"},
            "export.otlp": {"endpoint": endpoint, "protocol": protocol},
        },
        set_global=False,
    )
    logger = telemetry.get_logger(f"roundtrip.{protocol}")
    counter = telemetry.meter.create_counter("roundtrip.orders")
    with telemetry.tracer.start_as_current_span("rebalance", attributes={names.STOCK: "600519.SH"}) as span:
        counter.add(3, {names.STOCK: "600519.SH", "side": "buy"})
        logger.warning("position limit near", extra={"stock": "600519.SH", "signal": "BUY"})
        trace_id = span.get_span_context().trace_id
    assert telemetry.shutdown(timeout_s=10)

    [received_span] = rotel.wait_for_span("rebalance")
    assert received_span["attributes"][names.STOCK] == "600519.SH"
    assert int(received_span["trace_id"], 16) == trace_id
    resource = received_span["resource"]
    assert resource[names.SERVICE_NAME] == "rqa-roundtrip"
    assert resource[names.STRATEGY] == "momentum_a"
    assert resource[names.DEPLOYMENT_ENVIRONMENT] == "test"
    assert resource[names.SERVICE_INSTANCE_ID]
    assert resource[names.HOST_NAME]
    assert isinstance(resource[names.PROCESS_PID], int)

    [metric] = rotel.wait_for_metric("roundtrip.orders")
    [point] = metric["data_points"]
    assert point["value"] == 3
    assert point["attributes"] == {names.STOCK: "600519.SH", "side": "buy"}

    [record] = rotel.wait_for_log("position limit near")
    assert record["severity_text"] == "WARN"
    assert record["attributes"][names.STOCK] == "600519.SH"
    assert record["attributes"][names.SIGNAL] == "BUY"
    assert record["attributes"][names.STRATEGY] == "momentum_a"
    assert int(record["trace_id"], 16) == trace_id, "the log record is correlated with the active span"

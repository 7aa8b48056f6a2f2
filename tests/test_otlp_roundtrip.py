"""setup() to a real OTLP receiver (rotel) over grpc and http/protobuf."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from backends import free_port
from otlp_files import attributes, items as otlp_json

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


def ready_report(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:  # 503 when failing
        return json.loads(error.read())


@pytest.mark.parametrize("refusal", ["rejected", "unreachable"])
def test_a_refusing_receiver_with_the_spool_off_raises_the_log_alert_and_fails_ready(rotel, tmp_path, refusal):
    # rejected: a real receiver answers 404 (no OTLP service under that
    # path), a refusal for good; unreachable: nothing listens, retried until
    # the export timeout is spent. Either way the records are lost, counted,
    # alerted once, and /ready says so.
    endpoint = f"{rotel.http_endpoint}/not-otlp" if refusal == "rejected" else f"http://127.0.0.1:{free_port()}"
    ops_port = free_port()
    telemetry = rqa_otel.setup(
        overrides={
            "export": {"traces": "file", "metrics": "none", "logs": "otlp", "directory": str(tmp_path)},
            "export.otlp": {"endpoint": endpoint, "protocol": "http/protobuf", "timeout_s": 1},
            "export.spool.enabled": False,
            "ops.http_port": ops_port,
        },
        set_global=False,
    )
    try:
        telemetry.get_logger("refused").warning("sent to a receiver that refuses it")
        assert telemetry.force_flush(timeout_s=5) is True, "the worker gave the batch up within the export timeout"
        assert "logs_export" in ready_report(ops_port)["failing"]
        assert telemetry.log_drops() == {("export_failed", "WARNING"): 1}
    finally:
        telemetry.shutdown()
    alerts = [span for span in otlp_json(tmp_path / "traces.jsonl", "resourceSpans", "scopeSpans", "spans")
              if span["name"] == names.ALERT_SPAN]
    assert len(alerts) == 1
    alert = attributes(alerts[0])
    assert alert[names.ALERT_NAME] == names.LOG_EXPORT_FAILED_ALERT and alert[names.ALERT_SEVERITY] == "critical"
    # The alert says why: the server's answer, or the network error.
    assert ("HTTP 404" if refusal == "rejected" else "Connection refused") in alert[names.ALERT_MESSAGE]


def test_every_otlp_setting_shapes_the_transport_of_every_signal():
    from rqa_otel.export.otlp.transport import OtlpGrpcTransport, OtlpHttpTransport, otlp_transport
    from rqa_otel.settings import OtlpSettings

    http = OtlpSettings("https://user:s3cret@collector:4318/base/", "http/protobuf", {"X-Team": "quant"}, 2.5)
    for signal in ("traces", "metrics", "logs"):
        transport = otlp_transport(signal, http)
        assert isinstance(transport, OtlpHttpTransport)
        assert transport.url == f"https://collector:4318/base/v1/{signal}"
        assert transport.destination == f"OTLP http/protobuf https://collector:4318/base/v1/{signal}"
        assert transport.request_timeout_s == 2.5
        headers = transport.headers
        assert headers["X-Team"] == "quant" and headers["authorization"].startswith("Basic ")
        transport.shutdown()
    default_http = otlp_transport("logs", OtlpSettings("", "http/protobuf", {}, 1))
    assert default_http.url == "http://localhost:4318/v1/logs"

    grpc = OtlpSettings("http://127.0.0.1:4317", "grpc", {"X-Team": "quant"}, 3)
    transport = otlp_transport("metrics", grpc)
    assert isinstance(transport, OtlpGrpcTransport)
    assert transport.destination == "OTLP grpc http://127.0.0.1:4317" and transport.request_timeout_s == 3
    assert transport._metadata == (("x-team", "quant"),)
    transport.shutdown()
    assert otlp_transport("traces", OtlpSettings("", "grpc", {}, 1)).url == "http://localhost:4317"

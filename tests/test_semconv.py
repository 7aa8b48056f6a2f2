"""Semantic conventions as a user checks them in what the process exports:
cpu.mode on process.cpu.utilization, deployment.environment.name only,
events as the log record's EventName field (OTLP-JSON files and real OTLP
to rotel), alert attributes in the project's namespace, utilization units,
and code.* attributes on log records."""

from __future__ import annotations

import json
import os

import pytest

import rqa_otel
from otlp_files import log_records, metrics, spans
from rqa_otel import names
from rqa_otel.trading import BacktestMonitor
from rqa_otel.trading.errors import BrokerConnection, CircuitOpen, TradingErrorHandler


def attributes(item: dict) -> dict:
    return {a["key"]: next(iter(a["value"].values())) for a in item.get("attributes", [])}


def resource_of(path) -> dict:
    first = json.loads(path.read_text().splitlines()[0])
    key = next(k for k in first if k.startswith("resource"))
    return attributes(first[key][0]["resource"])


@pytest.fixture
def exported(file_telemetry, tmp_path):
    """One process's files after trades, a portfolio snapshot, a breaker that
    opens, an alert and resource gauges."""
    telemetry = file_telemetry(strategy="alpha", overrides={"resources.host": True, "errors.breaker.failure_threshold": 1})
    monitor = BacktestMonitor(telemetry)
    monitor.record_trade("600519.SH", "BUY", 1688.5, 100, "alpha")
    monitor.record_portfolio(1_000_000.0, 500_000.0, {"600519.SH": 100}, "alpha")
    handler = TradingErrorHandler(telemetry)

    @handler.with_retry()
    def send():
        raise BrokerConnection("reset")

    with pytest.raises((BrokerConnection, CircuitOpen)):
        send()
    telemetry.get_logger("strategy").info("plain record")
    telemetry.shutdown()
    return tmp_path


def test_process_cpu_utilization_has_one_series_per_cpu_mode(exported):
    (metric,) = [m for m in metrics(exported / "metrics.jsonl") if m["name"] == names.PROCESS_CPU_UTILIZATION][:1]
    points = metric["gauge"]["dataPoints"]
    modes = {attributes(p)[names.CPU_MODE] for p in points if int(attributes(p)[names.PROCESS_PID]) == os.getpid()}
    assert modes == {"user", "system"}
    for point in points:
        assert 0.0 <= point["asDouble"] <= 1.0


def test_the_resource_has_deployment_environment_name_only(exported):
    resource = resource_of(exported / "metrics.jsonl")
    assert resource["deployment.environment.name"] == "development"
    assert "deployment.environment" not in resource


def test_alerts_carry_the_project_namespace(exported):
    alerts = [attributes(s) for s in spans(exported / "traces.jsonl") if s["name"] == names.ALERT_SPAN]
    assert alerts and all("rqa.alert.name" in a and "rqa.alert.severity" in a for a in alerts)
    assert not [a for a in alerts if any(key.startswith("alert.") for key in a)]
    counter = next(m for m in metrics(exported / "metrics.jsonl") if m["name"] == names.ALERTS_COUNTER)
    keys = {key for point in counter["sum"]["dataPoints"] for key in attributes(point)}
    assert {"rqa.alert.name", "rqa.alert.severity"} <= keys and not {"alert.name", "alert.severity"} & keys


def test_strategy_cpu_is_in_cores_with_a_conventions_unit(exported):
    found = {m["name"]: m for m in metrics(exported / "metrics.jsonl")}
    assert "rqa.strategy.cpu.percent" not in found
    assert found["rqa.strategy.cpu.usage"]["unit"] == "{cpu}"
    units = {name: metric.get("unit", "") for name, metric in found.items()}
    assert "%" not in units.values(), units
    for name, unit in units.items():  # every utilization is a ratio
        if name.endswith(".utilization"):
            assert unit == "1", (name, unit)


def test_events_carry_event_name_and_no_event_name_attribute(exported):
    records = list(log_records(exported / "logs.jsonl"))
    by_event = {}
    for record in records:
        assert "event.name" not in attributes(record)
        if "eventName" in record:
            by_event.setdefault(record["eventName"], []).append(record)
    assert {names.TRADE_EVENT, names.PORTFOLIO_EVENT, names.BREAKER_STATE_EVENT} <= set(by_event), sorted(by_event)
    assert attributes(by_event[names.TRADE_EVENT][0])[names.TRADE_SIDE] == "buy"
    plain = [r for r in records if r["body"]["stringValue"] == "plain record"]
    assert plain and "eventName" not in plain[0]


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_event_name_reaches_a_real_otlp_receiver(rotel, tmp_path, protocol):
    endpoint = rotel.grpc_endpoint if protocol == "grpc" else rotel.http_endpoint
    telemetry = rqa_otel.setup(
        strategy="alpha",
        overrides={"export": {"traces": "none", "metrics": "none", "logs": "otlp", "directory": str(tmp_path)},
                   "export.otlp": {"endpoint": endpoint, "protocol": protocol}},
        set_global=False,
    )
    BacktestMonitor(telemetry).record_trade("600519.SH", "SELL", 1700.0, 100, "alpha")
    telemetry.get_logger("strategy").warning("not an event")
    assert telemetry.shutdown(timeout_s=10)
    [trade] = _wait_trade(rotel)
    assert trade["event_name"] == names.TRADE_EVENT
    [plain] = rotel.wait_for_log("not an event")
    assert not plain["event_name"]


def _wait_trade(rotel):
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        trades = [r for r in rotel.received()["logs"] if r["attributes"].get(names.TRADE_SIDE) == "sell"]
        if trades:
            return trades
        time.sleep(0.05)
    raise AssertionError(f"no trade event arrived: {rotel.received()['logs']}")


def test_code_attributes_on_records_when_the_setting_is_on(file_telemetry, tmp_path):
    telemetry = file_telemetry(overrides={"logging.code_attributes": True})
    line = test_code_attributes_on_records_when_the_setting_is_on.__code__.co_firstlineno + 3
    telemetry.get_logger("strategy").info("located")
    telemetry.shutdown()
    (record,) = [r for r in log_records(tmp_path / "logs.jsonl") if r["body"]["stringValue"] == "located"]
    found = attributes(record)
    assert found[names.CODE_FILE_PATH] == __file__
    assert found[names.CODE_FUNCTION_NAME] == "test_code_attributes_on_records_when_the_setting_is_on"
    assert int(found[names.CODE_LINE_NUMBER]) == line


def test_no_code_attributes_with_the_setting_off(file_telemetry, tmp_path):
    telemetry = file_telemetry(overrides={"logging.code_attributes": False})
    telemetry.get_logger("strategy").info("unlocated")
    telemetry.shutdown()
    (record,) = [r for r in log_records(tmp_path / "logs.jsonl") if r["body"]["stringValue"] == "unlocated"]
    assert not {names.CODE_FILE_PATH, names.CODE_FUNCTION_NAME, names.CODE_LINE_NUMBER} & set(attributes(record))

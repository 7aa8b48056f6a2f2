"""Trading errors: retries, alerts, counters and the circuit breaker, read back from real exported files."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import traceback
import weakref

import pytest

from otlp_files import attributes as attrs
from otlp_files import log_records, metrics, spans
from rqa_otel import names
from rqa_otel.trading.circuit_breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from rqa_otel.trading.errors import (
    BrokerConnection,
    CircuitOpen,
    DataLoadError,
    InsufficientFunds,
    OrderRejected,
    PositionLimit,
    ReasonCode,
    TradingError,
    TradingErrorHandler,
)

FAST = {
    f"errors.{kind}.{field}": value
    for kind in ("order_rejected", "broker_connection", "data_load")
    for field, value in (("base_delay_s", 0.001), ("max_delay_s", 0.005))
}


@pytest.fixture
def telemetry(file_telemetry):
    return file_telemetry(strategy="alpha", overrides=FAST)


def alerts(telemetry, tmp_path):
    telemetry.force_flush()
    return [span for span in spans(tmp_path / "traces.jsonl", missing_ok=True) if span["name"] == names.ALERT_SPAN]


def error_counts(telemetry, tmp_path):
    telemetry.force_flush()
    counts = {}
    for metric in metrics(tmp_path / "metrics.jsonl", missing_ok=True):
        if metric["name"] == names.TRADING_ERRORS_COUNTER:
            for point in metric["sum"]["dataPoints"]:
                a = attrs(point)
                counts[(a[names.ERROR_TYPE], a[names.ERROR_OUTCOME])] = int(point["asInt"])
    return counts


def test_rejected_order_recovers_after_retries(telemetry, tmp_path):
    handler = TradingErrorHandler(telemetry)
    calls = []

    @handler.with_retry(strategy="alpha")
    def submit(order_id):
        calls.append(order_id)
        if len(calls) < 3:
            raise OrderRejected("price out of limit", symbol="600519.SH", order_id=order_id,
                                reason=ReasonCode.PRICE_OUT_OF_LIMIT)
        return "filled"

    assert submit("o-1") == "filled" and len(calls) == 3
    [alert] = alerts(telemetry, tmp_path)
    a = attrs(alert)
    assert a[names.ALERT_NAME] == "order_rejected" and a[names.ALERT_SEVERITY] == "warning"
    assert a[names.ERROR_OUTCOME] == "recovered" and int(a[names.ERROR_ATTEMPTS]) == 3
    assert a[names.ORDER_ID] == "o-1" and a[names.STOCK] == "600519.SH"
    assert a[names.ERROR_REASON] == "price_out_of_limit"
    retries = [e for e in alert["events"] if e["name"] == names.RETRY_EVENT]
    assert [int(attrs(e)[names.ERROR_ATTEMPTS]) for e in retries] == [1, 2]
    assert all(0 <= attrs(e)[names.RETRY_DELAY_S] <= 0.005 for e in retries)
    assert error_counts(telemetry, tmp_path) == {("OrderRejected", "recovered"): 1}


def test_giving_up_is_critical_and_keeps_the_original_exception(telemetry, tmp_path):
    handler = TradingErrorHandler(telemetry)

    @handler.with_retry()
    def submit():
        try:
            {}["price"]
        except KeyError as cause:
            raise OrderRejected("no price", symbol="000001.SZ") from cause

    with pytest.raises(OrderRejected) as caught:
        submit()
    error = caught.value
    assert isinstance(error.__cause__, KeyError), "the cause chain is intact"
    frames = traceback.extract_tb(error.__traceback__)
    assert any(frame.name == "submit" and "raise OrderRejected" in frame.line for frame in frames)
    assert any("gave up after 3 attempts" in note for note in error.__notes__)

    [alert] = alerts(telemetry, tmp_path)
    a = attrs(alert)
    assert a[names.ALERT_SEVERITY] == "critical" and a[names.ERROR_OUTCOME] == "gave_up"
    assert alert["status"]["code"] == 2
    assert [e["name"] for e in alert["events"]].count("exception") == 1
    assert error_counts(telemetry, tmp_path) == {("OrderRejected", "gave_up"): 1}


def test_insufficient_funds_and_position_limits_are_not_retried(telemetry, tmp_path):
    handler = TradingErrorHandler(telemetry)
    calls = []

    @handler.with_retry(strategy="alpha")
    def buy(kind):
        calls.append(kind)
        if kind == "funds":
            raise InsufficientFunds("cash short", symbol="600519.SH", required=170_000.0, available=12_500.5)
        raise PositionLimit("too long", symbol="300750.SZ", current=9_800, limit=10_000)

    for kind, error_type in (("funds", InsufficientFunds), ("limit", PositionLimit)):
        with pytest.raises(error_type):
            buy(kind)
    assert calls == ["funds", "limit"]
    funds, limit = (attrs(alert) for alert in alerts(telemetry, tmp_path))
    assert funds[names.ALERT_NAME] == "insufficient_funds" and funds[names.ALERT_SEVERITY] == "critical"
    assert (funds[names.ERROR_REQUIRED], funds[names.ERROR_AVAILABLE]) == (170_000.0, 12_500.5)
    assert limit[names.ALERT_NAME] == "position_limit" and limit[names.ALERT_SEVERITY] == "warning"
    assert (int(limit[names.ERROR_CURRENT]), int(limit[names.ERROR_LIMIT])) == (9_800, 10_000)
    assert error_counts(telemetry, tmp_path) == {
        ("InsufficientFunds", "not_retried"): 1,
        ("PositionLimit", "not_retried"): 1,
    }


def test_async_functions_are_retried_too(telemetry, tmp_path):
    handler = TradingErrorHandler(telemetry)
    calls = []

    @handler.with_retry(breaker=None)
    async def load_bars():
        calls.append(1)
        await asyncio.sleep(0)
        if len(calls) < 2:
            raise DataLoadError("feed timeout", reason=ReasonCode.TIMEOUT)
        return [1, 2, 3]

    assert asyncio.run(load_bars()) == [1, 2, 3]
    assert error_counts(telemetry, tmp_path) == {("DataLoadError", "recovered"): 1}


def test_dispatch_follows_the_exception_mro(telemetry):
    handler = TradingErrorHandler(telemetry)
    seen = []
    handler.register_handler(TradingError, lambda error: seen.append(("any", type(error).__name__)))
    handler.register_handler(BrokerConnection, lambda error: seen.append(("broker", type(error).__name__)))
    handler.handle(CircuitOpen("open"))
    handler.handle(PositionLimit("limit"))
    assert seen == [("broker", "CircuitOpen"), ("any", "PositionLimit")]
    with pytest.raises(TypeError):
        handler.register_handler("not a type", print)


def test_errors_that_are_not_trading_errors_pass_through_untouched(telemetry, tmp_path):
    handler = TradingErrorHandler(telemetry)

    @handler.with_retry()
    def buggy():
        raise ZeroDivisionError("strategy bug")

    with pytest.raises(ZeroDivisionError):
        buggy()
    assert alerts(telemetry, tmp_path) == []


def test_circuit_breaker_stops_calls_then_probes_once(file_telemetry, tmp_path):
    telemetry = file_telemetry(overrides={**FAST, "errors.breaker.failure_threshold": 3, "errors.breaker.open_s": 0.3})
    handler = TradingErrorHandler(telemetry)
    broker_up = False
    calls = []

    @handler.with_retry(strategy="alpha")
    def send():
        calls.append(time.monotonic())
        if not broker_up:
            raise BrokerConnection("connection reset", reason=ReasonCode.CONNECTION_LOST)
        return "ack"

    with pytest.raises(CircuitOpen) as refused:
        send()
    assert len(calls) == 3, "the breaker opened after 3 consecutive failures; the 4th try never went out"
    assert isinstance(refused.value.__cause__, BrokerConnection)
    assert handler.breaker().state == OPEN
    with pytest.raises(CircuitOpen):
        send()
    assert len(calls) == 3, "no call while open"

    time.sleep(0.35)
    broker_up = True
    assert send() == "ack" and len(calls) == 4
    assert handler.breaker().state == CLOSED
    telemetry.shutdown()

    changes = [(attrs(r)[names.BREAKER_PREVIOUS_STATE], attrs(r)[names.BREAKER_STATE])
               for r in log_records(tmp_path / "logs.jsonl") if names.BREAKER_STATE in attrs(r)]
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    alert_names = [attrs(s)[names.ALERT_NAME] for s in spans(tmp_path / "traces.jsonl") if s["name"] == names.ALERT_SPAN]
    assert alert_names.count("circuit_breaker_open") == 1
    gauge = [
        int(p.get("asInt", 0))
        for m in metrics(tmp_path / "metrics.jsonl")
        if m["name"] == names.CIRCUIT_BREAKER_STATE_GAUGE for p in m["gauge"]["dataPoints"]
    ]
    assert gauge[-1] == 0, "closed again at the last collection"


def test_half_open_breaker_lets_exactly_one_probe_through():
    now = [0.0]
    changes = []
    breaker = CircuitBreaker("broker", failure_threshold=2, open_s=10, clock=lambda: now[0],
                             on_change=lambda name, old, new: changes.append((old, new)))
    breaker.record_failure()
    assert breaker.allow()
    breaker.record_failure()
    assert not breaker.allow()
    now[0] = 10.0
    allowed = []
    threads = [threading.Thread(target=lambda: allowed.append(breaker.allow())) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 1
    breaker.record_failure()  # the probe failed: open again
    assert breaker.state == OPEN
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN)]


def test_a_dropped_handler_is_freed_and_the_live_one_still_follows_the_settings(file_telemetry, tmp_path):
    """The telemetry handle outlives handlers: its settings subscription, breaker
    gauge and readiness check must not keep every handler ever made."""
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("errors:\n  order_rejected:\n    max_tries: 3\n")
    telemetry = file_telemetry(settings_file)
    kept = TradingErrorHandler(telemetry)
    kept.breaker("kept")
    dropped = TradingErrorHandler(telemetry)
    dropped.breaker("dropped")
    freed = weakref.ref(dropped)
    del dropped
    gc.collect()
    assert freed() is None

    settings_file.write_text("errors:\n  order_rejected:\n    max_tries: 6\n")
    assert telemetry.live_settings.reload().outcome == "changed"
    assert kept.policy_for(OrderRejected()).max_tries == 6
    telemetry.force_flush()
    [gauge] = [m for m in metrics(tmp_path / "metrics.jsonl", missing_ok=True)
               if m["name"] == names.CIRCUIT_BREAKER_STATE_GAUGE][-1:]
    assert [attrs(p)[names.BREAKER_NAME] for p in gauge["gauge"]["dataPoints"]] == ["kept"]

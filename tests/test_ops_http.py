"""/health, /ready and /metrics, scraped by a real Prometheus and checked by promtool."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest

import rqa_otel
from backends import free_port
from rqa_otel import names
from rqa_otel.trading.errors import BrokerConnection, CircuitOpen, TradingErrorHandler


def get(address, path):
    url = f"http://{address[0]}:{address[1]}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers.get("Content-Type"), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type"), error.read().decode()


def ops_telemetry(tmp_path, **overrides):
    return rqa_otel.setup(
        strategy="alpha",
        overrides={"export.directory": str(tmp_path / "out"), "ops.http_port": free_port(), **overrides},
        set_global=False,
    )


def test_health_and_ready_answer_json_on_loopback(tmp_path):
    telemetry = ops_telemetry(tmp_path)
    try:
        assert telemetry.ops_address[0] == "127.0.0.1"
        status, content_type, body = get(telemetry.ops_address, "/health")
        assert status == 200 and content_type == "application/json"
        assert json.loads(body)["checks"]["log_export_worker"]["ok"] is True
        status, _, body = get(telemetry.ops_address, "/ready")
        report = json.loads(body)
        assert status == 200 and report["status"] == "ok" and report["failing"] == []
        assert {"traces_export", "metrics_export", "logs_export"} <= set(report["checks"])
        assert get(telemetry.ops_address, "/nope")[0] == 404
    finally:
        telemetry.shutdown()


def test_ready_names_what_is_not_ready(tmp_path):
    blocker = tmp_path / "blocked"
    blocker.write_text("not a directory")
    telemetry = rqa_otel.setup(
        overrides={"export.directory": str(blocker), "ops.http_port": free_port(),
                   "errors.breaker.failure_threshold": 1, "errors.breaker.open_s": 60,
                   "export.otlp.endpoint": "http://trader:hunter2pass@127.0.0.1:4317"},
        set_global=False,
    )
    try:
        telemetry.get_logger("ops").warning("written nowhere")
        telemetry.force_flush()
        handler = TradingErrorHandler(telemetry)

        @handler.with_retry()
        def send():
            raise BrokerConnection("reset")

        with pytest.raises((BrokerConnection, CircuitOpen)):
            send()
        status, _, body = get(telemetry.ops_address, "/ready")
        report = json.loads(body)
        assert status == 503 and report["status"] == "failing"
        assert {"logs_export", names.CIRCUIT_BREAKER_READINESS} <= set(report["failing"])
        assert "circuit breaker broker open" in report["checks"][names.CIRCUIT_BREAKER_READINESS]["reason"]
        assert "hunter2pass" not in body
    finally:
        telemetry.shutdown()


def test_prometheus_scrapes_metrics_and_promtool_accepts_them(tmp_path, prometheus_factory, promtool):
    telemetry = ops_telemetry(tmp_path)
    try:
        trades = telemetry.meter.create_counter("rqa.trades", unit="{trade}", description="Trades executed.")
        notional = telemetry.meter.create_histogram(
            "rqa.trade.notional.size", unit="CNY", description="Notional per trade.",
            explicit_bucket_boundaries_advisory=[1e4, 1e5, 1e6],
        )
        value = telemetry.meter.create_gauge("rqa.portfolio.value", unit="CNY", description="Portfolio value.")
        for side, count in (("buy", 3), ("sell", 2)):
            trades.add(count, {names.STOCK: "600519.SH", names.TRADE_SIDE: side})
        notional.record(50_000.0, {names.STOCK: "600519.SH"})
        value.set(1_019_291.5, {names.STRATEGY: "alpha"})

        status, content_type, text = get(telemetry.ops_address, "/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        ok, output = promtool(text)
        assert ok, output
        assert re.search(r'^rqa_trades_total{.*rqa_stock="600519.SH",rqa_trade_side="buy"} 3.0$', text, re.M)

        host, port = telemetry.ops_address
        prometheus = prometheus_factory([f"{host}:{port}"], scrape_interval="1s")
        prometheus.wait_for_target_up(timeout=30)
        result = prometheus.query('sum(rqa_trades_total{rqa_stock="600519.SH"})')
        assert float(result[0]["value"][1]) == 5.0
        buckets = prometheus.query('rqa_trade_notional_size_CNY_bucket{le="100000.0"}')
        assert float(buckets[0]["value"][1]) == 1.0
    finally:
        telemetry.shutdown()

"""`rqa-otel demo` and the embedded default's OTLP-JSON files.

The Collector's `otlpjsonfile` receiver cannot run here (no Collector
binary), so the files are checked against the OTLP protobuf schema itself:
every line must parse, with the OTLP-JSON rules, into the Export*ServiceRequest
it claims to be.
"""

from __future__ import annotations

import base64
import re
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otlp_files import attributes as _attributes
from otlp_files import log_records, metrics, spans
from rqa_otel import names

RQA_OTEL = Path(sys.executable).parent / "rqa-otel"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    result = subprocess.run([RQA_OTEL, "demo"], cwd=workdir, capture_output=True, text=True, timeout=120)
    return result, workdir / "rqa-telemetry"


def test_demo_exits_zero_with_progress_and_summary(demo_run):
    result, _ = demo_run
    assert result.returncode == 0, result.stderr
    assert "backtest: bar 504/504 (100%)" in result.stderr
    assert "3 stocks, 504 daily bars" in result.stdout
    assert "signal records suppressed" in result.stdout
    assert "the file watcher applied it" in result.stdout, "the live settings change took effect"
    assert "[strategy=dual_ma_demo stock=6" in result.stdout or "[strategy=dual_ma_demo stock=0" in result.stdout
    for signal, unit in (("traces", "spans"), ("metrics", "metric data points"), ("logs", "log records")):
        assert f"{unit} -> file {demo_run[1] / signal}.jsonl" in result.stdout


def _ids_to_base64(node):
    if isinstance(node, dict):
        return {
            k: base64.b64encode(bytes.fromhex(v)).decode() if k in ("traceId", "spanId", "parentSpanId") else _ids_to_base64(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_ids_to_base64(item) for item in node]
    return node


@pytest.mark.parametrize(
    "file_name, message",
    [("traces.jsonl", ExportTraceServiceRequest), ("metrics.jsonl", ExportMetricsServiceRequest), ("logs.jsonl", ExportLogsServiceRequest)],
)
def test_every_line_is_one_otlp_json_export_request(demo_run, file_name, message):
    _, directory = demo_run
    lines = (directory / file_name).read_text().splitlines()
    assert lines
    for line in lines:
        document = json.loads(line)
        ParseDict(_ids_to_base64(document), message())  # raises on any field OTLP does not define
        if file_name == "traces.jsonl":
            span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
            assert len(span["traceId"]) == 32 and int(span["traceId"], 16)
            assert isinstance(span["kind"], int), "enums are integers in OTLP JSON"
            assert isinstance(span["startTimeUnixNano"], str), "64-bit integers are decimal strings"


def test_demo_telemetry_tells_the_same_story_as_its_summary(demo_run):
    result, directory = demo_run
    [run_span] = [s for s in spans(directory / "traces.jsonl") if s["name"] == names.BACKTEST_SPAN]
    run = _attributes(run_span)
    assert run[names.STRATEGY] == "dual_ma_demo" and len(run[names.RUN_ID]) == 32

    records = list(log_records(directory / "logs.jsonl"))
    trades = [_attributes(r) for r in records if _attributes(r).get(names.TRADE_SIDE)]
    assert trades and f"{len(trades)} trades" in result.stdout
    trade_times = [int(r["timeUnixNano"]) for r in records if _attributes(r).get(names.TRADE_SIDE)]
    assert all(1704067200 * 10**9 < t < 1767225600 * 10**9 for t in trade_times), "simulated 2024-2025 time"

    counted = sum(
        int(point["asInt"])
        for metric in metrics(directory / "metrics.jsonl")
        if metric["name"] == names.TRADES_COUNTER
        for point in metric["sum"]["dataPoints"]
    )
    assert counted == len(trades)
    rows = sqlite3.connect(directory / "trades.db").execute("SELECT count(*) FROM trades").fetchone()[0]
    assert rows == len(trades), "every trade is in the journal"
    assert "get_trade_history" in result.stdout

    signals = [
        _attributes(r) for r in records if _attributes(r).get(names.SIGNAL) in ("BUY", "SELL") and not _attributes(r).get(names.TRADE_SIDE)
    ]
    assert signals and all(
        a[names.STOCK].endswith((".SH", ".SZ")) and a[names.STRATEGY] == "dual_ma_demo" for a in signals
    )
    strategy_records = [r for r in records if not _attributes(r).get(names.LOG_SUPPRESSED_COUNT)]
    assert all(r["traceId"] == run_span["traceId"] for r in strategy_records), "correlated with the run span"

    [summary] = [_attributes(r) for r in records if _attributes(r).get(names.LOG_SUPPRESSED_COUNT)]
    suppressed = int(summary[names.LOG_SUPPRESSED_COUNT])
    assert suppressed > 0 and summary[names.LOG_LOGGER] == "rqa.dual_ma_demo.signals"
    assert len(signals) + suppressed == 24 + 23, "every BUY/SELL signal is kept or counted"


def test_demo_sends_the_same_run_to_a_collector(rotel, tmp_path):
    result = subprocess.run(
        [RQA_OTEL, "demo", "--quiet", "--otlp-endpoint", rotel.grpc_endpoint],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    [span] = rotel.wait_for_span(names.BACKTEST_SPAN)
    assert span["attributes"][names.STRATEGY] == "dual_ma_demo"
    assert rotel.wait_for_metric(names.TRADES_COUNTER)
    assert f"OTLP grpc {rotel.grpc_endpoint}" in result.stdout
    local = sorted(p.name for p in (tmp_path / "rqa-telemetry").iterdir())
    kept = ("trades.db", "demo-settings.yaml")  # the journal, and the settings file the demo changes live
    assert [name for name in local if not name.startswith(kept)] == [], "only the trade journal stays local"


def test_demo_prints_the_strategy_resources_it_exported(demo_run):
    result, directory = demo_run
    line = next(line for line in result.stdout.splitlines() if line.startswith("  resources: dual_ma_demo: 1 process(es)"))
    points = [
        point
        for metric in metrics(directory / "metrics.jsonl")
        if metric["name"] == names.STRATEGY_MEMORY_USAGE
        for point in metric["sum"]["dataPoints"]
    ]
    assert points and all(_attributes(p)[names.STRATEGY] == "dual_ma_demo" for p in points)
    assert f"RSS {int(points[-1]['asInt']) / 2**20:.1f} MiB" in line  # the last export is the printed reading


def test_demo_shows_one_quota_breach_alert(demo_run):
    result, directory = demo_run
    line = next(line for line in result.stdout.splitlines() if line.startswith("  quota: dual_ma_demo memory"))
    alerts = [
        _attributes(span)
        for span in spans(directory / "traces.jsonl")
        if span["name"] == names.ALERT_SPAN and _attributes(span)[names.ALERT_NAME] == names.QUOTA_BREACH_ALERT
    ]
    assert len(alerts) == 1 and alerts[0][names.STRATEGY] == "dual_ma_demo"
    assert alerts[0][names.QUOTA_RESOURCE] == "memory" and alerts[0][names.QUOTA_EPISODE_ID] in line


def test_demo_broker_line_matches_the_exported_retries_and_alert(demo_run):
    result, directory = demo_run
    match = re.search(r"broker: (\d+) orders rejected once and retried .*; (\d+) order beyond the cash", result.stdout)
    assert match, result.stdout
    rejected, refused = int(match[1]), int(match[2])
    all_spans = list(spans(directory / "traces.jsonl"))
    retries = [event for span in all_spans for event in span.get("events", []) if event["name"] == names.RETRY_EVENT]
    refusals = [
        span for span in all_spans
        if span["name"] == names.ALERT_SPAN and _attributes(span)[names.ALERT_NAME] == names.ALERT_INSUFFICIENT_FUNDS
    ]
    assert rejected > 0 and len(retries) == rejected
    assert refused == 1 and len(refusals) == 1
    assert _attributes(refusals[0])[names.ALERT_SEVERITY] == "critical"

"""/metrics names every metric as the OpenTelemetry specification's
Prometheus compatibility rules do (the rules the Collector's ``prometheus``
exporter applies), metric by metric.

The expected names are derived HERE, from the OTLP-JSON the same process
exported (name, unit, type) and the rules as the specification states them
("OTLP Metric points to Prometheus"), never from rqa_otel.ops.exposition.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.request

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from otlp_files import metrics as exported_metrics
from rqa_otel import names
from rqa_otel.trading import BacktestMonitor
from rqa_otel.trading.errors import BrokerConnection, CircuitOpen, TradingErrorHandler
from test_ops_http import get, ops_telemetry

# --- the specification's rules, written out independently ----------------------

# "Converting from abbreviations to full words": the UCUM units the project
# uses, spelled as the Collector's translator spells them.
UNIT_WORDS = {"By": "bytes", "s": "seconds", "ms": "milliseconds", "Cel": "celsius", "W": "watts", "%": "percent"}


def spec_name(name: str, unit: str, otlp_type: str, monotonic: bool) -> tuple[str, str]:
    """(Prometheus family name as written in the text format, Prometheus type)."""
    # Invalid characters become "_", runs of "_" one "_".
    base = re.sub(r"_+", "_", re.sub(r"[^a-zA-Z0-9_:]", "_", name)).strip("_")
    # The unit: {annotations} dropped, "1" is "ratio" (for gauges), "a/b" is
    # "a_per_b"; added unless the name holds it already.
    suffix = ""
    plain = re.sub(r"\{[^}]*\}", "", unit)
    if unit == "1":
        suffix = "ratio" if otlp_type == "gauge" else ""
    elif "/" in plain:
        top, bottom = plain.split("/", 1)
        suffix = f"{UNIT_WORDS.get(top, top)}_per_{ {'s': 'second'}.get(bottom, bottom)}"
    elif plain:
        suffix = UNIT_WORDS.get(plain, plain)
    if suffix and suffix not in base.split("_"):
        base = f"{base}_{suffix}"
    if otlp_type == "sum" and monotonic:
        return (base if base.endswith("_total") else base + "_total"), "counter"
    if otlp_type == "histogram":
        return base, "histogram"
    return base, "gauge"  # gauges, and non-monotonic sums


def otlp_type(metric: dict) -> tuple[str, bool]:
    for kind in ("sum", "gauge", "histogram", "exponentialHistogram", "summary"):
        if kind in metric:
            return kind, bool(metric[kind].get("isMonotonic"))
    raise AssertionError(metric)


# Spot checks the issue names, so the rules above cannot drift unnoticed.
@pytest.mark.parametrize(
    "otel, unit, kind, monotonic, expected",
    [
        ("process.memory.usage", "By", "sum", False, ("process_memory_usage_bytes", "gauge")),
        ("process.thread.count", "{thread}", "sum", False, ("process_thread_count", "gauge")),
        ("process.cpu.utilization", "1", "gauge", False, ("process_cpu_utilization_ratio", "gauge")),
        ("rqa.trades", "{trade}", "sum", True, ("rqa_trades_total", "counter")),
        ("hw.temperature", "Cel", "gauge", False, ("hw_temperature_celsius", "gauge")),
        ("rqa.export.spool.size", "By", "gauge", False, ("rqa_export_spool_size_bytes", "gauge")),
        ("http.server.request.duration", "s", "histogram", False, ("http_server_request_duration_seconds", "histogram")),
    ],
)
def test_the_rules_in_this_test_give_the_names_the_issue_expects(otel, unit, kind, monotonic, expected):
    assert spec_name(otel, unit, kind, monotonic) == expected


# --- the process ---------------------------------------------------------------


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    """One process with host, process, strategy, trading, alert, breaker and
    log metrics; its exported OTLP-JSON and both /metrics formats."""
    tmp_path = tmp_path_factory.mktemp("names")
    telemetry = ops_telemetry(tmp_path, **{"resources.host": True, "errors.breaker.failure_threshold": 1})
    try:
        monitor = BacktestMonitor(telemetry)
        monitor.record_trade("600519.SH", "BUY", 1688.5, 100, "alpha")
        monitor.record_trade("000001.SZ", "SELL", 12.5, 1000, "alpha")
        monitor.record_portfolio(1_000_000.0, 500_000.0, {"600519.SH": 100}, "alpha")
        handler = TradingErrorHandler(telemetry)

        @handler.with_retry()
        def send():
            raise BrokerConnection("reset")

        with pytest.raises((BrokerConnection, CircuitOpen)):
            send()
        telemetry.alert("order_rejected", "warning", message="test")
        telemetry.force_flush()
        _, content_type, text = get(telemetry.ops_address, "/metrics")
        host, port = telemetry.ops_address
        request = urllib.request.Request(
            f"http://{host}:{port}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            om_type, om_text = response.headers["Content-Type"], response.read().decode()
        resource = {}
        otel = {}
        for metric in exported_metrics(tmp_path / "out" / "metrics.jsonl"):
            otel[metric["name"]] = metric
        for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()[:1]:
            for attribute in json.loads(line)["resourceMetrics"][0]["resource"]["attributes"]:
                resource[attribute["key"]] = next(iter(attribute["value"].values()))
        yield {"text": text, "content_type": content_type, "om": om_text, "om_type": om_type, "otel": otel,
               "resource": resource, "telemetry": telemetry}
    finally:
        telemetry.shutdown()


def families(text: str) -> dict[str, object]:
    return {family.name: family for family in parse_text(text)}


def test_every_exported_metric_has_the_name_the_rules_give(scraped):
    exposed = families(scraped["text"])
    table = []
    for name, metric in sorted(scraped["otel"].items()):
        kind, monotonic = otlp_type(metric)
        expected, prometheus_type = spec_name(name, metric.get("unit", ""), kind, monotonic)
        # prometheus_client's parser names a counter family without _total.
        key = expected.removesuffix("_total") if prometheus_type == "counter" else expected
        family = exposed.get(key)
        table.append((name, metric.get("unit", ""), kind, expected, family.type if family else None))
        assert family is not None, f"{name} ({metric.get('unit', '')}, {kind}): expected {expected}, exposed {sorted(exposed)}"
        assert family.type == prometheus_type, (name, family.type)
        if prometheus_type == "counter":
            assert any(sample.name == expected for sample in family.samples), (name, family.samples[:1])
    # The issue's examples, among many.
    exposed_names = {row[3] for row in table}
    assert {"process_memory_usage_bytes", "process_thread_count", "process_cpu_utilization_ratio",
            "rqa_trades_total", "system_memory_utilization_ratio", "rqa_circuit_breaker_state",
            "rqa_trading_errors_total"} <= exposed_names, table
    assert len(table) >= 25, table


def test_target_info_carries_the_resource_and_points_carry_scope_job_and_instance(scraped):
    exposed = families(scraped["text"])
    resource = scraped["resource"]
    (target,) = exposed["target_info"].samples
    assert target.value == 1
    job = resource[names.SERVICE_NAME]
    assert target.labels["job"] == job and target.labels["instance"] == resource[names.SERVICE_INSTANCE_ID]
    for key, value in resource.items():
        if key not in (names.SERVICE_NAME, names.SERVICE_INSTANCE_ID):
            assert target.labels[re.sub(r"[^a-zA-Z0-9_]", "_", key)] == str(value), key
    (trade,) = [s for s in exposed["rqa_trades"].samples if s.labels.get("rqa_stock") == "600519.SH"]
    assert trade.labels["otel_scope_name"] == names.SCOPE
    assert trade.labels["otel_scope_version"]
    assert trade.labels["job"] == job and trade.labels["instance"] == resource[names.SERVICE_INSTANCE_ID]
    # Resource attributes other than job/instance stay on target_info only.
    assert "host_name" not in trade.labels


def test_openmetrics_when_the_scraper_asks_and_text_otherwise(scraped):
    assert scraped["content_type"].startswith("text/plain; version=0.0.4")
    assert scraped["om_type"].startswith("application/openmetrics-text; version=1.0.0")
    assert scraped["om"].endswith("# EOF\n")
    om = {family.name: family for family in parse_openmetrics(scraped["om"])}  # strict: raises on any fault
    text = families(scraped["text"])
    assert set(om) == set(text)
    assert om["rqa_trades"].type == "counter" and om["process_memory_usage_bytes"].unit == "bytes"


def _promtool_findings(promtool, text: str) -> list[str]:
    ok, output = promtool(text)
    assert "parsing error" not in output, output
    return [line for line in output.splitlines() if line.strip()]


def test_promtool_accepts_both_formats(scraped, promtool):
    """promtool check metrics (Prometheus 2.42 here) parses both. Its one lint
    finding is on purpose: the semantic conventions' `*.count` up-down
    counters keep `_count` as gauges, as the specification's rules and the
    Collector name them (process_thread_count), which promtool's linter
    reserves for histograms; every finding must be that one."""
    for text in (scraped["text"], scraped["om"]):
        for finding in _promtool_findings(promtool, text):
            if text is scraped["om"] and finding.endswith("no help text"):
                # promtool reads OpenMetrics with the text parser: a counter's
                # HELP names the family (rqa_trades), its samples rqa_trades_total.
                assert finding.split()[0].endswith("_total"), finding
                continue
            assert finding.endswith('non-histogram and non-summary metrics should not have "_count" suffix'), finding
            assert finding.split()[0].endswith("_count"), finding


# --- collisions (issue 14, item 9) -----------------------------------------------


def test_colliding_attribute_keys_join_their_values_in_key_order(tmp_path):
    telemetry = ops_telemetry(tmp_path)
    try:
        counter = telemetry.meter.create_counter("rqa.test.collisions", unit="{thing}")
        counter.add(1, {"a_b": "second", "a.b": "first", "a-b": "zeroth", "other": "x"})
        counter.add(2, {"a.b": "only"})
        _, _, text = get(telemetry.ops_address, "/metrics")
        samples = {tuple(sorted(s.labels.items())): s.value for s in families(text)["rqa_test_collisions"].samples}
        common = [(k, v) for k, v in next(iter(samples)) if k not in ("a_b", "other")]
        # Lexicographic order of the original keys: "a-b" < "a.b" < "a_b".
        assert samples[tuple(sorted([*common, ("a_b", "zeroth;first;second"), ("other", "x")]))] == 1
        assert samples[tuple(sorted([*common, ("a_b", "only")]))] == 2
    finally:
        telemetry.shutdown()


class Captured(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_a_second_metric_with_the_same_prometheus_name_is_warned_once(tmp_path, promtool):
    telemetry = ops_telemetry(tmp_path)
    captured = Captured()
    logging.getLogger("rqa_otel.ops").addHandler(captured)  # rqa_otel's loggers write to stderr, not the root
    try:
        telemetry.meter.create_counter("rqa.dup.name", unit="{x}").add(1)
        telemetry.meter.create_up_down_counter("rqa_dup_name", unit="{x}").add(5)
        texts = [get(telemetry.ops_address, "/metrics")[2] for _ in range(3)]
        warnings = [message for message in captured.messages if "rqa_dup_name" in message]
        assert len(warnings) == 1, warnings
        assert "'rqa_dup_name'" in warnings[0] and "'rqa.dup.name'" in warnings[0]
        for text in texts:
            family = families(text)["rqa_dup_name"]
            assert family.type == "counter" and [s.value for s in family.samples if s.name.endswith("_total")] == [1]
        assert not [f for f in _promtool_findings(promtool, texts[-1]) if "rqa_dup" in f]
    finally:
        logging.getLogger("rqa_otel.ops").removeHandler(captured)
        telemetry.shutdown()

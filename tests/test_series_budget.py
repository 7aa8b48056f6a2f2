"""The series budget (docs/capacity.md): metric series in InfluxDB grow with
strategy x symbol x side x host, never with runs, processes or instances.

The main test runs 50 backtests of 20 symbols from 5 processes through the
project's own InfluxDB exporter into a real influxd (tests/series_runs.py);
the others check the guard for bad input (a per-run id on a metric, more
series than the limit) and the cumulative-to-delta step on the SDK's data.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

from rqa_otel import names
from rqa_otel.export.influx.exporter import InfluxSchema
from rqa_otel.export.influx.sdk_points import MetricsConverter
from rqa_otel.export.influx.series_budget import SeriesBudget, SeriesGuard, TagFilter

RUNS_SCRIPT = Path(__file__).with_name("series_runs.py")
DB = "rqa"
SYMBOLS, TRADES_PER_SYMBOL_AND_SIDE = 20, 3  # what series_runs.py trades per run
TRACE_MEASUREMENTS = {"spans", "logs", "span-links"}  # otel2influx tags these by trace id: bounded by retention


def _runs(influx, directory: Path, count: int, processes: int, *extra: str) -> None:
    """``count`` runs spread over ``processes`` processes at the same time."""
    shares = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    children = [
        subprocess.Popen(
            [sys.executable, str(RUNS_SCRIPT), "--influx", influx.url, "--db", DB, "--runs", str(share),
             "--symbols", str(SYMBOLS), "--directory", str(directory), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for share in shares if share
    ]
    for child, share in zip(children, shares):
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0 and out.count("done") == share, err[-2000:]


def _metric_series(influx) -> list[str]:
    results = influx.query("SHOW SERIES", DB)[0].get("series", [])
    keys = [row[0] for row in results[0]["values"]] if results else []
    return sorted(key for key in keys if key.split(",", 1)[0] not in TRACE_MEASUREMENTS)


def test_metric_series_after_50_runs_from_5_processes_equal_those_after_run_1(influxdb_v1, tmp_path):
    influxdb_v1.create_database(DB)
    _runs(influxdb_v1, tmp_path, 1, 1)
    after_first = _metric_series(influxdb_v1)
    # 40 series for each trade counter: 20 symbols x 2 sides, one strategy, one host.
    assert sum(key.startswith("rqa.trades,") for key in after_first) == SYMBOLS * 2
    _runs(influxdb_v1, tmp_path, 49, 5)
    after_fifty = _metric_series(influxdb_v1)
    assert after_fifty == after_first, sorted(set(after_fifty) - set(after_first))[:5]
    for key in after_fifty:
        assert "service.instance.id=" not in key and "process.pid=" not in key and "telemetry.sdk" not in key, key
    # The increments of 50 runs in 6 processes add up to every trade, once.
    [row] = influxdb_v1.points('SELECT sum("gauge") FROM "rqa.trades"', DB)
    assert row["sum"] == 50 * SYMBOLS * 2 * TRADES_PER_SYMBOL_AND_SIDE
    [row] = influxdb_v1.points('SELECT sum("count") FROM "rqa.trade.notional_per_trade"', DB)
    assert row["sum"] == 50 * SYMBOLS * 2 * TRADES_PER_SYMBOL_AND_SIDE
    # Per-run identity stays on the spans: one rqa.backtest span per run.
    runs = influxdb_v1.points("SELECT count(\"duration_nano\") FROM \"spans\" WHERE \"span.name\" = 'rqa.backtest'", DB)
    assert runs[0]["count"] == 50


def test_todays_schema_adds_series_every_run(influxdb_v1, tmp_path):
    """The anchor: with no budget (the Collector exporter's output without
    processors) each run is a new set of series."""
    influxdb_v1.create_database(DB)
    _runs(influxdb_v1, tmp_path, 1, 1, "--unbounded")
    first = len(_metric_series(influxdb_v1))
    _runs(influxdb_v1, tmp_path, 2, 2, "--unbounded")
    assert len(_metric_series(influxdb_v1)) == 3 * first


# --- the guard and the delta step, on the SDK's own data --------------------


def _meter(instance: str = "i-1"):
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=Resource.create({
        names.SERVICE_NAME: "s", names.SERVICE_INSTANCE_ID: instance, names.PROCESS_PID: 7, names.STRATEGY: "mom",
    }), metric_readers=[reader])
    return provider.get_meter("rqa_otel"), reader


def _parse(lines: list[str]) -> list[tuple[str, dict, dict]]:
    parsed = []
    for line in lines:
        head, fields, _ = line.rsplit(" ", 2)
        measurement, *tags = head.split(",")
        parsed.append((measurement, dict(t.split("=", 1) for t in tags), dict(f.split("=", 1) for f in fields.split(","))))
    return parsed


def test_a_per_run_id_on_a_metric_goes_to_the_overflow_series_with_one_warning(caplog):
    meter, reader = _meter()
    trades = meter.create_counter(names.TRADES_COUNTER)
    converter = MetricsConverter(budget=SeriesBudget())
    guard = converter._guard
    caplog.set_level(logging.WARNING, "rqa_otel.export")
    written = []
    for run in range(4):
        trades.add(2, {names.STOCK: "A", names.RUN_ID: f"run-{run}"})
        trades.add(1, {names.STOCK: "B", names.RUN_ID: f"run-{run}"})
        written += _parse(converter.lines(reader.get_metrics_data()))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'rqa.run.id'" in warnings[0] and names.TRADES_COUNTER in warnings[0], warnings
    series = {tuple(sorted(tags.items())) for _, tags, _ in written}
    assert len(series) == 1, series  # one overflow series, whatever the runs
    [tags] = [dict(s) for s in series]
    assert tags[names.METRIC_OVERFLOW] == "true" and names.RUN_ID not in tags and names.STOCK not in tags
    assert names.SERVICE_INSTANCE_ID not in tags and names.PROCESS_PID not in tags
    # Nothing lost: the increments of every series add up to every trade.
    assert sum(int(fields["gauge"].rstrip("i")) for _, _, fields in written) == 4 * 3
    assert guard.diverted == 8


def test_past_the_series_limit_the_excess_goes_to_overflow_and_nothing_fails(caplog):
    meter, reader = _meter()
    volume = meter.create_counter(names.TRADE_VOLUME_COUNTER)
    converter = MetricsConverter(budget=SeriesBudget(guard=SeriesGuard(limit=3)))
    caplog.set_level(logging.WARNING, "rqa_otel.export")
    for symbol in "ABCDEFG":
        volume.add(100, {names.STOCK: symbol, names.TRADE_SIDE: "buy"})
    rows = _parse(converter.lines(reader.get_metrics_data()))
    own = {tags[names.STOCK]: fields["gauge"] for _, tags, fields in rows if names.STOCK in tags}
    [overflow] = [fields for _, tags, fields in rows if names.METRIC_OVERFLOW in tags]
    assert len(own) == 3 and overflow["gauge"] == "400i"  # four symbols past the limit, added up
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"'{names.STOCK}'" in warnings[0] and "series_limit = 3" in warnings[0], warnings


def test_cumulative_sums_and_histograms_are_written_as_increments():
    meter, reader = _meter()
    trades = meter.create_counter(names.TRADES_COUNTER)
    notional = meter.create_histogram(names.TRADE_NOTIONAL_HISTOGRAM, explicit_bucket_boundaries_advisory=[100.0])
    converter = MetricsConverter(budget=SeriesBudget())
    increments, counts = [], []
    for value in (5, 0, 7):
        if value:
            trades.add(value, {names.STOCK: "A"})
            notional.record(50.0 * value)
        for measurement, _, fields in _parse(converter.lines(reader.get_metrics_data())):
            if measurement == names.TRADES_COUNTER:
                assert "counter" not in fields
                increments.append(int(fields["gauge"].rstrip("i")))
            else:
                counts.append(float(fields["count"]))
    assert increments == [5, 0, 7]
    assert counts == [1.0, 1.0]  # an interval with no new value writes no histogram point


def test_two_processes_share_series_and_their_increments_add_up():
    lines = []
    for instance in ("i-1", "i-2"):
        meter, reader = _meter(instance)
        meter.create_counter(names.TRADES_COUNTER).add(3, {names.STOCK: "A"})
        lines += _parse(MetricsConverter(budget=SeriesBudget()).lines(reader.get_metrics_data()))
    assert lines[0][1] == lines[1][1]  # the same series
    assert [fields["gauge"] for _, _, fields in lines] == ["3i", "3i"]


def test_the_budget_can_be_turned_off_for_the_collectors_plain_output():
    schema = InfluxSchema(metric_resource_exclude=(), metric_temporality="cumulative", series_limit=0, metric_exclude=())
    assert schema.budget() is None
    with pytest.raises(ValueError, match="metric_temporality"):
        InfluxSchema(metric_temporality="sometimes").budget()
    keep = TagFilter(["process.*", names.SERVICE_INSTANCE_ID])
    assert keep.keep({"process.pid": 1, "process.command": "x", names.SERVICE_INSTANCE_ID: "u", "host.name": "h"}) == {
        "host.name": "h"}


def test_increment_lines_are_the_general_writers_lines():
    """The budget's own writer for increments (each export moves their start
    time) writes what otel2influx's general path writes for the same point."""
    from rqa_otel.export.influx import otel2influx as o2i

    meter, reader = _meter()
    trades = meter.create_counter(names.TRADES_COUNTER)
    notional = meter.create_counter(names.TRADE_NOTIONAL_COUNTER)
    converter = MetricsConverter(budget=SeriesBudget())
    for step in range(3):
        trades.add(3, {names.STOCK: "A", names.TRADE_SIDE: "buy"})
        notional.add(1234.5 + step, {names.STOCK: "A=B, C", names.TRADE_SIDE: "sell"})
        lines = converter.lines(reader.get_metrics_data())
    assert len(lines) == 2
    for line in lines:
        _, field_text, ts = line.rsplit(" ", 2)
        measurement, ts = line.split(",", 1)[0], int(ts)
        fields = dict(f.split("=", 1) for f in field_text.split(","))
        start = int(fields["start_time_unix_nano"].rstrip("i"))
        value = int(fields["gauge"][:-1]) if fields["gauge"].endswith("i") else float(fields["gauge"])
        points = []
        series = {k: v for k, v in converter._routes[measurement].popitem()[1][2].items()}
        o2i.number_point(points.append, False, measurement, False, series, start, ts, value)
        assert o2i.line_strings(points) == [line]


def test_lp_series_budget_does_what_the_collector_processors_do():
    """OTLP-JSON requests of two processes (the demo's files, or a Collector's
    input): the per-process metric is dropped, the instance is no tag, the
    running totals become increments keyed by the whole stream."""
    from rqa_otel.export.influx.otel2influx import metrics_to_points
    from rqa_otel.export.influx.series_budget import OtlpJsonBudget

    def request(instance: str, total: int, ts: int) -> dict:
        resource = {"attributes": [{"key": "service.instance.id", "value": {"stringValue": instance}},
                                   {"key": "process.pid", "value": {"intValue": "7"}},
                                   {"key": "host.name", "value": {"stringValue": "h1"}}]}
        trades = {"name": "rqa.trades", "sum": {"aggregationTemporality": 2, "isMonotonic": True, "dataPoints": [
            {"attributes": [{"key": "rqa.stock", "value": {"stringValue": "A"}}], "startTimeUnixNano": "100",
             "timeUnixNano": str(ts), "asInt": str(total)}]}}
        cpu = {"name": "process.cpu.utilization", "gauge": {"dataPoints": [{"timeUnixNano": str(ts), "asDouble": 0.5}]}}
        return {"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"scope": {"name": "rqa_otel"}, "metrics": [trades, cpu]}]}]}

    budget = OtlpJsonBudget()
    points = []
    for instance, total, ts in (("i-1", 5, 1000), ("i-2", 2, 1001), ("i-1", 9, 2000)):
        points += metrics_to_points(budget.apply(request(instance, total, ts)))
    assert {p.measurement for p in points} == {"rqa.trades"}
    assert [(p.fields["gauge"], p.time_unix_nano) for p in points] == [(5, 1000), (2, 1001), (4, 2000)]
    assert all(p.tags == points[0].tags for p in points) and "service.instance.id" not in points[0].tags
    assert points[2].fields["start_time_unix_nano"] == 1000  # an increment starts at the previous point


def test_both_paths_write_the_same_bounded_points():
    """The in-process exporter (SDK objects) and the Collector's processors +
    exporter (OTLP JSON, as `rqa-otel lp --series-budget`) write the same
    points for the same data: two processes, two exports each, a counter, a
    gauge and a histogram."""
    from test_influx_exporter import _sdk_metrics

    from rqa_otel.export.influx.otel2influx import line_strings, metrics_to_points
    from rqa_otel.export.influx.series_budget import OtlpJsonBudget

    def attrs(**kv):
        return [{"key": k.replace("_", "."), "value": {"stringValue": v}} for k, v in kv.items()]

    def request(instance: str, step: int) -> dict:
        ts, start = str(10_000 * (step + 1) + len(instance)), "5"
        return {"resourceMetrics": [{
            "resource": {"attributes": attrs(service_name="s", host_name="h1") + [
                {"key": "service.instance.id", "value": {"stringValue": instance}},
                {"key": "process.pid", "value": {"intValue": "42"}}]},
            "scopeMetrics": [{"scope": {"name": "rqa_otel", "version": "1"}, "metrics": [
                {"name": "rqa.trades", "sum": {"aggregationTemporality": 2, "isMonotonic": True, "dataPoints": [
                    {"attributes": attrs(rqa_stock="A"), "startTimeUnixNano": start, "timeUnixNano": ts, "asInt": str(3 * (step + 1))}]}},
                {"name": "rqa.portfolio.value", "gauge": {"dataPoints": [
                    {"attributes": attrs(rqa_strategy="m"), "timeUnixNano": ts, "asDouble": 1e6 + step}]}},
                {"name": "rqa.trade.notional_per_trade", "histogram": {"aggregationTemporality": 2, "dataPoints": [
                    {"attributes": [], "startTimeUnixNano": start, "timeUnixNano": ts, "count": str(step + 1),
                     "sum": 100.0 * (step + 1), "bucketCounts": ["0", str(step + 1)], "explicitBounds": [10.0],
                     "min": 100.0, "max": 100.0}]}},
                {"name": "process.cpu.utilization", "gauge": {"dataPoints": [{"timeUnixNano": ts, "asDouble": 0.1}]}},
            ]}],
        }]}

    in_process, collector = [], []
    json_budget = OtlpJsonBudget()
    for instance in ("i-1", "i-22"):
        converter = MetricsConverter(budget=SeriesBudget())  # one per process
        for step in range(2):
            in_process += converter.lines(_sdk_metrics(request(instance, step)))
            collector += line_strings(metrics_to_points(json_budget.apply(request(instance, step))))
    assert sorted(in_process) == sorted(collector)
    assert len(in_process) == 2 * 2 * 3 and not any("instance" in line or "process" in line for line in in_process)

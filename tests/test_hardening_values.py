"""One bad value costs at most its own point (issue 14, item 1).

At the edge, the recording calls refuse text no series or tag can carry
(a ValueError naming the field). Behind the edge, values that come in by
other public paths (an SDK counter, ``log_event``, a span name) are checked
by the encoders point by point: against a real influxd, a bad value beside
2,000 good trades, then later metric exports, and every good point arrives.
"""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from rqa_otel import names
from rqa_otel.export.dropped import DROPPED_POINTS
from rqa_otel.export.otlp.encoding import encode_metrics
from rqa_otel.export.otlp.log_encoding import LogsEncoder
from rqa_otel.quant import quant_context
from rqa_otel.trading.monitor import BacktestMonitor

BAD = "000001.SZ\r"


def test_recording_calls_refuse_text_no_tag_can_carry(file_telemetry, tmp_path) -> None:
    telemetry = file_telemetry()
    monitor = BacktestMonitor(telemetry, journal_path=tmp_path / "trades.db")
    with pytest.raises(ValueError, match=r"^symbol '000001\.SZ\\r': holds '\\r'"):
        monitor.record_trade(BAD, "buy", 10.0, 100, "s")
    with pytest.raises(ValueError, match=r"^strategy 'a\\nb'"):
        monitor.record_trade("600000.SH", "buy", 10.0, 100, "a\nb")
    with pytest.raises(ValueError, match=r"^symbol '\\x1b\[31m'"):
        monitor.record_trade("\x1b[31m", "sell", 10.0, 100, "s")
    with pytest.raises(ValueError, match="^symbol"):
        monitor.record_trade("x\u2028y", "sell", 10.0, 100, "s")
    with pytest.raises(ValueError, match=r"^positions symbol"):
        monitor.record_portfolio(1.0, 1.0, {"a\tb": 1}, "s")
    with pytest.raises(ValueError, match=r"^strategy"):
        with monitor.run("s\x00"):
            pass
    # Nothing of a refused trade is recorded; a good one after it is.
    monitor.record_trade("600000.SH", "buy", 10.0, 100, "s")
    assert [(t.symbol, t.strategy) for t in monitor.get_trade_history()] == [("600000.SH", "s")]
    # Printable text of any script passes.
    monitor.record_trade("贵州茅台 600519.SH", "buy", 10.0, 100, "双均线 策略")
    monitor.close()

    with pytest.raises(ValueError, match=r"^stock 'a\\nb'"):
        with quant_context(stock="a\nb"):
            pass
    with pytest.raises(ValueError, match=r"^alert name 'x\\ny'"):
        telemetry.alert("x\ny", "warning")
    with pytest.raises(ValueError, match=r"^strategy"):
        telemetry.alert("quota", "warning", strategy="s\r")


def test_otlp_encoders_keep_every_encodable_point() -> None:
    """A value the protobuf cannot hold (a lone surrogate) costs its own data
    point; in a log record it is written as U+FFFD (valid UTF-8)."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("good").create_counter("c").add(1, {"k": "v"})
    provider.get_meter("bad\udc00").create_counter("c").add(1)
    before = DROPPED_POINTS.snapshot().get(("metrics", "invalid_value"), 0)
    for _ in range(2):  # and at the next collection too
        (payload,) = encode_metrics(reader.get_metrics_data())
        assert payload.items == 1
    assert DROPPED_POINTS.snapshot()[("metrics", "invalid_value")] == before + 2

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from rqa_otel.export.otlp.encoding import encode_spans

    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    for name in ("good 1", "bad \ud800", "good 2"):
        with tracer_provider.get_tracer("t").start_as_current_span(name):
            pass
    (span_payload,) = encode_spans(spans.get_finished_spans())
    assert span_payload.items == 2 and b"good 1" in span_payload.body and b"good 2" in span_payload.body

    body = LogsEncoder({}).encode([(1, 20, "lg", "m\ud800", {"a": "x\udfff"}, 0, 0, 0)], 2)
    body.decode("utf-8")  # strict: a receiver would refuse invalid UTF-8
    assert "m\ufffd".encode() in body and "x\ufffd".encode() in body


def test_a_series_attribute_with_a_lone_surrogate_is_written_as_fffd(caplog) -> None:
    """Made encodable where the series is made (once), not dropped by the
    OTLP encoder with a traceback at every export."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from rqa_otel.export.scrubbing import scrubbing_view
    from rqa_otel.scrub import Scrubber

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], views=[scrubbing_view(Scrubber())])
    provider.get_meter("m").create_counter("c").add(1, {"a": "x\udc00"})
    with caplog.at_level(logging.DEBUG):
        (payload,) = encode_metrics(reader.get_metrics_data())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    request = ExportMetricsServiceRequest.FromString(payload.body)
    (point,) = request.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points
    assert [(kv.key, kv.value.string_value) for kv in point.attributes] == [("a", "x\ufffd")]


def _influx_settings(url: str, **more) -> dict:
    return {
        "export.traces": "influxdb", "export.metrics": "influxdb", "export.logs": "influxdb",
        "export.metric_interval_s": 3600,  # exports happen at force_flush
        "export.influxdb": {
            "url": url, "v1_compatibility": True, "db": "rqa",
            # as docs/influxdb.md recommends: the quant fields as tags
            "log_record_dimensions": ["service.name", "rqa.strategy", "rqa.stock"],
            **more,
        },
    }


def test_bad_values_beside_2000_good_trades_into_real_influxdb(file_telemetry, influxdb_v1, tmp_path) -> None:
    influxdb_v1.create_database("rqa")
    telemetry = file_telemetry(overrides=_influx_settings(influxdb_v1.url), strategy="dual_ma")
    monitor = BacktestMonitor(telemetry, journal_path=tmp_path / "trades.db")
    with pytest.raises(ValueError, match="^symbol"):
        monitor.record_trade(BAD, "buy", 10.0, 100, "dual_ma")
    # Past the edge: public paths that do not check per call.
    telemetry.meter.create_counter("orders").add(1, {names.STOCK: BAD})
    telemetry.log_event(names.TRADE_EVENT, "forged", {names.STRATEGY: "dual_ma", names.STOCK: BAD})
    with telemetry.tracer.start_as_current_span("bad\nspan"):
        pass
    with telemetry.tracer.start_as_current_span("span", attributes={"service.name": "x\r"}):
        pass
    for i in range(2000):
        monitor.record_trade(f"{600000 + i % 50}.SH", "buy", 10.0 + i, 100, "dual_ma", timestamp=1_700_000_000_000_000_000 + i)
    with telemetry.tracer.start_as_current_span("good span"):
        pass
    telemetry.meter.create_counter("orders").add(1, {names.STOCK: "600000.SH"})
    assert telemetry.force_flush()

    def count(query: str) -> int:
        rows = influxdb_v1.points(query, db="rqa")
        return sum(row["count"] for row in rows)

    assert count("""SELECT count("body") FROM "logs" WHERE "attributes" =~ /rqa.trade.side/""") == 2000
    def trades_counted() -> float:
        # Counters reach InfluxDB as increments (the series budget's default).
        rows = influxdb_v1.points("""SELECT sum("gauge") FROM "rqa.trades" GROUP BY *""", db="rqa")
        return sum(row["sum"] for row in rows)

    assert trades_counted() == 2000
    assert count("""SELECT count("gauge") FROM "orders" WHERE "rqa.stock" = '600000.SH'""") == 1
    spans = influxdb_v1.points("""SELECT * FROM "spans" """, db="rqa")
    # A span name is a string field: a newline in it is carried as it is.
    assert {row.get("span.name") for row in spans} >= {"good span", "bad\nspan"}
    assert "span" not in {row.get("span.name") for row in spans}  # its service.name tag could not be written

    # Later exports: the bad series is still there, the rest keeps arriving.
    for i in range(500):
        monitor.record_trade("600000.SH", "sell", 10.0, 100, "dual_ma", timestamp=1_700_000_001_000_000_000 + i)
    assert telemetry.force_flush()
    assert trades_counted() == 2500
    drops = influxdb_v1.points(f"""SELECT sum("gauge") FROM "{names.EXPORT_POINTS_DROPPED_COUNTER}" GROUP BY *""", db="rqa")
    reasons = {(row[names.EXPORT_SIGNAL], row[names.EXPORT_DROP_REASON]) for row in drops}
    assert {("metrics", "invalid_name"), ("logs", "invalid_name"), ("traces", "invalid_name")} <= reasons
    monitor.close()


def test_drop_is_reported_once_without_the_value(caplog) -> None:
    from rqa_otel.export.dropped import DroppedPoints

    drops = DroppedPoints()
    with caplog.at_level(logging.WARNING, logger="rqa_otel.export"):
        drops.add("logs", "invalid_name", "value of tag 'rqa.stock'")
        drops.add("logs", "invalid_name", "value of tag 'rqa.stock'")
    assert len(caplog.records) == 1 and names.EXPORT_POINTS_DROPPED_COUNTER in caplog.records[0].getMessage()
    assert drops.snapshot() == {("logs", "invalid_name"): 2}

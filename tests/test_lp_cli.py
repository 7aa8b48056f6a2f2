"""``rqa-otel lp``: the project's real file exporter output to line protocol."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

import rqa_otel
from rqa_otel.cli.lp import add_lp_parser, run_lp
from test_otel2influx_conformance import parse_line_protocol


def _parse_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rqa-otel")
    add_lp_parser(parser.add_subparsers())
    return parser.parse_args(["lp", *argv])


def _run(*argv: str) -> tuple[int, bytes, str]:
    out, err = io.BytesIO(), io.StringIO()
    args = _parse_args(*argv)
    assert args.handler is run_lp
    status = args.handler(args, stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The files rqa-otel's own file exporter writes for a span with events,
    a counter and a warning log record."""
    directory = tmp_path_factory.mktemp("telemetry")
    telemetry = rqa_otel.setup(overrides={"export.directory": str(directory)}, set_global=False)
    try:
        counter = telemetry.meter.create_counter("lp.test.orders")
        with telemetry.tracer.start_as_current_span("lp.test.rebalance") as span:
            span.add_event("order.sent", {"rqa.stock": "600000.SH", "quantity": 100})
            span.add_event("order.filled", {"price": 10.5})
            counter.add(3, {"rqa.signal": "BUY"})
            telemetry.get_logger("x").warning("filled %s", "600000.SH")
    finally:
        assert telemetry.shutdown()
    files = sorted(directory.glob("*.jsonl"))
    assert {f.name for f in files} == {"traces.jsonl", "metrics.jsonl", "logs.jsonl"}
    return directory


def _files(directory: Path) -> list[str]:
    return [str(p) for p in sorted(directory.glob("*.jsonl"))]


def test_lp_converts_the_file_exporters_output(exported: Path) -> None:
    status, out, err = _run(*_files(exported))
    assert status == 0, err
    assert err == ""
    points = parse_line_protocol(out)
    by_measurement: dict[str, list] = {}
    for measurement, tags, fields, ts in points:
        by_measurement.setdefault(measurement, []).append((tags, fields, ts))

    (span_tags, span_fields, span_ts), = by_measurement["spans"]
    assert span_fields["span.name"] == ("string", "lp.test.rebalance")
    assert span_fields["span.kind"] == ("string", "Internal")
    assert span_fields["duration_nano"][0] == "int" and span_fields["duration_nano"][1] > 0
    assert span_tags["service.name"] == rqa_otel.load_settings().service.name
    assert len(span_tags["trace_id"]) == 32 and len(span_tags["span_id"]) == 16
    resource = json.loads(span_fields["attributes"][1])
    assert resource["telemetry.sdk.language"] == "python" and "service.name" not in resource

    events = [e for e in by_measurement["logs"] if "event.name" in e[1]]
    assert [e[1]["event.name"][1] for e in events] == ["order.sent", "order.filled"]
    assert json.loads(events[0][1]["attributes"][1]) == {"quantity": 100, "rqa.stock": "600000.SH"}
    assert all(e[0] == {"trace_id": span_tags["trace_id"], "span_id": span_tags["span_id"]} for e in events)
    assert all(e[2] >= span_ts for e in events)

    (counter_tags, counter_fields, _), = by_measurement["lp.test.orders"]
    assert counter_fields["counter"] == ("int", 3)
    assert counter_tags["rqa.signal"] == "BUY" and counter_tags["otel.library.name"] == "rqa_otel"
    # The SDK attached an exemplar (the counter was added inside the span).
    (exemplar_tags, exemplar_fields, _), = by_measurement["lp.test.orders_exemplar"]
    assert exemplar_tags["trace_id"] == span_tags["trace_id"] and exemplar_fields == {"gauge": ("int", 3)}

    records = [r for r in by_measurement["logs"] if "body" in r[1]]
    (record_tags, record_fields, _), = [r for r in records if r[1]["body"] == ("string", "filled 600000.SH")]
    assert record_fields["severity_text"] == ("string", "WARN")
    assert record_fields["severity_number"] == ("int", 13)
    assert record_tags["trace_id"] == span_tags["trace_id"]
    assert json.loads(record_fields["attributes"][1])["rqa.stock"] == "N/A"


def test_lp_options(exported: Path) -> None:
    status, out, err = _run(
        "--schema", "telegraf-prometheus-v2", "--span-dimensions", "", "--log-record-dimensions", "rqa.strategy,host.name",
        *_files(exported),
    )
    assert status == 0, err
    points = parse_line_protocol(out)
    counters = [p for p in points if p[0] == "prometheus" and "lp.test.orders" in p[2]]
    assert len(counters) == 1 and counters[0][2]["lp.test.orders"] == ("int", 3)
    (spans,) = [p for p in points if p[0] == "spans"]
    assert set(spans[1]) == {"trace_id", "span_id"}
    records = [p for p in points if p[0] == "logs" and "body" in p[2]]
    assert records and all({"rqa.strategy", "host.name"} <= set(p[1]) for p in records)


def test_lp_reports_bad_lines_and_converts_the_rest(exported: Path, tmp_path: Path) -> None:
    good = (exported / "metrics.jsonl").read_text().splitlines()[0]
    bad_span = json.dumps(
        {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz", "spanId": "00f067aa0ba902b7", "name": "s"}]}]}]}
    )
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join([good, "{not json", "", '{"resourceWidgets": []}', bad_span, "{}", good]) + "\n")
    status, out, err = _run(str(mixed), str(tmp_path / "missing.jsonl"))
    assert status == 1
    lines = err.splitlines()
    assert lines[0].startswith(f"{mixed}:2: not JSON")
    assert lines[1].startswith(f"{mixed}:4: not an OTLP export request") and "resourceWidgets" in lines[1]
    assert lines[2].startswith(f"{mixed}:5: resourceSpans[0].scopeSpans[0].spans[0] ('s'): traceId: expected 32 hex digits")
    assert lines[3].startswith(f"{tmp_path / 'missing.jsonl'}: cannot read")
    assert "4 line(s) or file(s) could not be converted" in lines[4]
    # Lines 1 and 7 (the same request) were converted.
    points = parse_line_protocol(out)
    assert len([p for p in points if p[0] == "lp.test.orders"]) == 2


def test_lp_argument_errors() -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse_args("--schema", "otel-v1", "x.jsonl")
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        _parse_args("--span-dimensions", "a,a", "x.jsonl")
    with pytest.raises(SystemExit):
        _parse_args()  # FILE is required


def test_lp_output_is_accepted_by_influxdb(exported: Path, influxdb_v1) -> None:
    """The real exporter's telemetry, converted, is written to a real InfluxDB 1.x."""
    status, out, err = _run(*_files(exported))
    assert status == 0, err
    # InfluxDB 1.6 has no uint fields; this data has none (no dropped counts).
    assert all(kind != "uint" for p in parse_line_protocol(out) for kind, _ in p[2].values())
    influxdb_v1.create_database("rqa")
    influxdb_v1.write(out.decode(), db="rqa")
    rows = influxdb_v1.points('SELECT * FROM "spans"', db="rqa", epoch="ns")
    assert [row["span.name"] for row in rows] == ["lp.test.rebalance"]
    rows = influxdb_v1.points('SELECT "counter", "rqa.signal" FROM "lp.test.orders"', db="rqa")
    assert [(row["counter"], row["rqa.signal"]) for row in rows] == [(3, "BUY")]

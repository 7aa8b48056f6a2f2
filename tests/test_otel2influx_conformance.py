"""rqa_otel.export.influx.otel2influx against the otel2influx conformance cases.

Each case in tests/conformance/otel2influx/ (see its README) is an OTLP JSON
request and the points the Collector's influxdb exporter writes for it. Every
case is checked three ways: the points themselves; the points after a trip
through ``to_line_protocol`` and the strict parser below; and the points as a
real InfluxDB 1.x stores them. Further tests pin the rules the cases do not
reach (exemplars, dropped events and links, escaping, errors).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from rqa_otel.export.influx.otel2influx import (
    DEFAULT_LOG_RECORD_DIMENSIONS,
    DEFAULT_SPAN_DIMENSIONS,
    METRICS_SCHEMAS,
    Point,
    UInt,
    field_type,
    logs_to_points,
    metrics_to_points,
    to_line_protocol,
    traces_to_points,
)
from rqa_otel.export.influx.otel2influx import go_format

CASES_DIR = Path(__file__).resolve().parent / "conformance" / "otel2influx"
CASE_FILES = sorted(CASES_DIR.glob("*.json"))


def load_case(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def convert(case: dict[str, Any]) -> list[Point]:
    schema, config = case["schema"], case.get("config", {})
    if schema in METRICS_SCHEMAS:
        return metrics_to_points(case["input"], schema)
    if schema == "traces":
        return traces_to_points(case["input"], config.get("span_dimensions", DEFAULT_SPAN_DIMENSIONS))
    if schema == "logs":
        return logs_to_points(case["input"], config.get("log_record_dimensions", DEFAULT_LOG_RECORD_DIMENSIONS))
    raise AssertionError(f"unknown schema {schema!r}")


# --- comparable forms ---------------------------------------------------------------


def _frozen(value: Any) -> Any:
    """A hashable form of a parsed JSON value; floats stay floats, ints ints."""
    if isinstance(value, dict):
        return ("object", tuple(sorted((k, _frozen(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("array", tuple(_frozen(v) for v in value))
    return (type(value).__name__, value)


def _typed(kind: str, value: Any, is_json: bool) -> tuple:
    if kind in ("int", "uint"):
        assert type(value) is int, f"{kind} value {value!r} must be an exact integer"
        return (kind, value)
    if kind == "float":
        assert type(value) in (int, float)
        return (kind, float(value))
    if kind == "string" and is_json:
        return ("json", _frozen(json.loads(value)))
    return (kind, value)


def expected_key(point: dict[str, Any]) -> tuple:
    fields = tuple(
        sorted((k, _typed(f["type"], f["value"], bool(f.get("json")))) for k, f in point["fields"].items())
    )
    return (point["measurement"], tuple(sorted(point["tags"].items())), fields, int(point["time_unix_nano"]))


def point_key(point: Point, json_fields: set[str]) -> tuple:
    fields = []
    for key, value in point.fields.items():
        kind = field_type(value)
        fields.append((key, _typed(kind, int(value) if kind == "uint" else value, key in json_fields)))
    return (point.measurement, tuple(sorted(point.tags.items())), tuple(sorted(fields)), point.time_unix_nano)


def json_fields_of(case: dict[str, Any]) -> set[str]:
    return {k for p in case["expected"] for k, f in p["fields"].items() if f.get("json")}


def assert_same_points(actual: list[tuple], expected: list[tuple]) -> None:
    missing = Counter(expected) - Counter(actual)
    extra = Counter(actual) - Counter(expected)
    assert not missing and not extra, f"\nmissing: {list(missing)}\nunexpected: {list(extra)}"


# --- a strict line-protocol parser ----------------------------------------------------


class LineProtocolSyntaxError(AssertionError):
    pass


def _read_name(text: str, i: int, stops: str, escapable: str, what: str) -> tuple[str, int]:
    """Read up to an unescaped character of ``stops``; only ``escapable``
    characters may follow a backslash as an escape (a backslash before any
    other character is a literal backslash, as InfluxDB reads it)."""
    out = []
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in escapable:
            out.append(text[i + 1])
            i += 2
            continue
        if c in stops:
            break
        if c in escapable or ord(c) < 0x20 or c == "\x7f":
            raise LineProtocolSyntaxError(f"unescaped {c!r} in {what} at {i}: {text!r}")
        out.append(c)
        i += 1
    if not out:
        raise LineProtocolSyntaxError(f"empty {what} at {i}: {text!r}")
    return "".join(out), i


def _read_field_value(text: str, i: int) -> tuple[tuple[str, Any], int]:
    if text[i] == '"':
        out = []
        i += 1
        while True:
            if i >= len(text):
                raise LineProtocolSyntaxError(f"unterminated string: {text!r}")
            c = text[i]
            if c == "\\":
                if i + 1 >= len(text) or text[i + 1] not in '"\\':
                    raise LineProtocolSyntaxError(f"bad escape in string at {i}: {text!r}")
                out.append(text[i + 1])
                i += 2
            elif c == '"':
                return ("string", "".join(out)), i + 1
            else:
                out.append(c)
                i += 1
    j = i
    while j < len(text) and text[j] not in ", ":
        j += 1
    token = text[i:j]
    if token in ("t", "T", "true", "True", "TRUE"):
        return ("bool", True), j
    if token in ("f", "F", "false", "False", "FALSE"):
        return ("bool", False), j
    if token.endswith(("i", "u")):
        digits = token[:-1]
        if not digits.lstrip("-").isdigit() or (token[-1] == "u" and digits.startswith("-")):
            raise LineProtocolSyntaxError(f"bad integer {token!r}")
        value = int(digits)
        if token[-1] == "i":
            assert -(1 << 63) <= value < (1 << 63)
            return ("int", value), j
        assert 0 <= value < (1 << 64)
        return ("uint", value), j
    try:
        value = float(token)
    except ValueError:
        raise LineProtocolSyntaxError(f"bad field value {token!r}") from None
    if not math.isfinite(value) or token.lower() in ("nan", "inf", "+inf", "-inf", "infinity"):
        raise LineProtocolSyntaxError(f"non-finite float {token!r}")
    return ("float", value), j


def parse_line_protocol(data: bytes) -> list[tuple[str, dict[str, str], dict[str, tuple[str, Any]], int]]:
    """Parse what to_line_protocol writes: every line ends in a newline and has
    a timestamp; tags are sorted and unique; fields unique."""
    text = data.decode("utf-8")
    assert text == "" or text.endswith("\n"), "the last line must end in a newline"
    points = []
    for line in _split_lines(text):
        measurement, i = _read_name(line, 0, ", ", ", ", "measurement")
        tags: dict[str, str] = {}
        previous = ""
        while line[i] == ",":
            key, i = _read_name(line, i + 1, "=", ",= ", "tag key")
            if line[i] != "=":
                raise LineProtocolSyntaxError(f"tag {key!r} has no value: {line!r}")
            value, i = _read_name(line, i + 1, ", ", ",= ", "tag value")
            if key <= previous:
                raise LineProtocolSyntaxError(f"tags not sorted or repeated at {key!r}: {line!r}")
            tags[key], previous = value, key
        if line[i] != " ":
            raise LineProtocolSyntaxError(f"expected a space before the fields: {line!r}")
        fields: dict[str, tuple[str, Any]] = {}
        separator = " "
        while line[i] == separator or (separator == "," and line[i] == ","):
            key, i = _read_name(line, i + 1, "=", ",= ", "field key")
            if line[i] != "=":
                raise LineProtocolSyntaxError(f"field {key!r} has no value: {line!r}")
            if key in fields:
                raise LineProtocolSyntaxError(f"field {key!r} repeated: {line!r}")
            fields[key], i = _read_field_value(line, i + 1)
            separator = ","
            if line[i] == " ":
                break
        if line[i] != " ":
            raise LineProtocolSyntaxError(f"expected a space before the timestamp: {line!r}")
        timestamp = line[i + 1 :]
        if not timestamp.lstrip("-").isdigit():
            raise LineProtocolSyntaxError(f"bad timestamp {timestamp!r}: {line!r}")
        points.append((measurement, tags, fields, int(timestamp)))
    return points


def _split_lines(text: str) -> list[str]:
    """Lines end at a newline outside a quoted string field value (InfluxDB
    accepts raw newlines inside string fields)."""
    lines, start, quoted, i = [], 0, False, 0
    in_fields = False
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] != "\n":
            i += 2
            continue
        if c == " " and not quoted:
            in_fields = True
        elif c == '"' and in_fields and text[i - 1] == "=":
            quoted = True
        elif c == '"' and quoted:
            quoted = False
        elif c == "\n" and not quoted:
            lines.append(text[start:i])
            start, in_fields = i + 1, False
        i += 1
    assert start == len(text), "unterminated last line"
    return lines


def parsed_key(parsed: tuple, json_fields: set[str]) -> tuple:
    measurement, tags, fields, ts = parsed
    typed = tuple(sorted((k, _typed(kind, value, k in json_fields)) for k, (kind, value) in fields.items()))
    return (measurement, tuple(sorted(tags.items())), typed, ts)


# --- the cases ----------------------------------------------------------------------


def test_cases_are_present() -> None:
    assert len(CASE_FILES) >= 14, "tests/conformance/otel2influx/*.json is missing"
    assert (CASES_DIR / "README.md").is_file()


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: p.stem)
def test_conformance_case(path: Path) -> None:
    case = load_case(path)
    json_fields = json_fields_of(case)
    points = convert(case)
    expected = [expected_key(p) for p in case["expected"]]

    assert_same_points([point_key(p, json_fields) for p in points], expected)
    # The emission order is otel2influx's (a span's events, its links, the span).
    assert [p.measurement for p in points] == [p["measurement"] for p in case["expected"]]

    # JSON-valued fields hold what Go's json.Marshal writes: sorted keys, no spaces.
    for point in points:
        for key in json_fields & point.fields.keys():
            text = point.fields[key]
            assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    # Through line protocol and back.
    parsed = parse_line_protocol(to_line_protocol(points))
    assert_same_points([parsed_key(p, json_fields) for p in parsed], expected)


# --- a real InfluxDB 1.x ---------------------------------------------------------------


def _for_influxdb_16(points: list[Point]) -> list[Point]:
    """Debian's InfluxDB is 1.6, which knows int (``12i``) but not uint
    (``12u``, added in 1.8 behind a flag and standard in 2.x): here only,
    uint fields are written as int. Their values are small counts."""
    return [
        Point(p.measurement, p.tags, {k: int(v) if type(v) is UInt else v for k, v in p.fields.items()}, p.time_unix_nano)
        for p in points
    ]


def _influx_column(key: str, value: Any, json_fields: set[str]) -> Any:
    """A value as compared with what InfluxDB returns: JSON text parsed; a
    float as float (InfluxDB's JSON writes 144320.0 as 144320); ints as they are."""
    if key in json_fields and isinstance(value, str):
        return _frozen(json.loads(value))
    if isinstance(value, float):
        return float(value)
    return value


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: p.stem)
def test_conformance_case_in_influxdb(path: Path, influxdb_v1) -> None:
    """The line protocol of every case is accepted by a real InfluxDB 1.x and
    reads back (SELECT *) with its tags, typed field values and timestamps."""
    case = load_case(path)
    json_fields = json_fields_of(case)
    points = convert(case)
    influxdb_v1.create_database("otel")
    influxdb_v1.write(to_line_protocol(_for_influxdb_16(points)).decode(), db="otel")

    for measurement in sorted({p.measurement for p in points}):
        rows = influxdb_v1.points(f'SELECT * FROM "{measurement}"', db="otel", epoch="ns")
        stored = Counter()
        for row in rows:
            assert row.pop("_measurement") == measurement
            ts = row.pop("time")
            columns = {k: _influx_column(k, v, json_fields) for k, v in row.items() if v is not None}
            stored[(ts, tuple(sorted(columns.items())))] += 1
        wanted = Counter()
        for expected in case["expected"]:
            if expected["measurement"] != measurement:
                continue
            columns = dict(expected["tags"])
            for key, field in expected["fields"].items():
                value = float(field["value"]) if field["type"] == "float" else field["value"]
                columns[key] = _influx_column(key, value, json_fields)
            wanted[(int(expected["time_unix_nano"]), tuple(sorted(columns.items())))] += 1
        assert stored == wanted, f"{measurement}:\nstored {stored}\nwanted {wanted}"
        # int fields are stored as integers (the JSON of the query keeps them exact).
        for row in rows:
            for expected in case["expected"]:
                for key, field in expected["fields"].items():
                    if field["type"] in ("int", "uint") and row.get(key) is not None:
                        assert type(row[key]) is int


def test_escaping_round_trips_through_influxdb(influxdb_v1) -> None:
    """Measurement, tag and field names with commas, spaces and equals signs,
    string values with quotes, backslashes and newlines, floats in exponent
    form: InfluxDB stores what the points hold."""
    fields = {
        "text": 'say "hi"\\ to C:\\dir\\\nnext line\ttab, =',
        "field key, =": 1.0,
        "big": 1e16,
        "tiny": 1e-07,
        "neg": -42,
        "flag": False,
        "unicode": "股票 ✓",
    }
    point = Point("my meas,x", {"tag key, =": "v a,l=ue", "empty": "", "b": "股票"}, fields, 1_700_000_000_000_000_001)
    body = to_line_protocol([point])
    assert b"empty" not in body  # empty tag values are left out, as the Collector does
    influxdb_v1.create_database("esc")
    influxdb_v1.write(body.decode(), db="esc")
    rows = influxdb_v1.points('SELECT * FROM "my meas,x"', db="esc", epoch="ns")
    assert len(rows) == 1
    row = rows[0]
    assert row["time"] == 1_700_000_000_000_000_001
    assert row["tag key, ="] == "v a,l=ue" and row["b"] == "股票"
    assert row["text"] == fields["text"]
    assert row["field key, ="] == 1.0 and row["big"] == 1e16 and row["tiny"] == 1e-07
    assert row["neg"] == -42 and row["flag"] is False and row["unicode"] == "股票 ✓"
    parsed = parse_line_protocol(body)
    assert parsed == [
        (
            "my meas,x",
            {"b": "股票", "tag key, =": "v a,l=ue"},
            {
                "text": ("string", fields["text"]),
                "field key, =": ("float", 1.0),
                "big": ("float", 1e16),
                "tiny": ("float", 1e-07),
                "neg": ("int", -42),
                "flag": ("bool", False),
                "unicode": ("string", "股票 ✓"),
            },
            1_700_000_000_000_000_001,
        )
    ]


# --- rules the cases do not reach -----------------------------------------------------

T0 = 1_700_000_000_000_000_000


def _kv(key: str, value: Any) -> dict:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": value}}


def _metrics(*metrics: dict, resource: list | None = None) -> dict:
    return {
        "resourceMetrics": [
            {"resource": {"attributes": resource or []}, "scopeMetrics": [{"scope": {"name": "s"}, "metrics": list(metrics)}]}
        ]
    }


def _spans(*spans: dict, resource: list | None = None) -> dict:
    return {"resourceSpans": [{"resource": {"attributes": resource or []}, "scopeSpans": [{"scope": {}, "spans": list(spans)}]}]}


TRACE_ID = "5B8EFFF798038103D269B633813FC60C"
SPAN_ID = "EEE19B7EC3C1B174"


def _span(**extra: Any) -> dict:
    span = {"traceId": TRACE_ID, "spanId": SPAN_ID, "name": "s", "kind": 1, "startTimeUnixNano": str(T0)}
    span.update(extra)
    return span


def test_v1_exemplars_become_their_own_measurement() -> None:
    exemplar = {
        "timeUnixNano": str(T0 - 5),
        "asInt": "3",
        "traceId": TRACE_ID,
        "spanId": SPAN_ID,
        "filteredAttributes": [_kv("user", "u1")],
    }
    no_ids = {"timeUnixNano": str(T0 - 4), "asDouble": 1.5}
    metric = {
        "name": "trades",
        "sum": {
            "dataPoints": [{"timeUnixNano": str(T0), "asInt": "3", "exemplars": [exemplar, no_ids]}],
            "aggregationTemporality": 2,
            "isMonotonic": True,
        },
    }
    points = metrics_to_points(_metrics(metric))
    assert [(p.measurement, p.tags, p.fields, p.time_unix_nano) for p in points] == [
        ("trades", {"otel.library.name": "s"}, {"counter": 3}, T0),
        (
            "trades_exemplar",
            {"user": "u1", "trace_id": TRACE_ID.lower(), "span_id": SPAN_ID.lower()},
            {"gauge": 3},
            T0 - 5,
        ),
    ]
    # v2 writes no exemplars.
    assert [p.measurement for p in metrics_to_points(_metrics(metric), "telegraf-prometheus-v2")] == ["prometheus"]


def test_v2_histogram_with_inf_bucket_and_summary() -> None:
    histogram = {
        "name": "lat",
        "histogram": {
            "dataPoints": [
                {
                    "timeUnixNano": str(T0),
                    "count": "6",
                    "sum": 7.5,
                    "min": 0.5,
                    "max": 4.0,
                    "bucketCounts": ["1", "2", "3"],
                    "explicitBounds": [1.0, 2.5],
                }
            ],
            "aggregationTemporality": 1,
        },
    }
    summary = {
        "name": "rpc",
        "summary": {"dataPoints": [{"timeUnixNano": str(T0), "count": "2", "sum": 3.0, "quantileValues": [{"quantile": 0.5, "value": 1.0}]}]},
    }
    points = metrics_to_points(_metrics(histogram, summary), "telegraf-prometheus-v2")
    assert [(p.tags.get("le") or p.tags.get("quantile"), p.fields) for p in points] == [
        (None, {"lat_count": 6.0, "lat_sum": 7.5, "lat_min": 0.5, "lat_max": 4.0}),
        ("1", {"lat_bucket": 1.0}),
        ("2.5", {"lat_bucket": 3.0}),
        ("+Inf", {"lat_bucket": 6.0}),
        (None, {"rpc_count": 2.0, "rpc_sum": 3.0}),
        ("0.5", {"rpc": 1.0}),
    ]
    assert all(p.measurement == "prometheus" for p in points)


def test_metric_errors_name_the_field() -> None:
    gauge = {"name": "g", "gauge": {"dataPoints": [{"timeUnixNano": str(T0), "asDouble": 1.0}]}}
    with pytest.raises(ValueError, match="telegraf-prometheus-v1, telegraf-prometheus-v2"):
        metrics_to_points(_metrics(gauge), "otel-v1")
    exponential = {"name": "e", "exponentialHistogram": {"dataPoints": []}}
    with pytest.raises(ValueError, match=r"metrics\[0\] \('e'\): exponentialHistogram: exponential histograms are rejected"):
        metrics_to_points(_metrics(exponential))
    no_time = {"name": "g", "gauge": {"dataPoints": [{"asDouble": 1.0}]}}
    with pytest.raises(ValueError, match=r"gauge.dataPoints\[0\]: timeUnixNano: metric has no timestamp"):
        metrics_to_points(_metrics(no_time))
    bad_buckets = {
        "name": "h",
        "histogram": {"dataPoints": [{"timeUnixNano": str(T0), "count": "1", "bucketCounts": ["1"], "explicitBounds": [1.0, 2.0]}]},
    }
    with pytest.raises(ValueError, match="bucket counts qty 1 vs explicit bounds qty 2"):
        metrics_to_points(_metrics(bad_buckets))
    bad_int = {"name": "g", "gauge": {"dataPoints": [{"timeUnixNano": "soon", "asDouble": 1.0}]}}
    with pytest.raises(ValueError, match="timeUnixNano: expected an integer"):
        metrics_to_points(_metrics(bad_int))


def test_metric_details() -> None:
    gauge = {
        "name": "g",
        "gauge": {
            "dataPoints": [
                {"timeUnixNano": str(T0), "asDouble": "NaN", "startTimeUnixNano": "5"},
                {"timeUnixNano": str(T0 + 1)},  # no value: no point
                {"timeUnixNano": str(T0 + 2), "asDouble": 2.0, "attributes": [_kv("ratio", 1e-7), _kv("", "x"), _kv("big", 1e21)]},
            ]
        },
    }
    points = metrics_to_points(_metrics(gauge, resource=[_kv("empty", "")]))
    assert [p.time_unix_nano for p in points] == [T0, T0 + 2]
    assert math.isnan(points[0].fields["gauge"])
    # AsString of doubles is Go's JSON form; empty attribute keys are skipped.
    assert points[1].tags == {"empty": "", "otel.library.name": "s", "ratio": "1e-7", "big": "1e+21"}
    # NaN fields and empty tag values are left out of the line protocol.
    assert to_line_protocol(points) == (
        f"g,otel.library.name=s start_time_unix_nano=5i {T0}\n"
        f"g,big=1e+21,otel.library.name=s,ratio=1e-7 gauge=2.0 {T0 + 2}\n"
    ).encode()


def test_span_events_and_links_that_cannot_be_written_are_counted_as_dropped() -> None:
    span = _span(
        events=[{"timeUnixNano": str(T0 + 1)}, {"timeUnixNano": str(T0 + 2), "name": "fill"}],
        links=[
            {"traceId": TRACE_ID, "spanId": "0000000000000001"},  # nothing to write
            {"traceId": "", "spanId": ""},  # no ids
            {"traceId": TRACE_ID, "spanId": "0000000000000002", "traceState": "a=b"},
        ],
        droppedEventsCount=1,
    )
    points = traces_to_points(_spans(span))
    assert [p.measurement for p in points] == ["logs", "span-links", "spans"]
    assert points[0].fields == {"event.name": "fill"}
    assert points[1].fields == {"trace_state": "a=b"} and points[1].time_unix_nano == T0
    assert points[2].fields["dropped_events_count"] == 2 and field_type(points[2].fields["dropped_events_count"]) == "uint"
    assert points[2].fields["dropped_links_count"] == 2


def test_span_dimensions_and_attribute_json() -> None:
    span = _span(
        attributes=[
            _kv("span.name", "from-attribute"),
            _kv("service.name", "again"),
            _kv("html", "<a&b>"),
            _kv("x", 1.0),
            {"key": "list", "value": {"arrayValue": {"values": [{"intValue": "1"}, {"doubleValue": 2.5}]}}},
            {"key": "map", "value": {"kvlistValue": {"values": [_kv("z", True), _kv("a", "b")]}}},
            {"key": "bytes", "value": {"bytesValue": "AAEC"}},
        ],
        status={"code": "STATUS_CODE_ERROR"},
    )
    points = traces_to_points(_spans(span, resource=[_kv("service.name", "svc")]))
    (point,) = points
    # A span attribute named span.name is a dimension: the tag wins and the
    # span's own name (a field of the same key) is dropped and counted.
    assert point.tags == {"service.name": "again", "span.name": "from-attribute", "trace_id": TRACE_ID.lower(), "span_id": SPAN_ID.lower()}
    assert "span.name" not in point.fields
    assert point.fields["dropped_attributes_count"] == 1
    assert point.fields["otel.status_code"] == "Error"
    # The repeated dimension also goes into attributes; Go's json.Marshal escapes <, > and &.
    assert point.fields["attributes"] == (
        '{"bytes":"AAEC","html":"\\u003ca\\u0026b\\u003e","list":[1,2.5],"map":{"a":"b","z":true},'
        '"service.name":"again","x":1}'
    )
    plain = traces_to_points(_spans(_span()), span_dimensions=[])[0]
    assert plain.tags == {"trace_id": TRACE_ID.lower(), "span_id": SPAN_ID.lower()}
    with pytest.raises(ValueError, match="duplicate dimension"):
        traces_to_points(_spans(_span()), span_dimensions=["a", "a"])


def test_span_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"spans\[0\] \('s'\): traceId: span has no trace ID"):
        traces_to_points(_spans(_span(traceId="")))
    with pytest.raises(ValueError, match="spanId: expected 16 hex digits"):
        traces_to_points(_spans(_span(spanId="xyz")))
    with pytest.raises(ValueError, match="startTimeUnixNano: span has no timestamp"):
        traces_to_points(_spans(_span(startTimeUnixNano="0")))
    with pytest.raises(ValueError, match="kind: unknown value"):
        traces_to_points(_spans(_span(kind="SIDEWAYS")))


def test_logs_details() -> None:
    record = {
        "timeUnixNano": "0",
        "severityNumber": "SEVERITY_NUMBER_WARN",
        "body": {"kvlistValue": {"values": [_kv("b", 1), _kv("a", "x")]}},
        "attributes": [_kv("service.name", "rec"), _kv("rqa.stock", "600000.SH"), _kv("ratio", float("nan"))],
        "traceId": TRACE_ID,  # no span id: no trace tags
    }
    request = {"resourceLogs": [{"resource": {"attributes": [_kv("host.name", "h")]}, "scopeLogs": [{"scope": {"name": "lg"}, "logRecords": [record]}]}]}
    (point,) = logs_to_points(request)
    assert point.tags == {"service.name": "rec"}
    assert point.fields["body"] == '{"a":"x","b":1}'
    assert point.fields["severity_number"] == 13
    # NaN cannot be marshalled: no attributes field, the record's attributes count as dropped.
    assert "attributes" not in point.fields and point.fields["dropped_attributes_count"] == 3
    assert point.time_unix_nano > T0  # no timestamp: now


def test_line_protocol_refuses_what_the_collector_refuses() -> None:
    with pytest.raises(ValueError, match=r"point 1 \(measurement 'm'.*value of tag 'k'.*control character"):
        to_line_protocol([Point("m", {}, {"f": 1.0}, 1), Point("m", {"k": "a\nb"}, {"f": 1.0}, 2)])
    with pytest.raises(ValueError, match="no fields to write"):
        to_line_protocol([Point("m", {}, {"f": float("inf")}, 1)])
    with pytest.raises(ValueError, match="trailing backslash"):
        to_line_protocol([Point("m\\", {}, {"f": 1.0}, 1)])
    with pytest.raises(ValueError, match="out of the int64 range"):
        to_line_protocol([Point("m", {}, {"f": 1 << 63}, 1)])
    assert to_line_protocol([Point("m", {}, {"": 1.0, "u": UInt(7), "s": "\ud800"}, 1)]) == 'm u=7u,s="\ufffd" 1\n'.encode()


def test_go_number_and_json_formatting() -> None:
    """pdata's AsString / Go's json.Marshal (ES6 floats) and strconv.FormatFloat(f, 'f', -1, 64)."""
    es6 = {
        1.5: "1.5", 100.0: "100", 1e20: "100000000000000000000", 1e21: "1e+21", 1.5e300: "1.5e+300",
        1e-6: "0.000001", 1e-7: "1e-7", 1.234e-5: "0.00001234", 5e-324: "5e-324", -0.0: "-0",
        123456789.125: "123456789.125", 1e16: "10000000000000000", -2.5e-8: "-2.5e-8",
    }
    assert {f: go_format.es6_float(f) for f in es6} == es6
    assert go_format.as_string(float("nan")) == "json: unsupported value: NaN"
    assert go_format.as_string(float("-inf")) == "json: unsupported value: -Inf"
    assert go_format.as_string([1, "a", None, True]) == '[1,"a",null,true]'
    assert go_format.as_string({"k": [float("inf")]}) == ""  # json.Marshal fails: AsString gives ""
    assert go_format.as_string(b"\x00\x01\xff") == "AAH/"
    fixed = {0.1: "0.1", 1e-7: "0.0000001", 1e21: "1000000000000000000000", 2.5e-5: "0.000025", 5.0: "5",
             float("inf"): "+Inf"}
    assert {f: go_format.format_float_f(f) for f in fixed} == fixed
    assert go_format.go_json({"b": "\u2028", "a": "x\n\"<"}) == '{"a":"x\\n\\"\\u003c","b":"\\u2028"}'

"""``rqa-otel lp``: OTLP JSON lines files to InfluxDB line protocol on stdout.

Each line of each FILE is one ExportMetricsServiceRequest,
ExportTraceServiceRequest or ExportLogsServiceRequest in OTLP's protobuf-JSON
mapping (what the embedded file exporter writes to ``metrics.jsonl``,
``traces.jsonl`` and ``logs.jsonl``, and the Collector's ``file`` exporter
too), recognised by its top-level key. It is converted as the Collector's
``influxdb`` exporter would (:mod:`rqa_otel.export.influx.otel2influx`).

A line that cannot be converted is reported on stderr as ``FILE:LINE: why``
and skipped; the other lines are still converted, and the exit status is 1.
A file that cannot be read is reported the same way. Exit status 0 when every
line converted, 2 for bad arguments.

``rqa_otel.cli`` wires it in with ``add_lp_parser(commands)``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, BinaryIO, Callable, TextIO

from rqa_otel.export.influx.otel2influx import (
    DEFAULT_LOG_RECORD_DIMENSIONS,
    DEFAULT_SPAN_DIMENSIONS,
    METRICS_SCHEMAS,
    SCHEMA_TELEGRAF_PROMETHEUS_V1,
    Point,
    logs_to_points,
    metrics_to_points,
    to_line_protocol,
    traces_to_points,
)
from rqa_otel.export.influx.series_budget import OtlpJsonBudget

_REQUEST_KEYS = ("resourceMetrics", "resourceSpans", "resourceLogs")


def add_lp_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``lp`` command to ``rqa-otel``'s subparsers; its handler is :func:`run_lp`."""
    parser = subparsers.add_parser(
        "lp",
        help="convert OTLP JSON lines files to InfluxDB line protocol",
        description=(
            "Convert OTLP JSON lines files (one export request per line: metrics, traces or logs, as "
            "rqa-otel's file exporter and the Collector's file exporter write them) to InfluxDB line "
            "protocol on stdout, exactly as the OpenTelemetry Collector's influxdb exporter would write "
            "them. A line that cannot be converted is reported as FILE:LINE on stderr and skipped; the "
            "exit status is then 1."
        ),
        epilog="example: rqa-otel lp rqa-telemetry/*.jsonl | curl --data-binary @- 'http://localhost:8086/write?db=rqa&precision=ns'",
    )
    add_schema_arguments(parser)
    parser.add_argument("files", nargs="+", metavar="FILE", help="OTLP JSON lines file ('-' for stdin)")
    parser.set_defaults(handler=run_lp)
    return parser


def add_schema_arguments(parser: argparse.ArgumentParser) -> None:
    """--schema, --span-dimensions, --log-record-dimensions, --series-budget: the Collector
    exporter's options, with its defaults (``lp`` and ``replay``)."""
    parser.add_argument(
        "--series-budget",
        action="store_true",
        help="first apply the series budget, as the shipped Collector configs' processors do before their "
        "influxdb exporter (docs/capacity.md): no per-process metrics or resource tags, sums and histograms as increments",
    )
    parser.add_argument(
        "--schema",
        choices=METRICS_SCHEMAS,
        default=SCHEMA_TELEGRAF_PROMETHEUS_V1,
        help=f"metrics schema (default {SCHEMA_TELEGRAF_PROMETHEUS_V1})",
    )
    parser.add_argument(
        "--span-dimensions",
        type=_key_list,
        default=list(DEFAULT_SPAN_DIMENSIONS),
        metavar="KEY,KEY",
        help=f"attribute keys written as span tags (default {','.join(DEFAULT_SPAN_DIMENSIONS)}; '' for none)",
    )
    parser.add_argument(
        "--log-record-dimensions",
        type=_key_list,
        default=list(DEFAULT_LOG_RECORD_DIMENSIONS),
        metavar="KEY,KEY",
        help=f"attribute keys written as log record tags (default {','.join(DEFAULT_LOG_RECORD_DIMENSIONS)}; '' for none)",
    )


def point_converters(args: argparse.Namespace) -> dict[str, Callable[[Any], list[Point]]]:
    """Request key (``resourceMetrics``…) -> conversion with the options of :func:`add_schema_arguments`."""
    if getattr(args, "series_budget", False):
        budget = OtlpJsonBudget()
        metrics = lambda request: metrics_to_points(budget.apply(request), args.schema)  # noqa: E731
    else:
        metrics = lambda request: metrics_to_points(request, args.schema)  # noqa: E731
    return {
        "resourceMetrics": metrics,
        "resourceSpans": lambda request: traces_to_points(request, args.span_dimensions),
        "resourceLogs": lambda request: logs_to_points(request, args.log_record_dimensions),
    }


def _key_list(text: str) -> list[str]:
    keys = [key.strip() for key in text.split(",")]
    if keys == [""]:
        return []
    if "" in keys:
        raise argparse.ArgumentTypeError(f"empty attribute key in {text!r}")
    if len(set(keys)) != len(keys):
        raise argparse.ArgumentTypeError(f"duplicate attribute key in {text!r}")
    return keys


def run_lp(args: argparse.Namespace, *, stdout: BinaryIO | None = None, stderr: TextIO | None = None) -> int:
    """Convert ``args.files`` to line protocol on ``stdout`` (bytes); errors on
    ``stderr``. Returns the exit status: 0, or 1 when a file or line failed."""
    out = stdout if stdout is not None else sys.stdout.buffer
    err = stderr if stderr is not None else sys.stderr
    converters = point_converters(args)
    failed = 0
    try:
        for path in args.files:
            failed += _convert_file(path, converters, out, err)
        out.flush()
    except BrokenPipeError:  # `rqa-otel lp … | head`: stop quietly
        _silence_stdout()
        return 1 if failed else 0
    if failed:
        print(f"rqa-otel lp: {failed} line(s) or file(s) could not be converted", file=err)
    return 1 if failed else 0


def _convert_file(path: str, converters: dict[str, Callable[[Any], list[Point]]], out: BinaryIO, err: TextIO) -> int:
    failed = 0
    try:
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror or exc}", file=err)
        return 1
    lines = iter(stream)
    number = 0
    try:
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                break
            except OSError as exc:  # a read error ends this file (write errors propagate)
                print(f"{path}:{number + 1}: read error: {exc.strerror or exc}", file=err)
                failed += 1
                break
            number += 1
            if not raw.strip():
                continue
            try:
                body = to_line_protocol(_convert_line(raw, converters))
            except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors too
                print(f"{path}:{number}: {exc}", file=err)
                failed += 1
                continue
            out.write(body)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return failed


def _convert_line(raw: bytes, converters: dict[str, Callable[[Any], list[Point]]]) -> list[Point]:
    try:
        request = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise ValueError(f"expected an OTLP export request (a JSON object), got {type(request).__name__}")
    kinds = [key for key in _REQUEST_KEYS if key in request]
    if len(kinds) > 1:
        raise ValueError(f"ambiguous request: it holds {' and '.join(kinds)}")
    if not kinds:
        if not request:  # an empty request: nothing to write
            return []
        unknown = ", ".join(sorted(request)[:5])
        raise ValueError(f"not an OTLP export request: expected one of {', '.join(_REQUEST_KEYS)}, got {unknown}")
    return converters[kinds[0]](request)


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass

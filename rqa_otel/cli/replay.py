"""``rqa-otel replay``: send the embedded default's OTLP-JSON files to a
Collector or to InfluxDB afterwards; and the InfluxDB target options that
``replay`` and ``demo`` share.

Each line of a file is one Export{Trace,Metrics,Logs}ServiceRequest in
OTLP's JSON mapping (``traces.jsonl``, ``metrics.jsonl``, ``logs.jsonl``;
rotated ``.gz`` files too). To a Collector, each line is sent as it is, as
protobuf. To InfluxDB, each line goes through the otel2influx conversion
(as ``rqa-otel lp`` prints it) and is written in batches, gzip-compressed.
Failed requests are retried with backoff; what a server rejects is
reported, and the exit status is 1 when anything was not delivered.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import sys
import time
from typing import Any, Iterator, Sequence
from urllib.parse import urlsplit

from rqa_otel.cli.lp import add_schema_arguments, point_converters
from rqa_otel.config.loader import load_settings
from rqa_otel.config.model import OtlpSettings
from rqa_otel.export.delivery import Delivery, Outcome, Payload, Value
from rqa_otel.export.influx.exporter import InfluxEncoder, InfluxSchema, influx_transport
from rqa_otel.export.notices import without_url_credentials
from rqa_otel.export.otlp.transport import otlp_transport

_SIGNALS = {"resourceSpans": "traces", "resourceMetrics": "metrics", "resourceLogs": "logs"}
_REQUEST_KEYS = {signal: key for key, signal in _SIGNALS.items()}


# --- InfluxDB target options (replay and demo) ---------------------------------------


def add_influx_options(parser: argparse.ArgumentParser, flag: str = "--") -> None:
    """The options of an InfluxDB destination; secrets only through the
    environment, never on the command line (``ps`` shows it)."""
    group = parser.add_argument_group("InfluxDB destination")
    group.add_argument(f"{flag}org", default="", help="organization for /api/v2/write (InfluxDB 2.x/3.x)")
    group.add_argument(f"{flag}bucket", default="", help="bucket for /api/v2/write (InfluxDB 2.x/3.x/1.8+, VictoriaMetrics)")
    group.add_argument(
        f"{flag}token-env", default="INFLUX_TOKEN", metavar="VAR",
        help="environment variable holding the API token (default INFLUX_TOKEN)",
    )
    group.add_argument(
        f"{flag}v1-compatibility", action="store_true",
        help="write to InfluxDB 1.x's /write?db= with basic auth instead of /api/v2/write",
    )
    group.add_argument(f"{flag}db", default="", help="database in --v1-compatibility mode")
    group.add_argument(f"{flag}username", default="", help="basic-auth user in --v1-compatibility mode")
    group.add_argument(
        f"{flag}password-env", default="INFLUX_PASSWORD", metavar="VAR",
        help="environment variable holding the basic-auth password (default INFLUX_PASSWORD)",
    )


def influx_overrides(url: str, args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """``export.influxdb.*`` settings from the options of :func:`add_influx_options`
    (``prefix``: their ``dest`` prefix); ValueError naming the options when
    neither a bucket nor a database is given."""
    option = lambda name: getattr(args, prefix + name)  # noqa: E731
    v1 = option("v1_compatibility") or bool(option("db") and not option("bucket"))
    flag = "--" + prefix.replace("_", "-")
    if not (option("db") if v1 else option("bucket")):
        raise ValueError(
            f"InfluxDB {url}: give {flag}bucket (and {flag}org) for /api/v2/write (InfluxDB 2.x/3.x/1.8+, "
            f"VictoriaMetrics), or {flag}db for InfluxDB 1.x's /write"
        )
    return {
        "export.influxdb.url": url,
        "export.influxdb.org": option("org"),
        "export.influxdb.bucket": option("bucket"),
        "export.influxdb.token": os.environ.get(option("token_env"), ""),
        "export.influxdb.v1_compatibility": v1,
        "export.influxdb.db": option("db"),
        "export.influxdb.username": option("username"),
        "export.influxdb.password": os.environ.get(option("password_env"), ""),
    }


# --- the command ---------------------------------------------------------------------


def add_replay_parser(commands: Any) -> None:
    replay = commands.add_parser(
        "replay",
        help="send OTLP-JSON files to a Collector or to InfluxDB",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  rqa-otel replay rqa-telemetry/*.jsonl --to otlp://localhost:4317\n"
            "  rqa-otel replay rqa-telemetry/logs.jsonl --to otlp+http://localhost:4318\n"
            "  INFLUX_TOKEN=... rqa-otel replay rqa-telemetry/*.jsonl --to influxdb http://localhost:8086 "
            "--org rqa --bucket telemetry\n"
            "  INFLUX_PASSWORD=... rqa-otel replay rqa-telemetry/*.jsonl --to influxdb http://localhost:8086 "
            "--v1-compatibility --db rqa --username writer"
        ),
    )
    replay.add_argument("files", nargs="+", metavar="FILE", help="OTLP-JSON lines files (.jsonl, or .gz)")
    replay.add_argument(
        "--to", nargs="+", required=True, metavar="TARGET",
        help="otlp://HOST:PORT (grpc), otlp+http://HOST:PORT (http/protobuf), or: influxdb URL",
    )
    replay.add_argument("--timeout", type=float, default=30.0, metavar="S",
                        help="seconds to keep retrying one request before giving up (default 30)")
    replay.add_argument("--quiet", action="store_true", help="no progress output")
    add_schema_arguments(replay.add_argument_group("InfluxDB schema (as the Collector's influxdb exporter)"))
    add_influx_options(replay)
    replay.set_defaults(handler=run_replay)


class _Target:
    """Where replayed requests go: encode one OTLP-JSON request to payloads,
    and a sender per signal."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.kind, self.destination = _parse_target(args.to)
        self._deliveries: dict[str, Delivery] = {}
        self._args = args
        if self.kind == "influxdb":
            settings = load_settings(overrides=influx_overrides(self.destination, args)).export.influxdb
            self._transport = lambda signal: influx_transport(settings)
            self._converters = point_converters(args)
            self._encoder = InfluxEncoder(
                InfluxSchema(args.schema, tuple(args.span_dimensions), tuple(args.log_record_dimensions))
            )
        else:
            otlp = OtlpSettings(
                endpoint="http://" + self.destination,
                protocol="grpc" if self.kind == "otlp" else "http/protobuf",
                headers={},
                timeout_s=args.timeout,
            )
            self._transport = lambda signal: otlp_transport(signal, otlp)

    def delivery(self, signal: str):
        if signal not in self._deliveries:
            self._deliveries[signal] = Delivery(signal, self._transport(signal), budget_s=self._args.timeout)
        return self._deliveries[signal]

    def payloads(self, signal: str, request: dict) -> list:
        if self.kind == "influxdb":
            points = self._converters[_REQUEST_KEYS[signal]](request)
            return self._encoder.payloads(signal, Value.NORMAL, points)
        message = _otlp_request(signal, request)
        return [Payload(signal, message.SerializeToString(), Value.NORMAL, _count(signal, request))]

    def shutdown(self) -> None:
        for delivery in self._deliveries.values():
            delivery.shutdown(1.0)


def _parse_target(values: Sequence[str]) -> tuple[str, str]:
    accepted = "expected otlp://HOST:PORT, otlp+http://HOST:PORT, or: influxdb URL"
    if len(values) == 2 and values[0] == "influxdb":
        url = values[1]
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"--to influxdb {without_url_credentials(url)!r}: expected an http(s):// URL")
        return "influxdb", url
    if len(values) == 1:
        url = urlsplit(values[0])
        if url.scheme in ("otlp", "otlp+http") and url.hostname and url.port:
            return url.scheme, f"{url.hostname}:{url.port}"
    raise ValueError(f"--to {without_url_credentials(' '.join(values))}: {accepted}")


def run_replay(args: argparse.Namespace) -> int:
    try:
        target = _Target(args)
    except ValueError as exc:  # SettingsError is one
        print(f"rqa-otel replay: {exc}", file=sys.stderr)
        return 2
    progress = _Progress(enabled=not args.quiet, lines=target.kind == "influxdb")
    failed = 0
    try:
        for path in args.files:
            for where, signal, request in _requests(path):
                try:
                    payloads = target.payloads(signal, request)
                except ValueError as exc:
                    print(f"rqa-otel replay: {where}: not sent: {exc}", file=sys.stderr)
                    failed += 1
                    continue
                delivery = target.delivery(signal)
                for payload in payloads:
                    result = delivery.send_with_retries(payload, args.timeout)
                    if result.outcome is Outcome.DELIVERED:
                        progress.sent(signal, payload.items)
                    else:
                        failed += 1
                        print(f"rqa-otel replay: {where}: {payload.items} {signal} not delivered: {result.detail}",
                              file=sys.stderr)
    except OSError as exc:
        print(f"rqa-otel replay: {exc}", file=sys.stderr)
        return 2
    finally:
        target.shutdown()
    progress.done(without_url_credentials(target.destination))
    return 1 if failed else 0


def _requests(path: str) -> Iterator[tuple[str, str, dict]]:
    """(where, signal, request) for each line of an OTLP-JSON lines file."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        handle = opener(path, "rt", encoding="utf-8")
    except OSError as exc:
        raise OSError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                request = json.loads(line)
            except ValueError as exc:
                print(f"rqa-otel replay: {where}: not JSON ({exc}); skipped", file=sys.stderr)
                continue
            signal = next((_SIGNALS[key] for key in request if key in _SIGNALS), None) if isinstance(request, dict) else None
            if signal is None:
                print(f"rqa-otel replay: {where}: not an OTLP export request (no {'/'.join(_SIGNALS)}); skipped",
                      file=sys.stderr)
                continue
            yield where, signal, request


_ITEMS = {"traces": ("resourceSpans", "scopeSpans", "spans"), "metrics": ("resourceMetrics", "scopeMetrics", "metrics"),
          "logs": ("resourceLogs", "scopeLogs", "logRecords")}


def _count(signal: str, request: dict) -> int:
    top, scope, items = _ITEMS[signal]
    return sum(len(s.get(items, [])) for r in request.get(top, []) for s in r.get(scope, []))


def _otlp_request(signal: str, request: dict) -> Any:
    """An OTLP-JSON request as its protobuf message. OTLP JSON writes trace
    and span ids as hex where proto3 JSON expects base64: converted first."""
    from google.protobuf.json_format import Parse, ParseError
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    cls = {"traces": ExportTraceServiceRequest, "metrics": ExportMetricsServiceRequest, "logs": ExportLogsServiceRequest}[signal]
    try:
        return Parse(json.dumps(_hex_ids_to_base64(request)), cls())
    except (ParseError, ValueError) as exc:
        raise ValueError(str(exc)) from None


_ID_KEYS = frozenset(("traceId", "spanId", "parentSpanId"))


def _hex_ids_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: base64.b64encode(bytes.fromhex(value)).decode()
            if key in _ID_KEYS and isinstance(value, str) and value else _hex_ids_to_base64(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    return node


class _Progress:
    """A line on stderr at most once a second, and a summary at the end."""

    def __init__(self, enabled: bool, lines: bool) -> None:
        self.enabled = enabled
        self._lines = lines
        self.counts: dict[str, int] = {}
        self._started = self._last = time.monotonic()

    def sent(self, signal: str, items: int) -> None:
        self.counts[signal] = self.counts.get(signal, 0) + items
        now = time.monotonic()
        if self.enabled and now - self._last >= 1.0:
            self._last = now
            print(f"rqa-otel replay: {self._text()} ...", file=sys.stderr, flush=True)

    def done(self, destination: str) -> None:
        if self.enabled:
            took = time.monotonic() - self._started
            print(f"rqa-otel replay: {self._text() or 'nothing'} sent to {destination} in {took:.1f} s", file=sys.stderr)

    def _text(self) -> str:
        if self._lines:  # InfluxDB: points (a span's events and links are points too)
            return ", ".join(f"{n} {s} points" for s, n in sorted(self.counts.items()))
        unit = {"traces": "spans", "metrics": "metrics", "logs": "log records"}
        return ", ".join(f"{n} {unit[s]}" for s, n in sorted(self.counts.items()))

"""In-process InfluxDB export: encoders and transports for the delivery layer.

``rqa_otel.export.delivery`` splits every exporter into an encoder (SDK
batch -> payloads), a transport (payload -> delivered / retry later /
rejected) and a sender (retries, spool). This module is InfluxDB's part:

- :class:`InfluxEncoder` writes exactly the Collector's line protocol
  (``sdk_points`` and otel2influx's line writers), split by value class
  and into batches of at most ``max_lines`` lines and ``max_bytes`` bytes
  (the Collector's ``payload_max_lines``/``payload_max_bytes`` defaults:
  10,000 and 10,000,000);
- :class:`InfluxV2Transport` posts gzip-compressed payloads through
  influxdb-client to ``/api/v2/write`` (InfluxDB 2.x, 3.x, 1.8+ and
  compatible servers such as VictoriaMetrics);
- :class:`InfluxV1Transport` posts them to ``/write?db=…`` with basic auth,
  as the Collector exporter's ``v1_compatibility`` mode does.

A transport classifies each answer as the delivery contract asks: 2xx
delivered; 5xx, 429 (with its Retry-After) and network errors retry later;
any other 4xx rejected, with the server's message in the detail.
"""

from __future__ import annotations

import base64
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import urlencode, urlsplit

from rqa_otel.export.delivery import (
    DELIVERED,
    Delivery,
    Outcome,
    Payload,
    PayloadLogRecordExporter,
    PayloadLogSink,
    PayloadMetricExporter,
    PayloadSpanExporter,
    SendResult,
    Value,
    classify_http,
    log_value,
    metrics_value,
    span_value,
    split_by_value,
    split_logs_by_value,
)
from rqa_otel.export.dropped import DROPPED_POINTS
from rqa_otel.export.influx import otel2influx as o2i
from rqa_otel.export.influx.otel2influx import Point, encode_lines, line_strings
from rqa_otel.export.influx.sdk_points import (
    LogEntriesConverter,
    MetricsConverter,
    log_records_to_points,
    spans_to_points,
)
from rqa_otel.export.influx.series_budget import (
    DEFAULT_METRIC_EXCLUDE,
    DEFAULT_RESOURCE_EXCLUDE,
    DEFAULT_SERIES_LIMIT,
    DEFAULT_TEMPORALITY,
    SeriesBudget,
)
from rqa_otel.export.notices import without_url_credentials

# The Collector's influxdb exporter defaults (payload_max_lines, payload_max_bytes).
DEFAULT_MAX_LINES = 10_000
DEFAULT_MAX_BYTES = 10_000_000
# gzip level 1: a third of level 6's CPU for most of its saving on line
# protocol, whose repeated prefixes compress well at any level. ISA-L's
# deflate (the isal package) writes the same gzip format five times faster
# than zlib at this level, and as small; zlib where it has no wheel.
_GZIP_LEVEL = 1
try:
    from isal import isal_zlib as _deflate
except ImportError:  # pragma: no cover - isal ships wheels for the usual platforms
    _deflate = zlib


@dataclass(frozen=True)
class InfluxSchema:
    """What the Collector's exporter calls metrics_schema, span_dimensions
    and log_record_dimensions, with its defaults; and the series budget
    (``series_budget``), which the Collector configs apply with processors:
    ``metric_resource_exclude=(), metric_temporality="cumulative",
    series_limit=0, metric_exclude=()`` writes what the exporter writes
    with none."""

    metrics_schema: str = o2i.SCHEMA_TELEGRAF_PROMETHEUS_V1
    span_dimensions: tuple[str, ...] = o2i.DEFAULT_SPAN_DIMENSIONS
    log_record_dimensions: tuple[str, ...] = o2i.DEFAULT_LOG_RECORD_DIMENSIONS
    max_lines: int = DEFAULT_MAX_LINES
    max_bytes: int = DEFAULT_MAX_BYTES
    metric_resource_exclude: tuple[str, ...] = DEFAULT_RESOURCE_EXCLUDE
    metric_temporality: str = DEFAULT_TEMPORALITY
    series_limit: int = DEFAULT_SERIES_LIMIT
    metric_exclude: tuple[str, ...] = DEFAULT_METRIC_EXCLUDE

    def budget(self) -> SeriesBudget | None:
        """The series budget these options ask for; None: none at all."""
        if (not self.metric_resource_exclude and self.metric_temporality == "cumulative" and not self.series_limit
                and not self.metric_exclude):
            return None
        return SeriesBudget.from_settings(
            self.metric_resource_exclude, self.metric_temporality, self.series_limit, self.metric_exclude,
        )


class InfluxEncoder:
    """SDK batches to line-protocol payloads. One per exporter; the metric
    and log converters keep caches, so one encoder serves one thread."""

    def __init__(self, schema: InfluxSchema = InfluxSchema(), resource_attributes: Mapping[str, Any] | None = None) -> None:
        if schema.max_lines < 1 or schema.max_bytes < 1:
            raise ValueError(f"batch limits must be positive, got {schema.max_lines} lines, {schema.max_bytes} bytes")
        self.schema = schema
        self._span_dimensions = o2i.dimensions_set(schema.span_dimensions, "span_dimensions")
        self._log_dimensions = o2i.dimensions_set(schema.log_record_dimensions, "log_record_dimensions")
        self._metrics = MetricsConverter(schema.metrics_schema, schema.budget(), _dropper("metrics"))
        self._log_entries = LogEntriesConverter(resource_attributes or {}, self._log_dimensions)

    def spans(self, spans: Sequence[Any]) -> list[Payload]:
        """``ReadableSpan`` objects; alert spans are critical."""
        payloads: list[Payload] = []
        for value, group in split_by_value(spans, span_value):
            payloads += self.payloads("traces", value, spans_to_points(group, self._span_dimensions))
        return payloads

    def metrics(self, data: Any) -> list[Payload]:
        """A ``MetricsData``; critical when it holds trade, portfolio or alert instruments."""
        return list(self.metric_stream(data))

    def metric_stream(self, data: Any) -> Iterator[Payload]:
        """The payloads of :meth:`metrics`, each as soon as its lines are
        written: the exporter sends one while the next is encoded."""
        value, size = metrics_value(data), self.schema.max_lines
        lines: list[str] = []
        for _ in self._metrics.fill(lines, data):
            # Under read_ahead this runs beside a sender waiting for the
            # server: releasing the GIL after each metric lets the sender go
            # on as soon as its answer comes, not after the interpreter's
            # 5 ms switch interval (measured: about 15% more points/s).
            time.sleep(0)
            if len(lines) >= size:
                whole = len(lines) - len(lines) % size
                yield from self.line_payloads("metrics", value, lines[:whole])
                del lines[:whole]
        if lines:
            yield from self.line_payloads("metrics", value, lines)

    def log_entries(self, entries: Sequence[Any], observed_ns: int) -> list[Payload]:
        """The log pipeline's entries: trade and portfolio events critical,
        debug and info records low."""
        payloads: list[Payload] = []
        for value, group in split_logs_by_value(entries):
            payloads += self.payloads("logs", value, self._log_entries.convert(group, observed_ns))
        return payloads

    def log_records(self, records: Sequence[Any]) -> list[Payload]:
        """The SDK's ``ReadableLogRecord`` objects (the SDK's own log processors)."""
        payloads: list[Payload] = []
        for value, group in split_by_value(records, _record_value):
            payloads += self.payloads("logs", value, log_records_to_points(group, self._log_dimensions))
        return payloads

    def payloads(self, signal: str, value: Value, points: Sequence[Point]) -> list[Payload]:
        """Line protocol of ``points`` in payloads within the line and byte limits."""
        return self.line_payloads(signal, value, line_strings(points, _dropper(signal)))

    def line_payloads(self, signal: str, value: Value, lines: Sequence[str]) -> list[Payload]:
        """``lines`` in payloads of at most ``max_lines`` lines and ``max_bytes`` bytes."""
        payloads: list[Payload] = []
        for start in range(0, len(lines), self.schema.max_lines):
            self._fit(payloads, signal, value, lines[start : start + self.schema.max_lines])
        return payloads

    def _fit(self, payloads: list[Payload], signal: str, value: Value, lines: Sequence[str]) -> None:
        # Halved by lines, never by bytes: a string field may hold a raw newline.
        body = encode_lines(lines)
        if len(body) <= self.schema.max_bytes or len(lines) == 1:  # one longer line goes alone
            payloads.append(Payload(signal, body, value, len(lines)))
            return
        half = len(lines) // 2
        self._fit(payloads, signal, value, lines[:half])
        self._fit(payloads, signal, value, lines[half:])


def _dropper(signal: str) -> o2i.OnDrop:
    """A point of ``signal`` the line protocol cannot carry: left out, counted
    in ``rqa.export.points.dropped``; the rest of its batch goes on."""

    def on_drop(reason: str, message: str) -> None:
        # Where, not what: the value may be a secret or a terminal escape.
        DROPPED_POINTS.add(signal, reason, f"InfluxDB line protocol, {reason}: {message.split(': ', 1)[0][:200]}")

    return on_drop


def _record_value(readable: Any) -> Value:
    """An SDK log record's value class, by its scope (logger) and severity."""
    number = readable.log_record.severity_number
    level = 30 if number is not None and number.value >= 13 else 20  # WARN and above: not low
    scope = readable.instrumentation_scope
    return log_value((0, level, scope.name if scope is not None else ""))


def gzip_body(body: bytes) -> bytes:
    compressor = _deflate.compressobj(_GZIP_LEVEL, _deflate.DEFLATED, 31)  # 31: gzip framing
    return compressor.compress(body) + compressor.flush()


class _Gzipped:
    """Bodies compressed ahead of their send: ``prepare`` runs on
    ``read_ahead``'s helper thread (ISA-L and zlib release the GIL), so the
    sender posts the next request as soon as the last answer comes. Keeps
    the two latest only: a payload the spool persisted instead of sending
    is not held."""

    _KEPT = 2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: dict[int, tuple[Payload, bytes]] = {}

    def prepare(self, payload: Payload) -> None:
        body = gzip_body(payload.body)
        with self._lock:
            self._ready[id(payload)] = (payload, body)  # the payload is held: its id stays its own
            while len(self._ready) > self._KEPT:
                del self._ready[next(iter(self._ready))]

    def body(self, payload: Payload) -> bytes:
        with self._lock:
            ready = self._ready.pop(id(payload), None)
        return ready[1] if ready is not None and ready[0] is payload else gzip_body(payload.body)


# --- transports ---------------------------------------------------------------------


def _network_error(exc: BaseException, destination: str) -> SendResult:
    return SendResult(Outcome.RETRY_LATER, None, f"{type(exc).__name__} sending to {destination}: {exc}")


@dataclass
class InfluxV2Transport:
    """``POST /api/v2/write?org=&bucket=&precision=ns`` through influxdb-client,
    gzip-compressed. The token goes in the Authorization header only."""

    url: str
    org: str
    bucket: str
    token: str = field(default="", repr=False)
    destination: str = ""

    def __post_init__(self) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.service.write_service import WriteService

        _check_url(self.url)
        if not self.bucket:
            raise ValueError("export.influxdb.bucket: a bucket is needed for /api/v2/write")
        # retries=False: the delivery layer retries, with the spool behind it.
        self._client = InfluxDBClient(url=self.url, token=self.token or "", org=self.org, retries=False)
        self._service = WriteService(self._client.api_client)
        self._gzipped = _Gzipped()
        self.prepare = self._gzipped.prepare
        self.destination = self.destination or f"InfluxDB {without_url_credentials(self.url).rstrip('/')}/api/v2/write bucket {self.bucket}"

    def send(self, payload: Payload, timeout_s: float) -> SendResult:
        from influxdb_client.rest import ApiException

        try:
            self._service.post_write(
                self.org, self.bucket, self._gzipped.body(payload), precision="ns", content_encoding="gzip",
                content_type="text/plain; charset=utf-8",
                _request_timeout=max(1.0, timeout_s * 1000),  # influxdb-client counts milliseconds
            )
        except ApiException as exc:
            return classify_http(exc.status or 0, exc.headers, exc.body, self.destination) if exc.status else _network_error(exc, self.destination)
        except Exception as exc:  # urllib3 and socket errors: the server may come back
            return _network_error(exc, self.destination)
        return DELIVERED

    def after_fork(self) -> None:
        self._client.api_client.rest_client.pool_manager.clear()

    def shutdown(self) -> None:
        self._client.close()


@dataclass
class InfluxV1Transport:
    """``POST /write?db=&rp=&precision=ns`` with basic auth, gzip-compressed:
    the Collector exporter's ``v1_compatibility`` mode, for InfluxDB 1.x."""

    url: str
    db: str
    username: str = ""
    password: str = field(default="", repr=False)
    retention_policy: str = ""
    destination: str = ""

    def __post_init__(self) -> None:
        import urllib3

        _check_url(self.url)
        if not self.db:
            raise ValueError("export.influxdb.db: a database is needed in v1_compatibility mode")
        query = {"db": self.db, "precision": "ns"}
        if self.retention_policy:
            query["rp"] = self.retention_policy
        self._write_url = self.url.rstrip("/") + "/write?" + urlencode(query)
        headers = {"Content-Type": "text/plain; charset=utf-8", "Content-Encoding": "gzip"}
        if self.username or self.password:
            credentials = f"{self.username}:{self.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
        self._pool = urllib3.PoolManager(maxsize=1, headers=headers, retries=False)
        self._gzipped = _Gzipped()
        self.prepare = self._gzipped.prepare
        self.destination = self.destination or f"InfluxDB 1.x {without_url_credentials(self.url).rstrip('/')}/write db {self.db}"

    def send(self, payload: Payload, timeout_s: float) -> SendResult:
        import urllib3

        try:
            response = self._pool.request(
                "POST", self._write_url, body=self._gzipped.body(payload), timeout=urllib3.Timeout(total=max(0.001, timeout_s))
            )
        except Exception as exc:
            return _network_error(exc, self.destination)
        return classify_http(response.status, response.headers, response.data, self.destination)

    def after_fork(self) -> None:
        self._pool.clear()

    def shutdown(self) -> None:
        self._pool.clear()


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"export.influxdb.url: expected http(s)://host:port, got {url!r}")


# --- assembly from settings ------------------------------------------------------------


def influx_schema(settings: Any) -> InfluxSchema:
    """The schema options of ``export.influxdb`` (an ``InfluxSettings``)."""
    return InfluxSchema(
        settings.metrics_schema, tuple(settings.span_dimensions), tuple(settings.log_record_dimensions),
        settings.max_lines, settings.max_bytes, tuple(settings.metric_resource_exclude),
        settings.metric_temporality, settings.series_limit, tuple(settings.metric_exclude),
    )


def influx_transport(settings: Any) -> InfluxV1Transport | InfluxV2Transport:
    """The transport ``export.influxdb`` asks for: v1 ``/write`` or v2 ``/api/v2/write``."""
    if settings.v1_compatibility:
        return InfluxV1Transport(settings.url, settings.db, settings.username, settings.password)
    return InfluxV2Transport(settings.url, settings.org, settings.bucket, settings.token)


def sdk_exporter(signal: str, transport: Any, schema: InfluxSchema = InfluxSchema(), sender: Any = None) -> Any:
    """The SDK exporter of ``signal``: a SpanExporter (``traces``), a
    MetricExporter (``metrics``) or a LogRecordExporter (``logs``, for the
    SDK's own log processors), writing the Collector's line protocol through
    ``transport``. ``sender`` defaults to a Delivery that retries for 10 s::

        exporter = sdk_exporter("traces", InfluxV2Transport("http://localhost:8086", "rqa", "telemetry", token))
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    """
    sender = sender if sender is not None else Delivery(signal, transport, budget_s=10.0)
    encoder = InfluxEncoder(schema)
    if signal == "traces":
        return PayloadSpanExporter(encoder.spans, sender)
    if signal == "metrics":
        return PayloadMetricExporter(encoder.metric_stream, sender)
    if signal == "logs":
        return PayloadLogRecordExporter(encoder.log_records, sender)
    raise ValueError(f"signal: expected traces, metrics or logs, got {signal!r}")


def influx_exporter(signal: str, settings: Any, senders: Any) -> tuple[Any, str]:
    """(SDK exporter, destination) for ``traces`` or ``metrics`` from
    ``export.influxdb``; ``senders`` (``rqa_otel.export.spool.Senders``)
    decides spool or direct delivery."""
    sender = senders.sender(signal, influx_transport(settings))
    return sdk_exporter(signal, sender.transport, influx_schema(settings), sender), sender.transport.destination


def influx_log_sink(settings: Any, resource_attributes: Mapping[str, Any], senders: Any) -> Any:
    """The log pipeline's sink for ``export.logs = influxdb``."""
    encoder = InfluxEncoder(influx_schema(settings), resource_attributes)
    return PayloadLogSink(encoder.log_entries, senders.sender("logs", influx_transport(settings)))

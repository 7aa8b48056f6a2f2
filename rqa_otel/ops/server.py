"""/health, /ready and /metrics for an instrumented process (opt-in port).

- /health: liveness. 200 while the export threads are alive, else 503.
- /ready: readiness. Each check (exporters working, circuit breakers closed,
  checks other capabilities add) reports ok and a short reason; 200 when all
  pass, 503 with the failing ones named. Bodies are JSON and never carry a
  setting's value, so no secret can leak through them.
- /metrics: the process's OTel metrics in Prometheus text format, collected
  on each scrape by a pull reader beside the periodic exporter.

It binds 127.0.0.1 unless told otherwise: an ops port is not for the world.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    MetricReader,
    MetricsData,
    Sum,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

_log = logging.getLogger("rqa_otel.ops")

Check = Callable[[], "tuple[bool, str]"]
"""A readiness check: () -> (ok, reason); the reason never holds a secret."""


class PullMetricReader(MetricReader):
    """Collects on demand (a scrape) instead of on a timer."""

    def __init__(self) -> None:
        super().__init__(preferred_temporality={kind: AggregationTemporality.CUMULATIVE for kind in _INSTRUMENT_KINDS()})
        self._latest: MetricsData | None = None
        self.augment: Callable[[MetricsData | None], MetricsData | None] = lambda data: data
        """Adds the project's own aggregates (``metric_producers``) to each scrape."""

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs) -> None:
        self._latest = metrics_data

    def scrape(self) -> MetricsData | None:
        self.collect()
        return self.augment(self._latest)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass


def _INSTRUMENT_KINDS():
    from opentelemetry.sdk.metrics import (
        Counter,
        Histogram as HistogramInstrument,
        ObservableCounter,
        ObservableGauge,
        ObservableUpDownCounter,
        UpDownCounter,
    )

    return (Counter, UpDownCounter, HistogramInstrument, ObservableCounter, ObservableUpDownCounter, ObservableGauge)


_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def prometheus_name(name: str) -> str:
    """OTel instrument or attribute name -> Prometheus name (dots and other
    characters become underscores)."""
    sanitized = _INVALID.sub("_", name)
    return "_" + sanitized if sanitized[:1].isdigit() else sanitized


class _OtelCollector:
    """prometheus_client collector over the pull reader's latest collection."""

    def __init__(self, reader: PullMetricReader) -> None:
        self._reader = reader

    def collect(self) -> Iterable:
        data = self._reader.scrape()
        if data is None:
            return
        families: dict[str, object] = {}
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    yield from self._families(metric, families)

    @staticmethod
    def _families(metric, seen: dict) -> Iterable:
        name = prometheus_name(metric.name)
        help_text = metric.description or metric.name
        data = metric.data
        points = list(data.data_points)
        label_names = sorted({prometheus_name(k) for point in points for k in point.attributes})

        def labels(point) -> list[str]:
            values = {prometheus_name(k): str(v) for k, v in point.attributes.items()}
            return [values.get(label, "") for label in label_names]

        if isinstance(data, Sum) and data.is_monotonic:
            family = CounterMetricFamily(name.removesuffix("_total"), help_text, labels=label_names)
            for point in points:
                family.add_metric(labels(point), point.value)
        elif isinstance(data, (Sum, Gauge)):
            # The semantic conventions name up-down counters of things
            # `*.count` (process.thread.count); Prometheus reserves `_count`
            # for histograms and summaries, so a gauge goes without it.
            family = GaugeMetricFamily(name.removesuffix("_count"), help_text, labels=label_names)
            for point in points:
                family.add_metric(labels(point), point.value)
        elif isinstance(data, Histogram):
            family = HistogramMetricFamily(name, help_text, labels=label_names)
            for point in points:
                cumulative, buckets = 0, []
                for bound, count in zip(list(point.explicit_bounds) + [float("inf")], point.bucket_counts):
                    cumulative += count
                    buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
                family.add_metric(labels(point), buckets, point.sum)
        else:  # exponential histograms: not produced by this project (see collector/README.md)
            return
        if family.name in seen:
            return
        seen[family.name] = family
        yield family


class OpsServer:
    def __init__(self, host: str, port: int, liveness: Iterable[tuple[str, Check]], readiness: Callable[[], dict[str, Check]],
                 reader: PullMetricReader | None, redact: Callable[[str], str] = str,
                 health_details: Callable[[], dict] | None = None, metrics: Callable[[], bytes] | None = None) -> None:
        """``health_details() -> dict`` adds fields to the /health body (the
        agent's ``worker_pid``); ``metrics() -> bytes`` serves /metrics from
        elsewhere (the agent's supervisor relays its worker's)."""
        self._liveness = list(liveness)
        self._health_details = health_details
        self._metrics = metrics
        self._redact = redact
        self._readiness = readiness
        self._registry = CollectorRegistry(auto_describe=False)
        if reader is not None:
            self._registry.register(_OtelCollector(reader))
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                try:
                    if path == "/health":
                        report = server._run(server._liveness)
                        if server._health_details is not None:
                            report = {**server._health_details(), **report}
                        server._respond_json(self, report)
                    elif path == "/ready":
                        server._respond_json(self, server._run(server._readiness().items()))
                    elif path == "/metrics":
                        body = server._metrics() if server._metrics is not None else generate_latest(server._registry)
                        self._send(200, CONTENT_TYPE_LATEST, body)
                    else:
                        self._send(404, "application/json", b'{"error":"not found; try /health, /ready or /metrics"}')
                except Exception:
                    _log.warning("ops endpoint %s failed", path, exc_info=True)
                    self._send(500, "application/json", b'{"error":"internal error"}')

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args) -> None:  # noqa: A002 (http.server's name)
                pass  # a scrape every few seconds is not worth a log line

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.address = self._server.server_address
        # serve_forever notices shutdown() only between polls (0.5 s by
        # default), which every process exit would wait for.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="rqa-otel ops http", daemon=True
        )
        self._thread.start()

    def _run(self, checks: Iterable[tuple[str, Check]]) -> dict:
        results = {}
        for name, check in checks:
            try:
                ok, reason = check()
            except Exception as exc:
                ok, reason = False, f"check raised {type(exc).__name__}"
            # A reason may quote an endpoint URL; its user info must not show.
            results[name] = {"ok": bool(ok), "reason": self._redact(str(reason))}
        failing = sorted(name for name, result in results.items() if not result["ok"])
        return {"status": "ok" if not failing else "failing", "failing": failing, "checks": results}

    @staticmethod
    def _respond_json(handler, report: dict) -> None:
        body = json.dumps(report, sort_keys=True).encode()
        handler._send(200 if report["status"] == "ok" else 503, "application/json", body)

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()

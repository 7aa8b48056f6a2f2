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
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable

from prometheus_client.registry import CollectorRegistry

from rqa_otel.ops.exposition import OtelCollector, PullMetricReader, render
from rqa_otel.ops.readiness import Check

_log = logging.getLogger("rqa_otel.ops")

class OpsServer:
    def __init__(self, host: str, port: int, liveness: Iterable[tuple[str, Check]], readiness: Callable[[], dict[str, Check]],
                 reader: PullMetricReader | None, redact: Callable[[str], str] = str,
                 health_details: Callable[[], dict] | None = None,
                 metrics: Callable[[str], tuple[bytes, str]] | None = None) -> None:
        """``health_details() -> dict`` adds fields to the /health body (the
        agent's ``worker_pid``); ``metrics(accept) -> (body, content_type)``
        serves /metrics from elsewhere (the agent's supervisor relays its
        worker's, passing the scraper's Accept header on)."""
        self._liveness = list(liveness)
        self._health_details = health_details
        self._metrics = metrics
        self._redact = redact
        self._readiness = readiness
        self._registry = CollectorRegistry(auto_describe=False)
        if reader is not None:
            self._registry.register(OtelCollector(reader))
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
                        accept = self.headers.get("Accept", "")
                        if server._metrics is not None:
                            body, content_type = server._metrics(accept)
                        else:
                            body, content_type = render(server._registry, accept)
                        self._send(200, content_type, body)
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

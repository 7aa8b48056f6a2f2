"""/health, /ready and /metrics for an instrumented process (opt-in port).

- /health: liveness. 200 while the export threads are alive, else 503.
- /ready: readiness. Each check (exporters working, circuit breakers closed,
  checks other capabilities add) reports ok and a short reason; 200 when all
  pass, 503 with the failing ones named. Bodies are JSON and never carry a
  setting's value, so no secret can leak through them.
- /metrics: the process's OTel metrics in Prometheus text format, collected
  on each scrape by a pull reader beside the periodic exporter.

It binds 127.0.0.1 unless told otherwise: an ops port is not for the world.

It runs inside the strategy, so no client may cost the strategy more than a
socket: one thread waits on every connection (a selector) and reads each
request head without blocking, within ``idle_timeout_s`` between bytes and
``read_timeout_s`` in all, and at most ``max_request_bytes``; only a whole
request goes to one of ``workers`` threads, which answers and closes
(HTTP/1.0, ``Connection: close``). Idle or half-open connections therefore
hold no thread; past ``max_connections`` the oldest idle one is closed; the
listen backlog is 128; a client that disconnects is forgotten without a
word (the stdlib's ThreadingHTTPServer gave each connection a thread with no
timeout, and printed a traceback for every reset).
"""

from __future__ import annotations

import io
import json
import logging
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Callable, Iterable

from prometheus_client.registry import CollectorRegistry

from rqa_otel.ops.exposition import OtelCollector, PullMetricReader, render
from rqa_otel.ops.readiness import Check

_log = logging.getLogger("rqa_otel.ops")

BACKLOG = 128


class OpsServer:
    def __init__(self, host: str, port: int, liveness: Iterable[tuple[str, Check]], readiness: Callable[[], dict[str, Check]],
                 reader: PullMetricReader | None, redact: Callable[[str], str] = str,
                 health_details: Callable[[], dict] | None = None,
                 metrics: Callable[[str], tuple[bytes, str]] | None = None,
                 *, workers: int = 4, max_connections: int = 256, idle_timeout_s: float = 5.0,
                 read_timeout_s: float = 10.0, write_timeout_s: float = 10.0, max_request_bytes: int = 16384) -> None:
        """``health_details() -> dict`` adds fields to the /health body (the
        agent's ``worker_pid``); ``metrics(accept) -> (body, content_type)``
        serves /metrics from elsewhere (the agent's supervisor relays its
        worker's, passing the scraper's Accept header on). The limits are the
        module doc's."""
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
            def setup(self) -> None:
                # The request head was read by the selector; only the answer
                # is written here, bounded by the write timeout.
                self.connection, head = self.request
                self.connection.settimeout(write_timeout_s)
                self.rfile = io.BytesIO(head)
                self.wfile = self.connection.makefile("wb")

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
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args) -> None:  # noqa: A002 (http.server's name)
                pass  # a scrape every few seconds is not worth a log line

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, port), family=family, backlog=BACKLOG)
        self.address = listener.getsockname()[:2]
        self._connections = _Connections(
            listener, lambda conn, head, peer: Handler((conn, head), peer, server), workers, max_connections,
            idle_timeout_s, read_timeout_s, max_request_bytes,
        )

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
        self._connections.stop()


_HEAD_END = b"\r\n\r\n"
_TOO_LARGE = b"HTTP/1.0 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Waiting:
    __slots__ = ("peer", "head", "accepted", "last_byte")

    def __init__(self, peer, now: float) -> None:
        self.peer = peer
        self.head = bytearray()
        self.accepted = now
        self.last_byte = now


class _Connections:
    """The selector thread and the worker pool (see the module doc)."""

    def __init__(self, listener: socket.socket, serve: Callable, workers: int, max_connections: int,
                 idle_timeout_s: float, read_timeout_s: float, max_request_bytes: int) -> None:
        self._listener = listener
        self._serve = serve
        self._max_connections = max_connections
        self._idle_timeout_s = idle_timeout_s
        self._read_timeout_s = read_timeout_s
        self._max_request_bytes = max_request_bytes
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rqa-otel ops http")
        self._waiting: dict[socket.socket, _Waiting] = {}
        self._busy = 0  # handed to a worker, not yet closed
        self._busy_lock = threading.Lock()
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name="rqa-otel ops http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._thread.join(2.0)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        try:
            while not self._stopping:
                for key, _ in self._selector.select(timeout=min(0.25, self._idle_timeout_s / 4)):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is not self._wake_r:
                        self._read(key.fileobj)
                self._expire(time.monotonic())
        except Exception:  # never a traceback per client; the port just stops answering
            _log.warning("the ops HTTP server stopped", exc_info=True)
        finally:
            for conn in list(self._waiting):
                self._close(conn)
            for sock in (self._listener, self._wake_r, self._wake_w):
                _close_quietly(sock)
            self._selector.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of descriptors: make room, the client retries
                self._close_oldest()
                return
            with self._busy_lock:
                full = len(self._waiting) + self._busy >= self._max_connections
            if full and not self._close_oldest():
                _answer_and_close(conn, _BUSY)
                continue
            conn.setblocking(False)
            self._waiting[conn] = _Waiting(peer, time.monotonic())
            self._selector.register(conn, selectors.EVENT_READ)

    def _read(self, conn: socket.socket) -> None:
        state = self._waiting.get(conn)
        if state is None:
            return
        try:
            chunk = conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:  # the client went away
            self._close(conn)
            return
        state.head += chunk
        state.last_byte = time.monotonic()
        end = state.head.find(_HEAD_END)
        if end < 0:
            if len(state.head) > self._max_request_bytes:
                self._forget(conn)
                _answer_and_close(conn, _TOO_LARGE)
            return
        self._forget(conn)
        conn.setblocking(True)
        with self._busy_lock:
            self._busy += 1
        try:
            self._pool.submit(self._answer, conn, bytes(state.head[: end + len(_HEAD_END)]), state.peer)
        except RuntimeError:  # shutting down
            self._done(conn)

    def _answer(self, conn: socket.socket, head: bytes, peer) -> None:
        try:
            self._serve(conn, head, peer)
        except OSError:
            pass  # the client disconnected or stopped reading: nothing to report
        except Exception:
            _log.debug("answering an ops request failed", exc_info=True)
        finally:
            self._done(conn)

    def _done(self, conn: socket.socket) -> None:
        _close_quietly(conn)
        with self._busy_lock:
            self._busy -= 1

    def _expire(self, now: float) -> None:
        for conn, state in list(self._waiting.items()):
            if now - state.last_byte > self._idle_timeout_s or now - state.accepted > self._read_timeout_s:
                self._close(conn)

    def _close_oldest(self) -> bool:
        if not self._waiting:
            return False
        self._close(min(self._waiting, key=lambda conn: self._waiting[conn].accepted))
        return True

    def _forget(self, conn: socket.socket) -> None:
        self._waiting.pop(conn, None)
        try:
            self._selector.unregister(conn)
        except (KeyError, ValueError, OSError):
            pass

    def _close(self, conn: socket.socket) -> None:
        self._forget(conn)
        _close_quietly(conn)


def _answer_and_close(conn: socket.socket, answer: bytes) -> None:
    try:
        conn.setblocking(False)
        conn.send(answer)
    except OSError:
        pass
    _close_quietly(conn)


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass

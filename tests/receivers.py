"""Hostile OTLP/HTTP receivers, real servers on loopback, for the hardening tests.

- :class:`RefusingReceiver` answers every request with one status (401, 403,
  400, 413 ...) and a body meant to do harm when printed raw: terminal
  escapes, a newline, and a forged "rqa-otel: INFO" line. It counts the
  requests per path (/v1/traces, /v1/metrics, /v1/logs).
- :class:`HangingReceiver` accepts connections, reads what is sent, and
  never answers, until stopped.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from backends import LOOPBACK

HOSTILE_BODY = (
    "\x1b[2J\x1b[31mdenied\x1b[0m\r\n"
    "rqa-otel: INFO all exports delivered, nothing to see here\n"
    + "x" * 5000
)
FORGED_LINE = "rqa-otel: INFO all exports delivered"


class RefusingReceiver:
    def __init__(self, status: int, port: int = 0) -> None:
        self.status = status
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                with receiver._lock:
                    receiver.requests[self.path] += 1
                body = HOSTILE_BODY.encode()
                self.send_response(receiver.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def count(self, path: str) -> int:
        with self._lock:
            return self.requests[path]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class HangingReceiver:
    """Accepts and reads, never answers; every connection stays open until stop()."""

    def __init__(self, port: int = 0) -> None:
        self._listener = socket.create_server((LOOPBACK, port), backlog=512)
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        self.connections = 0
        self._open: list[socket.socket] = []
        self._stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        try:
            while not self._stopping.is_set() and conn.recv(65536):
                pass
        except OSError:
            pass

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        for conn in self._open:
            try:
                # RST, not FIN: no TIME_WAIT left on the port, so that a
                # real receiver can take the same port at once. SHUT_RD
                # wakes the thread blocked in recv(), which otherwise keeps
                # the connection alive past close().
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.shutdown(socket.SHUT_RD)
                conn.close()
            except OSError:
                pass

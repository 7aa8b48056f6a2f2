"""The view's HTTP server: the standard library's ThreadingHTTPServer.

Why no web framework: the view serves a handful of GET routes to one user on
loopback; the stdlib server answers the run page of a million-trade journal
within the bench's budget (bench row view_first_page) and adds no
dependency. A background thread reads what the files gained every half
second, so the pages' one-second poll sees new data within 1.5 s.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from rqa_otel.view import pages
from rqa_otel.view.data import BadQuery, TelemetryView, UnknownRun

REFRESH_S = 0.5
PAUSE_S = 2.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_RUN_PATH = re.compile(r"^/run/([0-9A-Za-z_.-]+)$")
FILTERS = ("symbol", "side", "from", "to", "strategy", "stock", "signal", "level", "text")


def _page_number(query: dict[str, str], name: str) -> int:
    text = query.get(name, "0") or "0"
    if not text.isdigit():
        raise BadQuery(f"{name} {text!r}: expected a page number (0, 1, 2, ...)")
    return int(text)


def render(view: TelemetryView, path: str, query: dict[str, str]) -> tuple[int, str, str]:
    """(status, title, body) of a page; the body without the layout."""
    if not view.has_data():
        return 200, "no-data", ""
    if path == "/":
        strategy = query.get("strategy", "")
        rows = view.runs()
        strategies = sorted({row.strategy for row in rows if row.strategy})
        html = pages.runs_page([r for r in rows if not strategy or r.strategy == strategy], strategies, strategy)
        return 200, "runs", html
    if path == "/resources":
        return 200, "resources", pages.resources_body(view.resources())
    if path == "/pipeline":
        return 200, "pipeline", pages.pipeline_body(view.pipeline())
    match = _RUN_PATH.match(path)
    if match:
        run_id = view.resolve(unquote(match.group(1)))
        equity = view.journal.equity(run_id)
        row = view.run(run_id, equity)
        filters = {k: query[k] for k in FILTERS if query.get(k)}
        if filters.get("side") not in (None, "buy", "sell"):
            raise BadQuery(f"side {filters['side']!r}: expected buy or sell")
        body = pages.run_body(view, row, filters, _page_number(query, "trades"), _page_number(query, "logs"), live=True,
                              equity=equity)
        return 200, f"run {row.run_id}", body
    return 404, "not found", f"<h1>Not found</h1><p>{pages.escape(path)}: try <a href='/'>the runs</a>.</p>"


class _Handler(BaseHTTPRequestHandler):
    server_version = "rqa-otel-view"
    view: TelemetryView  # set on the subclass made per server
    serving: threading.Condition  # with .requests: pages being served now

    def log_message(self, format, *args):  # quiet: one user, loopback
        pass

    def do_GET(self) -> None:
        with self.serving:
            self.serving.requests += 1
        try:
            self._get()
        finally:
            with self.serving:
                self.serving.requests -= 1
                self.serving.notify_all()

    def _get(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            # No reading here: the background reader does it, and a page
            # shows what it has read so far (a million records take seconds).
            if parts.path == "/api/version":
                return self._send(200, json.dumps({"version": self.view.version()}), "application/json")
            try:
                status, title, body = render(self.view, parts.path, query)
            except UnknownRun as exc:
                status, title, body = 404, "unknown run", f'<h1>Unknown run</h1><p class="bad">{pages.escape(str(exc))}</p>'
            except BadQuery as exc:
                status, title, body = 400, "bad filter", f'<h1>Bad filter</h1><p class="bad">{pages.escape(str(exc))}</p>'
            except sqlite3.DatabaseError as exc:
                status, title = 500, "unreadable journal"
                body = (f'<h1>The trade journal cannot be read</h1><p class="bad" id="journal-error">'
                        f'{pages.escape(self.view.journal.path)}: {pages.escape(str(exc))}</p>'
                        "<p>It should be the SQLite file BacktestMonitor writes (docs/journal.md).</p>")
            if title == "no-data":
                body = pages.no_data(self.view.directory)
            if self.headers.get("X-RQA-Partial") != "1":  # the live script asks for <main>'s content alone
                body = pages.page(f"rqa-otel view: {title}", body)
            self._send(status, body, "text/html; charset=utf-8")
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # one broken page must not end the server
            traceback.print_exc(file=sys.stderr)
            try:
                self._send(500, "<h1>Internal error</h1><p>the view's terminal has the traceback</p>", "text/html")
            except OSError:
                pass

    def _send(self, status: int, text: str, content_type: str) -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    # SO_REUSEADDR (inherited) lets a restarted view take its port back at
    # once; it does not let two listen on it: a taken port still fails.
    daemon_threads = True


class ViewServer:
    """``ViewServer(directory, host, port)``: bound at construction (an
    OSError if the port is taken); ``serve_forever()`` or ``start()``."""

    def __init__(self, directory: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.view = TelemetryView(directory)
        self._serving = threading.Condition()
        self._serving.requests = 0
        handler = type("Handler", (_Handler,), {"view": self.view, "serving": self._serving})
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.httpd = type("Server", (_Server,), {"address_family": family})((host, port), handler)
        self._stop = threading.Event()
        self._refresher = threading.Thread(target=self._refresh_loop, name="rqa-otel view reader", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def _refresh_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.view.refresh(self._let_pages_go_first)
            except Exception:
                traceback.print_exc(file=sys.stderr)
            self._stop.wait(REFRESH_S)

    def _let_pages_go_first(self) -> None:
        """The reader waits (up to PAUSE_S) while a page is being served: a
        million log records take seconds to read, a page a fraction of one."""
        with self._serving:
            self._serving.wait_for(lambda: not self._serving.requests, PAUSE_S)

    def wait_until_read(self, files: tuple[str, ...] = ("traces.jsonl", "logs.jsonl", "metrics.jsonl"),
                        timeout_s: float = 30.0) -> bool:
        """Wait until the reader has read ``files`` up to their current size."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sizes = {}
            for name in files:
                try:
                    sizes[name] = os.path.getsize(os.path.join(self.view.directory, name))
                except OSError:
                    sizes[name] = 0
            if all(self.view.files.indexed[name] >= size for name, size in sizes.items()):
                return True
            time.sleep(0.02)
        return False

    def start(self) -> "ViewServer":
        self._refresher.start()
        threading.Thread(target=self.httpd.serve_forever, name="rqa-otel view", daemon=True).start()
        return self

    def serve_forever(self) -> None:
        self._refresher.start()
        self.httpd.serve_forever()

    def close(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

"""The OTLP/HTTP transport keeps its connection alive between requests, and
a connection the receiver closed while idle costs no failed export."""

from __future__ import annotations

import gzip
import http.server
import threading
import time

import pytest

from rqa_otel.export.delivery import Outcome, Payload, Value
from rqa_otel.export.otlp.transport import OtlpHttpTransport


class _Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    connections: list = []
    bodies: list = []
    answer = (200, b"", {})
    close_after = None  # the body after whose answer the receiver closes

    def setup(self):
        super().setup()
        type(self).connections.append(self.client_address)

    def do_POST(self):  # noqa: N802 (http.server's name)
        received = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append(received)
        status, body, headers = type(self).answer
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
        # As a receiver whose keep-alive timeout ran out: closed, unannounced.
        self.close_connection = received == type(self).close_after

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    _Receiver.connections, _Receiver.bodies, _Receiver.answer = [], [], (200, b"", {})
    _Receiver.close_after = None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _payload(body: bytes = b"x") -> Payload:
    return Payload("metrics", body, Value.NORMAL, 1)


def test_requests_share_one_connection_and_survive_its_closing(receiver):
    transport = OtlpHttpTransport(f"http://127.0.0.1:{receiver.server_port}/v1/metrics", {"X-Team": "quant"}, 5)
    assert transport.send(_payload(b"one"), 5).outcome is Outcome.DELIVERED
    _Receiver.close_after = b"two"
    assert transport.send(_payload(b"two"), 5).outcome is Outcome.DELIVERED
    assert len(_Receiver.connections) == 1 and _Receiver.bodies == [b"one", b"two"]
    time.sleep(0.3)  # the receiver has closed the idle connection
    assert transport.send(_payload(b"three"), 5).outcome is Outcome.DELIVERED
    assert len(_Receiver.connections) == 2 and _Receiver.bodies[-1] == b"three"
    transport.shutdown()


def test_a_refusal_is_read_as_the_receiver_wrote_it(receiver):
    _Receiver.answer = (503, gzip.compress(b"overloaded, try later"), {"Content-Encoding": "gzip", "Retry-After": "7"})
    transport = OtlpHttpTransport(f"http://127.0.0.1:{receiver.server_port}/v1/metrics", {}, 5, gzip=True)
    result = transport.send(_payload(b"body"), 5)
    assert result.outcome is Outcome.RETRY_LATER and result.retry_after_s == 7.0
    assert "HTTP 503" in result.detail and "overloaded, try later" in result.detail
    assert gzip.decompress(_Receiver.bodies[0]) == b"body"
    transport.shutdown()

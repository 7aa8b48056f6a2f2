"""The OTLP/HTTP transport keeps its connection alive between requests, and
a connection the receiver closed while idle costs no failed export."""

from __future__ import annotations

import gzip
import socket
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


class _ScriptedReceiver:
    """A TCP server that reads each request and writes the next scripted
    answer, byte for byte; ``close`` after an answer ends that connection."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while self.answers:
            conn, _ = self.server.accept()
            with conn, conn.makefile("rb") as reader:  # both closed: the connection ends
                while self.answers:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = reader.readline()
                        if not line:
                            break
                        head += line
                    if not head:
                        break
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    self.requests.append(head + reader.read(length))
                    answer, close = self.answers.pop(0)
                    conn.sendall(answer)
                    if close:
                        break

    def close(self):
        self.server.close()


@pytest.mark.parametrize("answer, close, outcome, detail", [
    # a chunked refusal, read whole
    (b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbad \r\n7\r\nrequest\r\n0\r\n\r\n",
     False, Outcome.REJECTED, "HTTP 400 from OTLP http/protobuf"),
    # an interim 100 Continue, then the answer
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False, Outcome.DELIVERED, ""),
    # HTTP/1.0 with no length: the body ends with the connection
    (b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 2\r\n\r\nbusy", True, Outcome.RETRY_LATER, "busy"),
    # cut short: retried, never taken for an answer
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", True, Outcome.RETRY_LATER, "cut short"),
    (b"SSH-2.0-OpenSSH\r\n", True, Outcome.RETRY_LATER, "not an HTTP/1.x status line"),
])
def test_answers_are_read_as_http_client_reads_them(answer, close, outcome, detail):
    receiver = _ScriptedReceiver([(answer, close), (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False)])
    transport = OtlpHttpTransport(f"http://127.0.0.1:{receiver.port}/v1/logs", {"X-Team": "quant"}, 5)
    try:
        result = transport.send(_payload(b"first"), 5)
        assert result.outcome is outcome and detail in result.detail
        if "bad request" in answer.decode():
            assert "bad request" in result.detail
        # The next request goes out whole, on the same or a new connection.
        assert transport.send(_payload(b"second"), 5).outcome is Outcome.DELIVERED
        first, second = receiver.requests
        assert first.startswith(b"POST /v1/logs HTTP/1.1\r\n") and first.endswith(b"\r\n\r\nfirst")
        assert b"\r\nHost: 127.0.0.1:%d\r\n" % receiver.port in first and b"\r\nX-Team: quant\r\n" in first
        assert second.endswith(b"\r\n\r\nsecond")
    finally:
        transport.shutdown()
        receiver.close()


def test_a_header_value_cannot_forge_a_header(receiver):
    transport = OtlpHttpTransport(
        f"http://127.0.0.1:{receiver.server_port}/v1/metrics", {"X-Team": "quant\r\nX-Forged: 1"}, 5
    )
    result = transport.send(_payload(), 5)
    assert result.outcome is Outcome.RETRY_LATER and "Invalid header value" in result.detail
    assert _Receiver.bodies == []
    transport.shutdown()

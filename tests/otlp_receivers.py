"""Real OTLP receivers in this process, for what rotel's log cannot show:
request headers, paths, compression and TLS handshakes.

- ``HttpReceiver``: an HTTP(S) server (``http.server``, optionally wrapped
  in ``ssl``, optionally requiring a client certificate) that answers every
  POST with 200 and an empty Export*ServiceResponse, recording path,
  headers and the body (gunzipped when ``Content-Encoding: gzip``).
- ``GrpcReceiver``: a ``grpc.server`` serving the three OTLP Export methods
  (plaintext or ``ssl_server_credentials``, optionally requiring a client
  certificate), recording metadata and the request bytes.
- ``ByteCounter``: a TCP relay in front of a receiver that counts the bytes
  clients send (to see grpc compression on the wire).
- ``make_pki``: a CA, a server certificate for 127.0.0.1/localhost, a client
  certificate, and an unrelated CA, generated with ``cryptography``.

Requests are parsed with the official protobuf classes (``decoded``).
"""

from __future__ import annotations

import datetime
import gzip
import http.server
import socket
import ssl
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

REQUEST_TYPES = {
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
}


@dataclass
class Received:
    signal: str
    path: str
    headers: dict[str, str]
    body: bytes
    """Decompressed request bytes."""
    wire_bytes: int
    peer_subject: str = ""

    def decoded(self) -> Any:
        message = REQUEST_TYPES[self.signal]()
        message.ParseFromString(self.body)
        return message


def _signal_of(path: str) -> str:
    for signal, marker in (("traces", "trace"), ("metrics", "metric"), ("logs", "log")):
        if marker in path.lower():
            return signal
    return "unknown"


@dataclass
class _Recorder:
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, received: Received) -> None:
        with self.lock:
            self.requests.append(received)

    def of(self, signal: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.signal == signal]

    def wait_for(self, *signals: str, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.of(signal) for signal in signals):
                return
            time.sleep(0.05)
        raise AssertionError(f"no {signals} request within {timeout_s} s; got {[r.path for r in self.requests]}")


class HttpReceiver(_Recorder):
    """OTLP/HTTP on 127.0.0.1 (``tls``: ``(cert, key, client_ca)``;
    client_ca set: a client certificate is required)."""

    def __init__(self, tls: tuple[str, str, str | None] | None = None, delay_s: float = 0.0) -> None:
        super().__init__()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                peer = ""
                if isinstance(self.connection, ssl.SSLSocket) and self.connection.getpeercert():
                    peer = dict(x[0] for x in self.connection.getpeercert()["subject"]).get("commonName", "")
                receiver.add(Received(_signal_of(self.path), self.path, dict(self.headers.items()), body, len(raw), peer))
                if delay_s:
                    time.sleep(delay_s)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if tls is not None:
            cert, key, client_ca = tls
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            if client_ca:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(client_ca)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.port = self.server.server_address[1]
        self.endpoint = f"{scheme}://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class GrpcReceiver(_Recorder):
    """OTLP/gRPC on 127.0.0.1 (``tls`` as for HttpReceiver)."""

    def __init__(self, tls: tuple[str, str, str | None] | None = None) -> None:
        super().__init__()
        import grpc

        receiver = self

        def handler_for(method: str):
            def export(request: bytes, context: Any) -> bytes:
                metadata = {key: value for key, value in context.invocation_metadata()}
                peer = ""
                subject = context.auth_context().get("x509_common_name")
                if subject:
                    peer = subject[0].decode()
                receiver.add(Received(_signal_of(method), method, metadata, request, len(request), peer))
                return b""

            return grpc.unary_unary_rpc_method_handler(export)  # raw bytes in and out

        class Handler(grpc.GenericRpcHandler):
            def service(self, handler_call_details: Any) -> Any:
                return handler_for(handler_call_details.method)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((Handler(),))
        if tls is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
            self.endpoint = f"http://127.0.0.1:{self.port}"
        else:
            cert, key, client_ca = tls
            credentials = grpc.ssl_server_credentials(
                [(Path(key).read_bytes(), Path(cert).read_bytes())],
                root_certificates=Path(client_ca).read_bytes() if client_ca else None,
                require_client_auth=bool(client_ca),
            )
            self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
            self.endpoint = f"https://127.0.0.1:{self.port}"
        self.server.start()

    def close(self) -> None:
        self.server.stop(0)


class ByteCounter:
    """A TCP relay to ``127.0.0.1:target_port`` counting client-to-server bytes."""

    def __init__(self, target_port: int) -> None:
        self.sent = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._target = target_port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, count: bool) -> None:
        try:
            while data := source.recv(65536):
                if count:
                    with self._lock:
                        self.sent += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.close()


@dataclass
class Pki:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str
    """A CA that signed nothing here: verifying against it must fail."""


def make_pki(directory: Path) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(key: Any, file: str) -> str:
        path = directory / file
        path.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        return str(path)

    def write_cert(cert: Any, file: str) -> str:
        path = directory / file
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return str(path)

    def ca(common: str) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(name(common)).issuer_name(name(common))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    def leaf(common: str, ca_key: Any, ca_cert: Any, server: bool) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder().subject_name(name(common)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server
                                       else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return key, builder.sign(ca_key, hashes.SHA256())

    ca_key, ca_cert = ca("rqa test CA")
    server_key, server_cert = leaf("127.0.0.1", ca_key, ca_cert, server=True)
    client_key, client_cert = leaf("rqa-strategy-client", ca_key, ca_cert, server=False)
    _, other_cert = ca("unrelated CA")
    return Pki(
        ca=write_cert(ca_cert, "ca.pem"),
        server_cert=write_cert(server_cert, "server.pem"),
        server_key=write_key(server_key, "server-key.pem"),
        client_cert=write_cert(client_cert, "client.pem"),
        client_key=write_key(client_key, "client-key.pem"),
        other_ca=write_cert(other_cert, "other-ca.pem"),
    )

"""OTLP transports, and the one place that reads ``export.otlp``.

:func:`otlp_transport` turns the settings into a transport for one signal;
every OTLP sender goes through it: the trace and metric exporters, the log
sink (spool on or off), the live reconnect at a settings reload, and
``rqa-otel replay``. What it computes, as the OTel specification has it for
``OTEL_EXPORTER_OTLP_*`` and ``OTEL_EXPORTER_OTLP_<SIGNAL>_*``:

- per-signal settings over generic ones (``OtlpSettings.for_signal``);
- the URL: for http/protobuf the generic endpoint plus ``/v1/<signal>``,
  a per-signal endpoint as it is; for grpc the endpoint's host and port;
  defaults http://localhost:4318 and :4317;
- TLS: ``https://`` always, ``http://`` never, an endpoint without a
  scheme unless ``insecure``. The receiver is verified against
  ``certificate`` (a PEM CA file) or the system's CAs; ``client_key`` with
  ``client_certificate`` adds mTLS. A TLS setting that cannot be applied
  is an error (SettingsError), never a quiet fall back to plaintext;
- the headers, as HTTP headers or grpc metadata (keys lower-cased, as grpc
  requires); credentials in the URL (``http://user:pass@host``) become a
  basic Authorization header and are kept out of the destination text;
- ``compression``: gzip bodies with ``Content-Encoding: gzip`` (http), or
  grpc's gzip message compression;
- the per-request timeout: no single request waits longer, whatever time
  the sender has left.

The transports send bytes an encoder made (``rqa_otel.export.otlp.encoding``):
an HTTP POST on a kept-alive connection (a plain socket for http://,
http.client for https://; a third of the CPU of requests: logs at full
rate send a hundred requests a second), or grpc's
generic unary call with no serializer. Status mapping, as the OTLP
specification has it: HTTP through :func:`~rqa_otel.export.delivery.classify_http`
(429 and 5xx retried, other 4xx rejected); for grpc, UNAVAILABLE,
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, CANCELLED, OUT_OF_RANGE and
DATA_LOSS are retried, any other code rejected; network errors are retried.
"""

from __future__ import annotations

import logging
import math
import sys
import select
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from rqa_otel._util.version import rqa_otel_version
from rqa_otel.config.model import OtlpSettings, SettingsError
from rqa_otel.export.delivery import DELIVERED, Outcome, Payload, SendResult, classify_http
from rqa_otel.export.otlp.plain_http import PlainHttpConnection

_log = logging.getLogger(__name__)

DEFAULT_ENDPOINTS = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}

EXPORT_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
"""grpc methods by signal."""


@dataclass(frozen=True)
class Tls:
    """What a TLS connection verifies and presents: PEM file paths, empty
    for the system's CAs and no client certificate."""

    ca_file: str = ""
    client_certificate: str = ""
    client_key: str = ""


def otlp_transport(signal: str, otlp: OtlpSettings) -> "OtlpHttpTransport | OtlpGrpcTransport":
    """The transport for ``signal`` (traces | metrics | logs) that
    ``export.otlp`` describes (see the module docstring)."""
    otlp = otlp.for_signal(signal)
    url, headers = _without_credentials(otlp_url(signal, otlp), otlp.headers)
    tls = _tls(signal, otlp, url)
    gzip = otlp.compression == "gzip"
    if otlp.protocol == "grpc":  # its user agent is the channel's (grpc_channel)
        return OtlpGrpcTransport(signal, url, headers, otlp.timeout_s, gzip=gzip, tls=tls)
    if not any(key.lower() == "user-agent" for key in headers):  # the user's own wins
        headers = {**headers, "User-Agent": user_agent()}
    return OtlpHttpTransport(url, headers, otlp.timeout_s, gzip=gzip, tls=tls)


def user_agent() -> str:
    """Who sends (the OTLP specification: exporters SHOULD say which
    exporter, language and version they are), e.g. ``rqa-otel/0.2.0 (Python 3.11)``."""
    return f"rqa-otel/{rqa_otel_version()} (Python {sys.version_info[0]}.{sys.version_info[1]})"


def otlp_url(signal: str, otlp: OtlpSettings) -> str:
    """Where ``signal`` goes (``otlp`` already resolved for the signal): for
    grpc the endpoint; for http/protobuf a per-signal endpoint as it is, the
    generic one plus ``/v1/<signal>``. An endpoint without a scheme gets
    https, or http with ``insecure``."""
    base = otlp.endpoint or DEFAULT_ENDPOINTS[otlp.protocol]
    if "://" not in base:
        base = ("http://" if otlp.insecure else "https://") + base
    if otlp.protocol == "grpc" or otlp.signal_endpoint:
        return base
    return base.rstrip("/") + f"/v1/{signal}"


def _tls(signal: str, otlp: OtlpSettings, url: str) -> Tls | None:
    """The TLS to use for ``url``, or None for plaintext (``http://``).
    A client key without its certificate, or the reverse, is an error."""
    if bool(otlp.client_key) != bool(otlp.client_certificate):
        given, missing = ("client_key", "client_certificate") if otlp.client_key else ("client_certificate", "client_key")
        raise SettingsError(
            f"export.otlp {given} is set for {signal} but {missing} is not: mTLS needs both "
            f"(OTEL_EXPORTER_OTLP_CLIENT_KEY and OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE)"
        )
    if urlsplit(url).scheme == "http":
        if otlp.certificate or otlp.client_key:
            _log.warning(
                "OTLP %s endpoint %s is plaintext (http://), so its certificate settings are not used; "
                "use https:// for TLS", signal, _host_port(url),
            )
        return None
    return Tls(otlp.certificate, otlp.client_certificate, otlp.client_key)


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port is not None else str(parts.hostname)


def gzip_body(body: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip framing; level 6, zlib's default
    return compressor.compress(body) + compressor.flush()


def _without_credentials(url: str, headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """``url`` without its userinfo, which becomes a basic Authorization
    header (as the SDK's requests-based exporter sent it) unless the headers
    already hold one."""
    parts = urlsplit(url)
    headers = dict(headers)
    if parts.username is None:
        return url, headers
    if not any(key.lower() == "authorization" for key in headers):
        credentials = f"{parts.username}:{parts.password or ''}"
        import base64

        headers["authorization"] = "Basic " + base64.b64encode(credentials.encode("latin-1")).decode()
    netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)), headers


class OtlpHttpTransport:
    """OTLP/HTTP: one POST of protobuf bytes per payload, on a kept-alive
    connection (at most one idle; a concurrent send opens its own). No
    request waits longer than ``request_timeout_s`` (``export.otlp.timeout_s``)
    nor than the time its sender has left. ``http://``: a plain socket
    (rqa_otel.export.otlp.plain_http); ``https://``: the standard library's
    http.client. urllib3 would add ~15 ms to every start-up."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        request_timeout_s: float = math.inf,
        gzip: bool = False,
        tls: Tls | None = None,
    ) -> None:
        self.url = url
        self.request_timeout_s = request_timeout_s
        self.gzip = gzip
        self.headers = {"Content-Type": "application/x-protobuf", **headers}
        """Sent with every request (credentials included: never shown)."""
        if gzip:
            self.headers["Content-Encoding"] = "gzip"
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname or "localhost", parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._tls = tls or Tls()
        self._ssl_context: Any = None
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self.destination = f"OTLP http/protobuf {url}"

    def send(self, payload: Payload, timeout_s: float) -> SendResult:
        connection = None
        try:
            body = gzip_body(payload.body) if self.gzip else payload.body
            connection = self._connection()
            status, headers, data = self._post(connection, body, min(timeout_s, self.request_timeout_s))
        except Exception as exc:  # connection refused, reset, timeout, TLS
            if connection is not None:
                connection.close()
            return SendResult(Outcome.RETRY_LATER, detail=f"{type(exc).__name__}: {exc}")
        self._keep(connection)
        return classify_http(status, headers, data, self.destination)

    def _post(self, connection: Any, body: bytes, timeout_s: float) -> tuple[int, Any, bytes]:
        deadline = time.monotonic() + timeout_s
        if connection.sock is None:
            connection.timeout = max(timeout_s, 0.001)
            connection.connect()
        # The rest of the time for sending and for the answer.
        connection.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        if isinstance(connection, PlainHttpConnection):
            status, headers, data, will_close = connection.exchange(self._target, self.headers, body)
        else:
            connection.request("POST", self._target, body=body, headers=self.headers)
            response = connection.getresponse()
            status, headers, data, will_close = response.status, response.headers, response.read(), response.will_close
        if (headers.get("content-encoding") or "").lower() == "gzip" and data:
            try:
                data = zlib.decompress(data, 47)  # a gzip or zlib answer, as urllib3 decoded it
            except zlib.error:
                pass
        if will_close:
            connection.close()
        return status, headers, data

    def _connection(self) -> Any:
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is not None and connection.sock is not None and _dropped(connection.sock):
            connection.close()  # the receiver closed it while idle: a new one
        if connection is not None:
            return connection
        if not self._https:
            return PlainHttpConnection(self._host, self._port)
        import http.client  # for TLS only: with the email package and ssl, ~10 ms to import

        if self._ssl_context is None:
            self._ssl_context = _ssl_context(self._tls)
        return http.client.HTTPSConnection(self._host, self._port, context=self._ssl_context)

    def _keep(self, connection: Any) -> None:
        with self._lock:
            if not self._idle:
                self._idle.append(connection)
                return
        connection.close()

    def after_fork(self) -> None:
        # The parent's sockets are the parent's; its lock may have been held.
        self._lock = threading.Lock()
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def shutdown(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def _dropped(sock: Any) -> bool:
    """An idle kept-alive socket that is readable has been closed (or sent
    something unasked): not to be reused, as urllib3 checks too."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _ssl_context(tls: Tls) -> Any:
    """Verified TLS (CERT_REQUIRED, host name checked) against ``tls.ca_file``
    or the system's CAs, with the client certificate when given; never
    unverified."""
    import ssl

    context = ssl.create_default_context(cafile=tls.ca_file or None)
    if tls.client_certificate:
        context.load_cert_chain(tls.client_certificate, tls.client_key or None)
    return context


class OtlpGrpcTransport:
    """OTLP/gRPC: grpc's generic unary call with the payload's bytes."""

    def __init__(
        self,
        signal: str,
        url: str,
        headers: Mapping[str, str],
        request_timeout_s: float = math.inf,
        gzip: bool = False,
        tls: Tls | None = None,
    ) -> None:
        self._method = EXPORT_METHODS[signal]
        self.url = url
        self.request_timeout_s = request_timeout_s
        self._metadata = tuple((key.lower(), value) for key, value in headers.items())
        self._gzip = gzip
        self._tls = tls
        self._connect()
        self.destination = f"OTLP grpc {url}"

    def _connect(self) -> None:
        import grpc  # see grpc_channel

        self._channel = grpc_channel(self.url, self._tls)
        self._export = self._channel.unary_unary(self._method)  # no serializers: raw bytes in and out
        self._compression = grpc.Compression.Gzip if self._gzip else None

    def send(self, payload: Payload, timeout_s: float) -> SendResult:
        import grpc  # imported with the channel already (grpc_channel); a dictionary lookup here

        try:
            self._export(
                payload.body,
                timeout=min(timeout_s, self.request_timeout_s),
                metadata=self._metadata,
                compression=self._compression,
            )
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else None
            detail = f"grpc {getattr(code, 'name', code)}: {error.details() if hasattr(error, 'details') else error}"
            if code in _grpc_retryable():
                return SendResult(Outcome.RETRY_LATER, detail=detail)
            return SendResult(Outcome.REJECTED, detail=detail)
        return DELIVERED

    def after_fork(self) -> None:
        self._connect()  # a grpc channel must not be shared across fork()

    def shutdown(self) -> None:
        self._channel.close()


def grpc_channel(url: str, tls: Tls | None = None) -> Any:
    """A grpc channel to ``http(s)://host[:port]``: plaintext for http, TLS
    for https (verified against ``tls.ca_file`` or the system's CAs, with
    the client certificate when given). No port: 443 for https, 80 for http."""
    # grpc is imported here, not at the top: it costs a tenth of a second at
    # import, and only a process that sends OTLP over grpc needs it.
    import grpc

    parts = urlsplit(url)
    port = parts.port if parts.port is not None else (80 if parts.scheme == "http" else 443)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    target = f"{host}:{port}"
    options = [("grpc.primary_user_agent", user_agent())]  # before grpc's own "grpc-python/..."
    if parts.scheme == "http":
        return grpc.insecure_channel(target, options)
    tls = tls or Tls()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read_pem(tls.ca_file),
        private_key=_read_pem(tls.client_key),
        certificate_chain=_read_pem(tls.client_certificate),
    )
    return grpc.secure_channel(target, credentials, options)


def _read_pem(path: str) -> bytes | None:
    """A PEM file's bytes (None for none). The settings checked it at load;
    one gone since is a SettingsError naming it, not a plaintext channel."""
    if not path:
        return None
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise SettingsError(f"cannot read TLS file {path}: {exc.strerror or exc}") from None


_GRPC_RETRYABLE: frozenset | None = None


def _grpc_retryable() -> frozenset:
    global _GRPC_RETRYABLE
    if _GRPC_RETRYABLE is None:
        import grpc  # see grpc_channel

        c = grpc.StatusCode
        _GRPC_RETRYABLE = frozenset(
            {c.UNAVAILABLE, c.DEADLINE_EXCEEDED, c.RESOURCE_EXHAUSTED, c.ABORTED, c.CANCELLED, c.OUT_OF_RANGE, c.DATA_LOSS}
        )
    return _GRPC_RETRYABLE

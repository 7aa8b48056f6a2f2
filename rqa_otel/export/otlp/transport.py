"""OTLP transports, and the one place that reads ``export.otlp``.

:func:`otlp_transport` turns the settings (endpoint, protocol, headers,
timeout_s) into a transport for one signal; every OTLP sender goes through
it: the trace and metric exporters, the log sink, the live reconnect at a
settings reload, and ``rqa-otel replay``. What it computes, as the OTel
specification has it for ``OTEL_EXPORTER_OTLP_*``:

- the URL: for http/protobuf the base endpoint plus ``/v1/<signal>``; for
  grpc the base endpoint; defaults http://localhost:4318 and :4317;
- TLS: an https endpoint gets a TLS channel (grpc) or connection (http);
- the headers, as HTTP headers or grpc metadata (keys lower-cased, as grpc
  requires); credentials in the URL (``http://user:pass@host``) become a
  basic Authorization header and are kept out of the destination text;
- the per-request timeout: no single request waits longer, whatever time
  the sender has left.

The transports send bytes an encoder made (``rqa_otel.export.otlp.encoding``):
an HTTP POST through a one-connection urllib3 pool (a third of the CPU of
requests: logs at full rate send a hundred requests a second), or grpc's
generic unary call with no serializer. Status mapping, as the OTLP
specification has it: HTTP through :func:`~rqa_otel.export.delivery.classify_http`
(429 and 5xx retried, other 4xx rejected); for grpc, UNAVAILABLE,
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, CANCELLED, OUT_OF_RANGE and
DATA_LOSS are retried, any other code rejected; network errors are retried.
"""

from __future__ import annotations

import math
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

import urllib3

from rqa_otel.config.model import OtlpSettings
from rqa_otel.export.delivery import DELIVERED, Outcome, Payload, SendResult, classify_http

DEFAULT_ENDPOINTS = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}

EXPORT_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
"""grpc methods by signal."""


def otlp_transport(signal: str, otlp: OtlpSettings) -> "OtlpHttpTransport | OtlpGrpcTransport":
    """The transport for ``signal`` (traces | metrics | logs) that
    ``export.otlp`` describes (see the module docstring)."""
    url, headers = _without_credentials(otlp_url(signal, otlp), otlp.headers)
    if otlp.protocol == "grpc":
        return OtlpGrpcTransport(signal, url, headers, otlp.timeout_s)
    return OtlpHttpTransport(url, headers, otlp.timeout_s)


def otlp_url(signal: str, otlp: OtlpSettings) -> str:
    """Where ``signal`` goes: the base endpoint for grpc; for http/protobuf
    the base plus ``/v1/<signal>``, as for OTEL_EXPORTER_OTLP_ENDPOINT."""
    base = otlp.endpoint or DEFAULT_ENDPOINTS[otlp.protocol]
    if otlp.protocol == "grpc":
        return base
    return base.rstrip("/") + f"/v1/{signal}"


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
        headers.update(urllib3.util.make_headers(basic_auth=credentials))
    netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)), headers


class OtlpHttpTransport:
    """OTLP/HTTP: one POST of protobuf bytes per payload. No request waits
    longer than ``request_timeout_s`` (``export.otlp.timeout_s``) nor than
    the time its sender has left."""

    def __init__(self, url: str, headers: Mapping[str, str], request_timeout_s: float = math.inf) -> None:
        self.url = url
        self.request_timeout_s = request_timeout_s
        self._pool = urllib3.PoolManager(
            maxsize=1, headers={"Content-Type": "application/x-protobuf", **headers}, retries=False
        )
        self.destination = f"OTLP http/protobuf {url}"

    def send(self, payload: Payload, timeout_s: float) -> SendResult:
        try:
            response = self._pool.request(
                "POST", self.url, body=payload.body, timeout=urllib3.Timeout(total=min(timeout_s, self.request_timeout_s))
            )
        except Exception as exc:  # connection refused, reset, timeout
            return SendResult(Outcome.RETRY_LATER, detail=f"{type(exc).__name__}: {exc}")
        return classify_http(response.status, response.headers, response.data, self.destination)

    def after_fork(self) -> None:
        self._pool.clear()  # the parent's sockets are the parent's

    def shutdown(self) -> None:
        self._pool.clear()


class OtlpGrpcTransport:
    """OTLP/gRPC: grpc's generic unary call with the payload's bytes."""

    def __init__(
        self, signal: str, url: str, headers: Mapping[str, str], request_timeout_s: float = math.inf
    ) -> None:
        self._method = EXPORT_METHODS[signal]
        self.url = url
        self.request_timeout_s = request_timeout_s
        self._metadata = tuple((key.lower(), value) for key, value in headers.items())
        self._connect()
        self.destination = f"OTLP grpc {url}"

    def _connect(self) -> None:
        self._channel = grpc_channel(self.url)
        self._export = self._channel.unary_unary(self._method)  # no serializers: raw bytes in and out

    def send(self, payload: Payload, timeout_s: float) -> SendResult:
        import grpc  # imported with the channel already (grpc_channel); a dictionary lookup here

        try:
            self._export(payload.body, timeout=min(timeout_s, self.request_timeout_s), metadata=self._metadata)
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


def grpc_channel(url: str) -> Any:
    """A grpc channel to ``http(s)://host:port``: plaintext for http, TLS for https."""
    # grpc is imported here, not at the top: it costs a tenth of a second at
    # import, and only a process that sends OTLP over grpc needs it.
    import grpc

    parts = urlsplit(url)
    target = f"{parts.hostname}:{parts.port}"
    if parts.scheme == "http":
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, grpc.ssl_channel_credentials())


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

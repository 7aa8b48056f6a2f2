"""OTLP as payloads and transports, for the spool (``rqa_otel._internal.spool``).

Encoders: the SDK batch, split by value class, as Export*ServiceRequest
protobuf bytes (opentelemetry-exporter-otlp-proto-common for spans and
metrics, the project's ``LogsEncoder`` for logs). Transports: OTLP/HTTP POST
of those bytes, or grpc's generic unary call, as the log sinks send them.
Status mapping, as the OTLP specification has it: 429, 502, 503, 504 (and
the other 5xx) and network errors are retried; any other 4xx is rejected
for good. For grpc, UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
ABORTED, CANCELLED, OUT_OF_RANGE and DATA_LOSS are retried.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from opentelemetry.sdk.metrics.export import MetricsData

from rqa_otel.export.delivery import (
    DELIVERED,
    Outcome,
    Payload,
    SendResult,
    classify_http,
    log_value,
    metrics_value,
    span_value,
    split_by_value,
)
from rqa_otel.export.otlp.log_encoding import LogsEncoder
from rqa_otel.export.sinks import LOGS_EXPORT_METHOD, grpc_channel

EXPORT_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": LOGS_EXPORT_METHOD,
}


def encode_spans(spans: Sequence[Any]) -> list[Payload]:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as encode

    return [
        Payload("traces", encode(group).SerializeToString(), value, len(group))
        for value, group in split_by_value(spans, span_value)
    ]


def encode_metrics(data: MetricsData) -> list[Payload]:
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics as encode

    points = sum(
        len(metric.data.data_points)
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    )
    if not points:
        return []
    return [Payload("metrics", encode(data).SerializeToString(), metrics_value(data), points)]


class LogPayloads:
    """Log entries as OTLP payloads, one per value class."""

    def __init__(self, encoder: LogsEncoder) -> None:
        self._encoder = encoder

    def __call__(self, batch: Sequence[Any], observed_ns: int) -> list[Payload]:
        return [
            Payload("logs", self._encoder.encode(group, observed_ns), value, len(group))
            for value, group in split_by_value(batch, log_value)
        ]


class OtlpHttpTransport:
    def __init__(self, endpoint: str, headers: Mapping[str, str]) -> None:
        import urllib3

        self._url = endpoint
        self._pool = urllib3.PoolManager(
            maxsize=1, headers={"Content-Type": "application/x-protobuf", **headers}, retries=False
        )
        self.destination = f"OTLP http/protobuf {endpoint}"

    def send(self, payload: Payload, timeout_s: float) -> SendResult:
        import urllib3

        try:
            response = self._pool.request(
                "POST", self._url, body=payload.body, timeout=urllib3.Timeout(total=timeout_s)
            )
        except Exception as exc:  # connection refused, reset, timeout
            return SendResult(Outcome.RETRY_LATER, detail=f"{type(exc).__name__}: {exc}")
        return classify_http(response.status, response.headers, response.data, self.destination)

    def after_fork(self) -> None:
        self._pool.clear()

    def shutdown(self) -> None:
        self._pool.clear()


class OtlpGrpcTransport:
    def __init__(self, signal: str, endpoint: str, headers: Mapping[str, str]) -> None:
        self._method = EXPORT_METHODS[signal]
        self._endpoint = endpoint
        self._metadata = tuple((key.lower(), value) for key, value in headers.items())
        self._connect()
        self.destination = f"OTLP grpc {endpoint}"

    def _connect(self) -> None:
        self._channel = grpc_channel(self._endpoint)
        self._export = self._channel.unary_unary(self._method)  # raw bytes in and out

    def send(self, payload: Payload, timeout_s: float) -> SendResult:
        import grpc

        try:
            self._export(payload.body, timeout=timeout_s, metadata=self._metadata)
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else None
            detail = f"grpc {getattr(code, 'name', code)}: {error.details() if hasattr(error, 'details') else error}"
            if code in _GRPC_RETRYABLE:
                return SendResult(Outcome.RETRY_LATER, detail=detail)
            return SendResult(Outcome.REJECTED, detail=detail)
        return DELIVERED

    def after_fork(self) -> None:
        self._connect()  # a grpc channel must not be shared across fork()

    def shutdown(self) -> None:
        self._channel.close()


def _grpc_retryable() -> frozenset:
    try:
        import grpc
    except ImportError:
        return frozenset()
    c = grpc.StatusCode
    return frozenset(
        {c.UNAVAILABLE, c.DEADLINE_EXCEEDED, c.RESOURCE_EXHAUSTED, c.ABORTED, c.CANCELLED, c.OUT_OF_RANGE, c.DATA_LOSS}
    )


_GRPC_RETRYABLE = _grpc_retryable()


def otlp_transport(signal: str, endpoint: str, protocol: str, headers: Mapping[str, str]):
    if protocol == "grpc":
        return OtlpGrpcTransport(signal, endpoint, headers)
    return OtlpHttpTransport(endpoint, headers)

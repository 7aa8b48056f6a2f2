"""Where the export worker sends batches of log entries.

Each sink encodes a batch once and sends it in one request or one write:
- OTLP over grpc or http/protobuf: the hand-written protobuf of
  ``otlp_encoding`` sent as raw bytes (grpc's generic unary call, an HTTP
  POST), so no protobuf object is built per record;
- the embedded default: one OTLP-JSON line per batch in ``logs.jsonl``;
- human-readable text (console or a rotating file), escaped line by line.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence, TextIO
from urllib.parse import urlsplit

from rqa_otel.export.log_entry import LogEntry, with_attribute_dict
from rqa_otel.export.otlp.log_encoding import LogsEncoder
from rqa_otel.export.files.text import format_json, format_text
from rqa_otel.export.files.rotating import RotatingFile

LOGS_EXPORT_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def grpc_channel(endpoint: str):
    """A grpc channel to ``http(s)://host:port``: plaintext for http, TLS for https."""
    import grpc

    url = urlsplit(endpoint)
    target = f"{url.hostname}:{url.port}"
    if url.scheme == "http":
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, grpc.ssl_channel_credentials())


class LogSink:
    description = ""

    def export(self, batch: Sequence[LogEntry], observed_ns: int) -> bool:
        raise NotImplementedError

    def shutdown(self) -> None:
        pass

    def after_fork(self) -> None:
        """In a forked child, before the first export: drop what the parent's
        connections left behind."""


class OtlpGrpcLogSink(LogSink):
    def __init__(self, endpoint: str, headers: Mapping[str, str], timeout_s: float, encoder: LogsEncoder) -> None:
        self._endpoint = endpoint
        self._connect()
        self._metadata = tuple((key.lower(), value) for key, value in headers.items())
        self._timeout_s = timeout_s
        self._encoder = encoder
        self.description = f"OTLP grpc {endpoint}"

    def _connect(self) -> None:
        self._channel = grpc_channel(self._endpoint)
        # No serializers: the request is already protobuf bytes.
        self._export = self._channel.unary_unary(LOGS_EXPORT_METHOD)

    def export(self, batch: Sequence[LogEntry], observed_ns: int) -> bool:
        self._export(self._encoder.encode(batch, observed_ns), timeout=self._timeout_s, metadata=self._metadata)
        return True

    def after_fork(self) -> None:
        self._connect()  # a grpc channel must not be shared across fork()

    def shutdown(self) -> None:
        self._channel.close()


class OtlpHttpLogSink(LogSink):
    def __init__(self, endpoint: str, headers: Mapping[str, str], timeout_s: float, encoder: LogsEncoder) -> None:
        import urllib3

        # urllib3 rather than requests: a third of the CPU per request, and
        # this runs a hundred times a second at full rate.
        self._url = endpoint
        self._pool = urllib3.PoolManager(
            maxsize=1, headers={"Content-Type": "application/x-protobuf", **headers}, retries=False
        )
        self._timeout = urllib3.Timeout(total=timeout_s)
        self._encoder = encoder
        self.description = f"OTLP http/protobuf {endpoint}"

    def export(self, batch: Sequence[LogEntry], observed_ns: int) -> bool:
        response = self._pool.request(
            "POST", self._url, body=self._encoder.encode(batch, observed_ns), timeout=self._timeout
        )
        if response.status != 200:
            raise OSError(f"HTTP {response.status} from {self._url}: {response.data[:200]!r}")
        return True

    def after_fork(self) -> None:
        self._pool.clear()  # the parent's sockets are the parent's

    def shutdown(self) -> None:
        self._pool.clear()


class OtlpJsonFileLogSink(LogSink):
    def __init__(self, file: RotatingFile, encoder: LogsEncoder) -> None:
        self._file = file
        self._encoder = encoder
        self.description = f"file {file.path}"

    def export(self, batch: Sequence[LogEntry], observed_ns: int) -> bool:
        return self._file.write_lines(self._encoder.encode_json(batch, observed_ns) + b"\n", count=len(batch))

    def shutdown(self) -> None:
        self._file.close()


class TextLogSink(LogSink):
    """One escaped line per record, as text or JSON, to a stream or a rotating file."""

    def __init__(self, target: TextIO | RotatingFile, json_lines: bool = False) -> None:
        self._target = target
        self._format: Callable[[LogEntry], str] = format_json if json_lines else format_text
        self.description = f"file {target.path}" if isinstance(target, RotatingFile) else "console (stderr)"

    def export(self, batch: Sequence[LogEntry], observed_ns: int) -> bool:
        text = "\n".join(self._format(LogEntry._make(with_attribute_dict(entry))) for entry in batch) + "\n"
        if isinstance(self._target, RotatingFile):
            return self._target.write_lines(text.encode("utf-8", "surrogatepass"), count=len(batch))
        self._target.write(text)
        self._target.flush()
        return True

    def shutdown(self) -> None:
        if isinstance(self._target, RotatingFile):
            self._target.close()

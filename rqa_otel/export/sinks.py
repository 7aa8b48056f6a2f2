"""The log sinks that write locally: each encodes a batch once and writes it at once.

- the embedded default: one OTLP-JSON line per batch in ``logs.jsonl``;
- human-readable text (console or a rotating file), escaped line by line.

Network destinations (OTLP, InfluxDB) are a ``PayloadLogSink``
(``rqa_otel.export.delivery``): an encoder, a transport and a sender, as
for traces and metrics; ``rqa_otel.export.exporters.build_log_sink`` picks
the primary sink from settings.
"""

from __future__ import annotations

from typing import Callable, Sequence, TextIO

from rqa_otel.export.files.rotating import RotatingFile
from rqa_otel.export.files.text import format_json, format_text
from rqa_otel.export.log_entry import LogEntry, with_attribute_dict
from rqa_otel.export.log_sink import LogSink
from rqa_otel.export.otlp.log_encoding import LogsEncoder


class OtlpJsonFileLogSink(LogSink):
    def __init__(self, file: RotatingFile, encoder: LogsEncoder) -> None:
        self._file = file
        self._encoder = encoder
        self.description = f"file {file.path}"

    def export(self, batch: Sequence[LogEntry], observed_ns: int) -> bool:
        return self._file.write_lines(self._encoder.encode_json(batch, observed_ns) + b"\n", count=len(batch))

    def shutdown(self) -> None:
        self._file.close()


def _json_line(entry: tuple) -> str:
    return format_json(LogEntry._make(with_attribute_dict(entry)))


class TextLogSink(LogSink):
    """One escaped line per record, as text or JSON, to a stream or a rotating file."""

    def __init__(self, target: TextIO | RotatingFile, json_lines: bool = False) -> None:
        self._target = target
        # format_text takes entry tuples as they come, shaped ones too.
        self._format: Callable[[tuple], str] = _json_line if json_lines else format_text
        self.description = f"file {target.path}" if isinstance(target, RotatingFile) else "console (stderr)"

    def export(self, batch: Sequence[LogEntry], observed_ns: int) -> bool:
        text = "\n".join(map(self._format, batch)) + "\n"
        if isinstance(self._target, RotatingFile):
            return self._target.write_lines(text.encode("utf-8", "surrogatepass"), count=len(batch))
        self._target.write(text)
        self._target.flush()
        return True

    def shutdown(self) -> None:
        if isinstance(self._target, RotatingFile):
            self._target.close()

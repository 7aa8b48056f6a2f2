"""The telemetry handle the design's classes report through."""

from __future__ import annotations

from rqa_otel.telemetry import Telemetry, current, setup


def global_telemetry(app_name: str | None = None) -> Telemetry:
    """The process's handle (``rqa_otel.setup()``), set up now when there is
    none, named ``app_name`` (the design's application name) in that case."""
    handle = current()
    if handle is None:
        handle = setup(service_name=app_name) if app_name else setup()
    return handle

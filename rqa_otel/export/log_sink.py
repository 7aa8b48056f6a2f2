"""What the log pipeline's export worker sends a batch of log entries to.

A module of its own, with no imports, so that the delivery layer (its
``PayloadLogSink``), the sinks and the worker can all build on it without an
import circle.
"""

from __future__ import annotations

from typing import Any, Sequence


class LogExportFailed(Exception):
    """A sink's destination did not take a batch; the message says why
    (the last refusal, without secrets). The worker counts the batch as
    lost and reports the message in its ``log_export_failed`` alert."""


class LogSink:
    description = ""
    """Where the sink writes, as text without secrets (for logs, /ready, alerts)."""

    def export(self, batch: Sequence[Any], observed_ns: int) -> bool:
        """True when the batch was delivered; False or an exception when not.
        Bounded in time: the worker waits for it."""
        raise NotImplementedError

    def shutdown(self) -> None:
        pass

    def after_fork(self) -> None:
        """In a forked child, before the first export: drop what the parent's
        connections left behind."""

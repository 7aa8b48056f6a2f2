"""Points an encoder could not carry: dropped one at a time, counted by
reason, reported once per signal and reason.

One bad value (a tag holding a control character, an attribute the wire
format cannot hold) must cost its own point, never the batch around it
and never the exports after it: a metric series keeps its attributes for
the life of the process, so a failed batch would fail at every collection.
The encoders are module functions shared by every exporter, hence one
process-wide tally; the pipeline reports it as ``rqa.export.points.dropped``.
"""

from __future__ import annotations

import logging
import threading

from rqa_otel import names

__all__ = ["DROPPED_POINTS", "DroppedPoints"]

_log = logging.getLogger("rqa_otel.export")


class DroppedPoints:
    """Counts by (signal, reason); the first drop of each pair is a warning
    on stderr that names what was wrong but never the value (it may be a
    secret, or a terminal escape)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, signal: str, reason: str, detail: str = "", count: int = 1) -> None:
        if reason not in names.EXPORT_DROP_REASONS:
            reason = "invalid_value"
        key = (signal or "unknown", reason)
        with self._lock:
            first = key not in self._counts
            self._counts[key] = self._counts.get(key, 0) + count
        if first:
            _log.warning(
                "a %s point could not be encoded (%s) and was dropped; the rest of its batch was sent, "
                "and further drops are counted in %s", key[0], detail or reason, names.EXPORT_POINTS_DROPPED_COUNTER,
            )

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


DROPPED_POINTS = DroppedPoints()

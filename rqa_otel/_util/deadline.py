"""Run a blocking SDK call with a deadline the caller can rely on."""

from __future__ import annotations

import logging
import threading
from typing import Callable

_log = logging.getLogger("rqa_otel")


def call_with_deadline(call: Callable[[], object], timeout_s: float, what: str) -> bool:
    """Run ``call`` in a daemon thread and wait at most ``timeout_s``.

    Returns True when the call finished in time without raising. The SDK's
    own timeouts are advisory (an OTLP exporter in the middle of a retry can
    hold a flush or shutdown far past them); a daemon thread left behind
    cannot keep the interpreter alive, so the strategy always gets control
    back on time.
    """
    outcome: list[bool] = []

    def target() -> None:
        try:
            result = call()
            outcome.append(result is not False)
        except Exception:
            _log.warning("%s failed", what, exc_info=True)
            outcome.append(False)

    worker = threading.Thread(target=target, name=f"rqa-otel {what}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        _log.warning("%s did not finish within %.1f s; telemetry still queued was abandoned", what, timeout_s)
        return False
    return outcome[0]

"""A circuit breaker for a broker connection.

closed -> (``failure_threshold`` consecutive failures) -> open for ``open_s``:
no calls at all -> half-open: exactly one probe call is let through; its
success closes the breaker, its failure opens it again for ``open_s``.

Every change of state calls ``on_change(name, old, new)``; the trading
error handler turns that into a log event, an alert when it opens, and the
``rqa.circuit_breaker.state`` gauge reads ``state`` at each collection.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
"""Gauge values: 0 closed, 1 half-open, 2 open."""


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        open_s: float = 30.0,
        on_change: Callable[[str, str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if open_s <= 0:
            raise ValueError(f"open_s must be > 0, got {open_s}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.open_s = open_s
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_out = False

    @property
    def state(self) -> str:
        """The current state; an open breaker whose time is up reads half-open."""
        with self._lock:
            if self._state == OPEN and self._clock() - self._opened_at >= self.open_s:
                return HALF_OPEN
            return self._state

    def allow(self) -> bool:
        """May a call go out now? In half-open, True for exactly one caller."""
        change = None
        with self._lock:
            if self._state == OPEN:
                if self._clock() - self._opened_at < self.open_s:
                    return False
                change = (OPEN, HALF_OPEN)
                self._state, self._probe_out = HALF_OPEN, False
            if self._state == HALF_OPEN:
                if self._probe_out:
                    allowed = False
                else:
                    self._probe_out = allowed = True
            else:
                allowed = True
        self._notify(change)
        return allowed

    def record_success(self) -> None:
        change = None
        with self._lock:
            self._failures = 0
            if self._state != CLOSED:
                change = (self._state, CLOSED)
                self._state, self._probe_out = CLOSED, False
        self._notify(change)

    def record_failure(self) -> None:
        change = None
        with self._lock:
            self._failures += 1
            if self._state == HALF_OPEN or (self._state == CLOSED and self._failures >= self.failure_threshold):
                change = (self._state, OPEN)
                self._state, self._opened_at, self._probe_out = OPEN, self._clock(), False
        self._notify(change)

    def _notify(self, change: tuple[str, str] | None) -> None:
        if change is not None and self._on_change is not None:
            self._on_change(self.name, *change)

"""Per-logger, per-level sampling with exact accounting.

A rule applies to records of a logger (and its children) at or below a
level under WARNING; WARNING and above are never sampled. A rule keeps at
most ``rate_per_s`` records per second (a token bucket, burst of one second)
and/or the fraction ``ratio`` of them (deterministic: exactly floor(n*ratio)
of n records, no randomness to explain away). Each (logger, level) key
counts what it suppressed; the export worker turns those counts into
"N similar records suppressed" summary records, and the
``rqa.log.records.suppressed`` counter reads the same totals.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class SamplingRule:
    logger: str = "*"
    """Logger name the rule covers, with its children; ``*`` for all."""
    level: int = logging.INFO
    """The highest level sampled (below WARNING)."""
    rate_per_s: float | None = None
    ratio: float | None = None

    def covers(self, logger_name: str, levelno: int) -> bool:
        if levelno > self.level:
            return False
        if self.logger == "*":
            return True
        return logger_name == self.logger or logger_name.startswith(self.logger + ".")


class _KeyState:
    __slots__ = ("rule", "lock", "seen", "tokens", "last", "suppressed", "unreported")

    def __init__(self, rule: SamplingRule) -> None:
        self.rule = rule
        self.lock = threading.Lock()
        self.seen = 0
        self.tokens = rule.rate_per_s or 0.0
        self.last = time.monotonic()
        self.suppressed = 0  # all time: the counter
        self.unreported = 0  # since the last summary


_UNSAMPLED = None


class Sampler:
    def __init__(self, rules: Iterable[SamplingRule] = ()) -> None:
        self.rules = tuple(rules)
        self._states: dict[tuple[str, int], _KeyState | None] = {}
        self._lock = threading.Lock()
        # [suppressed, unreported] of the states that rules replaced.
        self._retired: dict[tuple[str, int], list[int]] = {}

    def replace_rules(self, rules: Iterable[SamplingRule]) -> None:
        """New rules from a settings reload: each (logger, level) key is
        matched again; what was suppressed so far stays counted."""
        with self._lock:
            for key, state in self._states.items():
                if state is not _UNSAMPLED:
                    retired = self._retired.setdefault(key, [0, 0])
                    with state.lock:
                        retired[0] += state.suppressed
                        retired[1] += state.unreported
            self.rules = tuple(rules)
            self._states = {}

    def admit(self, logger_name: str, levelno: int) -> bool:
        """True to keep the record. Cheap when no rule covers the key."""
        if levelno >= logging.WARNING or not self.rules:
            return True
        key = (logger_name, levelno)
        try:
            state = self._states[key]
        except KeyError:
            state = self._state_for(key)
        if state is _UNSAMPLED:
            return True
        # The key's decision, here rather than in a method of its state: one
        # Python call per record is what a strategy's logging call pays most for.
        rule = state.rule
        with state.lock:
            state.seen += 1
            keep = True
            if rule.ratio is not None:
                keep = math.floor(state.seen * rule.ratio) > math.floor((state.seen - 1) * rule.ratio)
            if keep and rule.rate_per_s is not None:
                now = time.monotonic()
                tokens = state.tokens + (now - state.last) * rule.rate_per_s
                state.tokens = rule.rate_per_s if tokens > rule.rate_per_s else tokens  # min(), without its call
                state.last = now
                if state.tokens >= 1.0:
                    state.tokens -= 1.0
                else:
                    keep = False
            if not keep:
                state.suppressed += 1
                state.unreported += 1
            return keep

    def _state_for(self, key: tuple[str, int]) -> _KeyState | None:
        with self._lock:
            if key not in self._states:
                rule = next((r for r in self.rules if r.covers(*key)), None)
                self._states[key] = _KeyState(rule) if rule else _UNSAMPLED
            return self._states[key]

    def take_unreported(self) -> list[tuple[str, int, int]]:
        """(logger, level, count) suppressed since the last call, for summaries."""
        report = []
        with self._lock:
            for (logger_name, levelno), retired in self._retired.items():
                if retired[1]:
                    report.append((logger_name, levelno, retired[1]))
                    retired[1] = 0
        for (logger_name, levelno), state in list(self._states.items()):
            if state is _UNSAMPLED:
                continue
            with state.lock:
                count, state.unreported = state.unreported, 0
            if count:
                report.append((logger_name, levelno, count))
        return report

    def suppressed_totals(self) -> dict[tuple[str, int], int]:
        totals = {key: retired[0] for key, retired in list(self._retired.items()) if retired[0]}
        for key, state in list(self._states.items()):
            if state is not _UNSAMPLED and state.suppressed:
                totals[key] = totals.get(key, 0) + state.suppressed
        return totals

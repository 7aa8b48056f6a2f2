"""The bounded buffer between the calling threads and the export worker.

Memory is bounded by ``capacity`` records. When it is full:
- a WARNING-or-above record evicts the oldest lower-level one, so that on
  overflow the records that matter are the ones kept;
- otherwise the caller waits, at most ``max_wait_s``, and only while the
  worker is making progress (it finished a batch within ``stall_s``): that
  is back-pressure from a busy worker. A worker stuck on a dead back-end
  gets no waiting callers, and the record is dropped and counted at once.
Every record dropped here is counted by reason and level in ``Drops``.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import Counter, deque
from operator import itemgetter

from rqa_otel import names

SAMPLED, QUEUE_FULL, EXPORT_FAILED, WRITE_FAILED, INTERNAL_ERROR = names.LOG_DROP_REASONS
_WARNING = logging.WARNING


class Drops:
    """Dropped records by (reason, level name); exact under concurrency."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # By (reason, level number): a sampled-out record is counted here,
        # and the level's name is looked up once per snapshot, not per record.
        self._counts: Counter[tuple[str, int]] = Counter()

    def add(self, reason: str, levelno: int, count: int = 1) -> None:
        with self._lock:
            self._counts[(reason, levelno)] += count

    def add_entries(self, reason: str, entries) -> None:
        by_level = Counter(entry[1] for entry in entries)
        with self._lock:
            for levelno, count in by_level.items():
                self._counts[(reason, levelno)] += count

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            counts = list(self._counts.items())
        snapshot: dict[tuple[str, str], int] = {}
        for (reason, levelno), count in counts:
            key = (reason, logging.getLevelName(levelno))
            snapshot[key] = snapshot.get(key, 0) + count
        return snapshot


class LogBuffer:
    def __init__(self, capacity: int, drops: Drops, max_wait_s: float = 0.05, stall_s: float = 0.25) -> None:
        self.capacity = capacity
        self.max_wait_s = max_wait_s
        self.stall_s = stall_s
        self._drops = drops
        self._low: deque[tuple] = deque()
        self._high: deque[tuple] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._wake_at = 1  # the worker asks to be woken at this many records
        self._worker_waiting = False
        self.last_progress = time.monotonic()

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks (the parent's may have been held by
        a thread that does not exist here), and none of the parent's records,
        which the parent exports itself."""
        self._low.clear()
        self._high.clear()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._worker_waiting = False
        self.last_progress = time.monotonic()

    def __len__(self) -> int:
        return len(self._low) + len(self._high)

    def put(self, entry: tuple) -> None:
        """Queue an entry: a LogEntry, or a plain tuple of its fields."""
        low, high = self._low, self._high
        queue = high if entry[1] >= _WARNING else low
        # Fast path without the lock: deque appends are atomic, and the
        # capacity may be overshot by at most one entry per racing thread.
        if len(low) + len(high) < self.capacity:
            queue.append(entry)
            if self._worker_waiting and len(low) + len(high) >= self._wake_at:
                with self._lock:
                    self._not_empty.notify()
            return
        with self._lock:
            if len(self._low) + len(self._high) >= self.capacity:
                if queue is self._high and self._low:
                    self._drops.add(QUEUE_FULL, self._low.popleft()[1])
                elif not self._wait_for_room():
                    self._drops.add(QUEUE_FULL, entry[1])
                    return
            queue.append(entry)
            self._not_empty.notify()

    def _wait_for_room(self) -> bool:
        """Wait (lock held) while the worker is draining; False if still full."""
        deadline = time.monotonic() + self.max_wait_s
        while len(self._low) + len(self._high) >= self.capacity:
            now = time.monotonic()
            if now >= deadline or now - self.last_progress > self.stall_s:
                return False
            self._not_full.wait(deadline - now)
        return True

    def take(self, max_items: int, timeout: float, wake_at: int = 1) -> list[tuple]:
        """Up to ``max_items`` entries (tuples with LogEntry's fields), oldest
        first; waits up to ``timeout`` for ``wake_at`` of them to be there."""
        with self._lock:
            if len(self._low) + len(self._high) < wake_at and timeout > 0:
                # A put racing with this check may not notify: the wait then
                # ends at `timeout`, later but with nothing lost.
                self._wake_at = wake_at
                self._worker_waiting = True
                self._not_empty.wait(timeout)
                self._worker_waiting = False
            batch = self._drain(self._high, max_items)
            low = self._drain(self._low, max_items - len(batch))
            if batch and low:
                batch = list(heapq.merge(batch, low, key=itemgetter(0)))
            else:
                batch = batch or low
            self.last_progress = time.monotonic()
            self._not_full.notify_all()
        return batch

    def mark_progress(self) -> None:
        with self._lock:
            self.last_progress = time.monotonic()

    @staticmethod
    def _drain(queue: deque[tuple], count: int) -> list[tuple]:
        # popleft only: callers append without the lock, so list() + clear()
        # could drop an entry appended in between.
        popleft = queue.popleft
        return [popleft() for _ in range(min(count, len(queue)))]

    def wake(self) -> None:
        with self._lock:
            self._not_empty.notify_all()
            self._not_full.notify_all()

"""The durable trade journal: SQLite in WAL mode, written by one background thread.

Durability point: ``append()`` queues a row and returns; the writer commits
what is queued ``commit_interval_s`` after the first row (group commit), and
at once on ``flush()``; with nothing queued it sleeps. So a trade whose
``record_trade`` returned is in the journal once ``flush()`` has returned, or
at most ``commit_interval_s`` plus one commit later, and survives the
process being killed from then on. At most
``max_pending`` rows wait for a commit: a caller recording faster than
that waits for the writer, so the bound holds at any rate and memory stays
bounded.
WAL with synchronous=NORMAL is durable against a crash of the process,
not against losing power on the machine (that would need synchronous=FULL,
an fsync per commit).
"""

from __future__ import annotations

import atexit
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from itertools import chain
from operator import itemgetter
from typing import Any, Sequence

from rqa_otel._util.private_files import DEFAULT_FILE_MODE, make_directories, narrow

_log = logging.getLogger("rqa_otel.trading")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    strategy TEXT NOT NULL,
    symbol TEXT NOT NULL,
    action TEXT NOT NULL,
    UNIQUE (strategy, symbol, action)
);
CREATE INDEX IF NOT EXISTS series_by_symbol ON series (symbol);
CREATE TABLE IF NOT EXISTS trades (
    id INTEGER PRIMARY KEY,
    run INTEGER NOT NULL REFERENCES runs (id),
    series INTEGER NOT NULL REFERENCES series (id),
    price REAL NOT NULL,
    quantity REAL NOT NULL,
    time_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS trades_by_series ON trades (series, time_ns);
CREATE INDEX IF NOT EXISTS trades_by_time ON trades (time_ns);
CREATE VIEW IF NOT EXISTS trade_rows AS
    SELECT trades.id, run_id, strategy, symbol, action, price, quantity, time_ns
    FROM trades JOIN series ON series.id = trades.series JOIN runs ON runs.id = trades.run;
CREATE TABLE IF NOT EXISTS portfolio (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    strategy TEXT NOT NULL,
    value REAL NOT NULL,
    cash REAL NOT NULL,
    positions TEXT NOT NULL,
    time_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS portfolio_by_run ON portfolio (run_id, time_ns);
"""
"""Trades keep small integer keys: (strategy, symbol, action) is a row of
``series`` and the run id a row of ``runs``. An index of integers costs a
third of one of strings per insert, and one index, ``(series, time_ns)``,
serves the strategy, symbol and strategy + symbol queries (through the
series ids that match); ``time_ns`` serves a time range alone. The view
``trade_rows`` reads like a flat table (for the sqlite3 shell)."""
TRADE_COLUMNS = ("run", "series", "price", "quantity", "time_ns")
SNAPSHOT_COLUMNS = ("run_id", "strategy", "value", "cash", "positions", "time_ns")
# SQLite's limit on bound variables per statement: 32766 since 3.32, 999 before.
_MAX_VARIABLES = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999


def _create_private(path: str, file_mode: int) -> None:
    """Create the database file (or narrow an existing one) before SQLite
    opens it, which would create it 0644 under the usual umask."""
    for name in (path, path + "-wal", path + "-shm"):
        try:
            fd = os.open(name, os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if name == path else 0), file_mode)
        except FileNotFoundError:
            continue
        try:
            narrow(fd, file_mode)
        finally:
            os.close(fd)


class TradeJournal:
    def __init__(
        self,
        path: str | os.PathLike[str],
        commit_interval_s: float = 0.05,
        max_pending: int = 60_000,
        file_mode: int = DEFAULT_FILE_MODE,
    ) -> None:
        """``file_mode``: of the database (SQLite gives its -wal and -shm
        files the database's mode), and directories made for it get the
        matching directory mode (``export.file_mode``, owner-only by default)."""
        self.path = os.fspath(path)
        if self.path != ":memory:":
            make_directories(os.path.dirname(os.path.abspath(self.path)), file_mode)
            _create_private(self.path, file_mode)
        self._commit_interval_s = commit_interval_s
        self._max_pending = max_pending
        self._trades: deque[tuple] = deque()
        self._snapshots: deque[tuple] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._committed = threading.Condition(self._lock)
        self._requested = self._done = 0
        self._closing = False
        self._writer_idle = False
        self.failed_commits = 0
        self._series_ids: dict[tuple[str, str, str], int] | None = None  # the writer's, loaded at its first commit
        self._run_ids: dict[str, int] | None = None
        writer = self._open_writer()
        self._thread = threading.Thread(target=self._write, args=(writer,), name="rqa-otel trade journal", daemon=True)
        self._thread.start()
        # The writer is a daemon thread: without this, a program that ends
        # normally would lose the trades of its last commit interval.
        atexit.register(self.close)

    def _open_writer(self) -> sqlite3.Connection:
        """The writer's connection, the schema in place. The pool workers of
        one optimization open the same new journal at the same moment: a
        locked database is waited for (switching a new file to WAL can
        answer "locked" at once, without SQLite's busy timeout)."""
        deadline = time.monotonic() + 30.0
        while True:
            writer = None
            try:
                writer = self._connect()
                _upgrade_first_layout(writer)
                writer.executescript(SCHEMA)
                writer.commit()
                return writer
            except sqlite3.OperationalError as error:
                if writer is not None:
                    writer.close()
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level="DEFERRED")
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    def append_trade(self, row: tuple) -> None:
        """``row``: (run_id, strategy, symbol, action, price, quantity, time_ns)."""
        self._trades.append(row)  # deque.append is atomic; the writer drains it
        if self._writer_idle:
            self._wake_writer()
        if len(self._trades) >= self._max_pending:
            self._wait_for_writer()

    def _wake_writer(self) -> None:
        # Read after the append: the writer marks itself idle before it
        # checks the queues (under the lock), so a row it did not see finds
        # the mark set here, and this notify reaches its wait. The mark is
        # cleared here, so that the rows appended before the writer runs
        # again do not each take the lock.
        with self._lock:
            self._writer_idle = False
            self._wake.notify()

    def _wait_for_writer(self) -> None:
        """Back-pressure: a backtest recording faster than SQLite commits
        waits here, so memory stays bounded and the durability bound holds."""
        with self._lock:
            self._wake.notify()
            self._committed.wait_for(
                lambda: len(self._trades) < self._max_pending // 2 or not self._thread.is_alive(), 10.0
            )

    def append_snapshot(self, row: tuple) -> None:
        self._snapshots.append(row)
        if self._writer_idle:
            self._wake_writer()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Commit everything appended so far; True once it is durable."""
        with self._lock:
            self._requested += 1
            ticket = self._requested
            self._wake.notify()
            return self._committed.wait_for(lambda: self._done >= ticket or not self._thread.is_alive(), timeout_s) and (
                self._done >= ticket
            )

    def query(self, sql: str, parameters: Sequence[Any]) -> list[tuple]:
        reader = self._connect()
        try:
            return reader.execute(sql, parameters).fetchall()
        finally:
            reader.close()

    def close(self, timeout_s: float = 10.0) -> None:
        atexit.unregister(self.close)
        self.flush(timeout_s)
        with self._lock:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout_s)

    def _write(self, connection: sqlite3.Connection) -> None:
        while True:
            with self._lock:
                # Nothing queued: sleep until a row, a flush or the close
                # (an idle journal does not wake 20 times a second).
                self._writer_idle = True
                while not (self._closing or self._requested != self._done or self._trades or self._snapshots):
                    self._wake.wait()
                self._writer_idle = False
                # Group commit: what arrives within the interval goes in one transaction.
                if not self._closing and self._requested == self._done and len(self._trades) < self._max_pending:
                    self._wake.wait(self._commit_interval_s)
                ticket, closing = self._requested, self._closing
            self._commit(connection)
            with self._lock:
                self._done = ticket
                self._committed.notify_all()
            if closing:
                connection.close()
                return

    def _commit(self, connection: sqlite3.Connection) -> None:
        trades = [self._trades.popleft() for _ in range(len(self._trades))]
        snapshots = [self._snapshots.popleft() for _ in range(len(self._snapshots))]
        if not trades and not snapshots:
            return
        try:
            with connection:
                _insert(connection, "trades", TRADE_COLUMNS, self._keyed(connection, trades))
                _insert(connection, "portfolio", SNAPSHOT_COLUMNS, list(chain.from_iterable(snapshots)))
        except sqlite3.Error:
            self._series_ids = self._run_ids = None  # ids of a rolled-back transaction are void
            # Nothing is dropped: the rows go back to the front of the queue
            # and the next commit tries again (a full disk frees up, a lock
            # is released).
            self.failed_commits += 1
            self._trades.extendleft(reversed(trades))
            self._snapshots.extendleft(reversed(snapshots))
            if self.failed_commits == 1:
                _log.warning("the trade journal %s cannot commit; retrying", self.path, exc_info=True)


    def _keyed(self, connection: sqlite3.Connection, trades: list[tuple]) -> list:
        """The rows' values, flat (no tuple per row for the garbage collector), with their run and series as integer ids;
        new ones are inserted (in the caller's transaction). C-level maps
        over columns: this runs with the GIL, beside the strategy."""
        if self._series_ids is None:
            self._series_ids = {(s, y, a): i for i, s, y, a in connection.execute("SELECT id, strategy, symbol, action FROM series")}
            self._run_ids = dict(connection.execute("SELECT run_id, id FROM runs"))
        series_ids, run_ids = self._series_ids, self._run_ids
        keys = list(map(_series_key, trades))
        run_keys = list(map(_run_key, trades))
        # Other processes (pool workers of one optimization) may add the same
        # series or run meanwhile: insert unless there, then read the id.
        for run_id in set(run_keys).difference(run_ids):
            connection.execute("INSERT OR IGNORE INTO runs (run_id) VALUES (?)", (run_id,))
            run_ids[run_id] = connection.execute("SELECT id FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]
        for key in dict.fromkeys(keys).keys() - series_ids.keys():
            connection.execute("INSERT OR IGNORE INTO series (strategy, symbol, action) VALUES (?, ?, ?)", key)
            series_ids[key] = connection.execute(
                "SELECT id FROM series WHERE strategy = ? AND symbol = ? AND action = ?", key
            ).fetchone()[0]
        prices, quantities, times = (map(itemgetter(index), trades) for index in (4, 5, 6))
        rows = zip(map(run_ids.__getitem__, run_keys), map(series_ids.__getitem__, keys), prices, quantities, times)
        return list(chain.from_iterable(rows))


def _upgrade_first_layout(connection: sqlite3.Connection) -> None:
    """A journal written by the first release (strategy, symbol, action and
    run id as text in every trade row) is converted in place, in one
    transaction: every row keeps its id, nothing is lost."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(trades)")}
    if "strategy" not in columns:
        return
    _log.warning("converting the trade journal to integer series and run keys (once)")
    connection.executescript(
        "BEGIN;"
        " ALTER TABLE trades RENAME TO trades_first_layout;"
        " DROP INDEX IF EXISTS trades_by_strategy_symbol; DROP INDEX IF EXISTS trades_by_symbol;"
        " DROP INDEX IF EXISTS trades_by_time;"
        + SCHEMA  # the new trades table and indexes; portfolio stays as it is
        + " INSERT INTO runs (run_id) SELECT DISTINCT run_id FROM trades_first_layout;"
        " INSERT INTO series (strategy, symbol, action) SELECT DISTINCT strategy, symbol, action FROM trades_first_layout;"
        " INSERT INTO trades (id, run, series, price, quantity, time_ns)"
        "  SELECT old.id, runs.id, series.id, old.price, old.quantity, old.time_ns FROM trades_first_layout AS old"
        "  JOIN runs ON runs.run_id = old.run_id"
        "  JOIN series ON (series.strategy, series.symbol, series.action) = (old.strategy, old.symbol, old.action);"
        " DROP TABLE trades_first_layout;"
        " COMMIT;"
    )


_series_key = itemgetter(1, 2, 3)
_run_key = itemgetter(0)


def _insert(connection: sqlite3.Connection, table: str, columns: tuple[str, ...], values: list) -> None:
    """Rows (``values``: theirs, flat, ``len(columns)`` per row), many per
    INSERT statement. executemany() steps SQLite once per row and gives up
    the GIL each time; with the strategy's thread busy, each step then
    waits out a whole GIL switch interval (5 ms), and the writer falls
    hopelessly behind. One statement per few thousand rows waits once."""
    per_statement = _MAX_VARIABLES // len(columns) * len(columns)
    row_sql = "(" + ", ".join("?" * len(columns)) + ")"
    for start in range(0, len(values), per_statement):
        chunk = values[start : start + per_statement]
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([row_sql] * (len(chunk) // len(columns)))
        connection.execute(sql, chunk)


def portfolio_history_query(run_id=None, strategy=None, start_ns=None, end_ns=None, limit=None) -> tuple[str, list]:
    """The SQL of a portfolio-history call: snapshots oldest first, by run
    (through the portfolio_by_run index) and/or strategy, ``start_ns``
    inclusive, ``end_ns`` exclusive, the first ``limit``. Values checked by the caller."""
    clauses, parameters = [], []
    for clause, value in (("run_id = ?", run_id), ("strategy = ?", strategy), ("time_ns >= ?", start_ns),
                          ("time_ns < ?", end_ns)):
        if value is not None:
            clauses.append(clause)
            parameters.append(value)
    sql = "SELECT run_id, strategy, value, cash, positions, time_ns FROM portfolio"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY time_ns, id"
    if limit is not None:
        sql += " LIMIT ?"
        parameters.append(limit)
    return sql, parameters

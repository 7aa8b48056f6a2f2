"""The trade journal (trades.db), read-only, through its indexes.

The journal may be written by a running backtest at the same time: it is in
WAL mode, so a reader sees the last committed transaction and never blocks
the writer. Every query here is a SELECT on a connection opened with
``query_only``; nothing is created or changed (docs/journal.md has the tables).

Per-run totals (trade counts, first and last trade) are kept and brought up
to date from the rows added since the last look (``trades.id`` is the rowid:
a range on it reads only the new rows), so the runs page does not count a
million trades again on every refresh.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

PAGE_SIZE = 50


@dataclass
class RunTotals:
    trades: int = 0
    first_ns: int | None = None
    last_ns: int | None = None


@dataclass
class Equity:
    time_ns: list[int]
    value: list[float]
    cash: list[float]
    positions: list[int]
    points: int  # snapshots in the journal (the lists may be thinned)
    max_drawdown: float | None = None  # over every snapshot, not only those drawn


class Journal:
    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._totals: dict[str, RunTotals] = {}
        self._seen_trade_id = 0
        self._counts: dict[str, tuple[int, int]] = {}  # run id -> (last trade id seen, trades)
        self._performance: dict[str, dict[str, Any]] = {}  # run id -> runs_performance() so far
        self._seen_snapshot_id = 0

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def _db(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0)
            connection.execute("PRAGMA query_only = ON")
            self._local.connection = connection
        return connection

    def _query(self, sql: str, parameters: tuple | list = ()) -> list[tuple]:
        try:
            return self._db().execute(sql, parameters).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a journal being created right now
                return []
            raise

    def version(self) -> tuple:
        """Changes whenever a trade or a snapshot is committed."""
        if not self.exists():
            return (0, 0)
        rows = self._query("SELECT (SELECT max(id) FROM trades), (SELECT max(id) FROM portfolio)")
        return tuple(rows[0]) if rows else (0, 0)

    # --- runs ---------------------------------------------------------------------

    def run_totals(self) -> dict[str, RunTotals]:
        if not self.exists():
            return {}
        with self._lock:
            rows = self._query(
                "SELECT runs.run_id, count(*), min(time_ns), max(time_ns), max(trades.id) FROM trades"
                " JOIN runs ON runs.id = trades.run WHERE trades.id > ? GROUP BY trades.run",
                (self._seen_trade_id,),
            )
            for run_id, count, first, last, top in rows:
                totals = self._totals.setdefault(run_id, RunTotals())
                totals.trades += count
                totals.first_ns = first if totals.first_ns is None else min(totals.first_ns, first)
                totals.last_ns = last if totals.last_ns is None else max(totals.last_ns, last)
                self._seen_trade_id = max(self._seen_trade_id, top)
            return dict(self._totals)

    def trade_count(self, run_id: str) -> int:
        """The run's trades: counted once (a scan of the run column), then
        only over the rows added since (a rowid range)."""
        with self._lock:
            seen, count = self._counts.get(run_id, (0, 0))
            rows = self._query(
                "SELECT count(*), max(id) FROM trades WHERE id > ? AND run = (SELECT id FROM runs WHERE run_id = ?)",
                (seen, run_id),
            )
            if rows and rows[0][0]:
                added, top = rows[0]
                seen, count = top, count + added
                self._counts[run_id] = (seen, count)
            return count

    def runs_performance(self) -> dict[str, dict[str, Any]]:
        """run_performance() of every run, for the runs page, kept up to date
        from the snapshots added since the last call (in commit order, which
        is each run's time order: a backtest records its bars in order), so
        a live runs page costs the new rows, not the whole table, per poll."""
        if not self.exists():
            return {}
        with self._lock:
            rows = self._query(
                "SELECT id, run_id, strategy, value, time_ns FROM portfolio WHERE id > ? ORDER BY id",
                (self._seen_snapshot_id,),
            )
            for snapshot_id, run_id, strategy, value, time_ns in rows:
                perf = self._performance.get(run_id)
                if perf is None:
                    perf = self._performance[run_id] = {
                        "strategy": strategy, "first_ns": time_ns, "last_ns": time_ns, "snapshots": 0,
                        "max_drawdown": 0.0, "start_value": value, "final_value": value, "peak": value,
                    }
                perf["snapshots"] += 1
                perf["first_ns"], perf["last_ns"] = min(perf["first_ns"], time_ns), max(perf["last_ns"], time_ns)
                perf["final_value"] = value
                perf["peak"] = max(perf["peak"], value)
                if perf["peak"] > 0:
                    perf["max_drawdown"] = max(perf["max_drawdown"], 1 - value / perf["peak"])
                self._seen_snapshot_id = snapshot_id
            return {run_id: dict(perf) for run_id, perf in self._performance.items()}

    def run_performance(self, run_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Per run (or for ``run_id`` alone, through the portfolio_by_run
        index): strategy, first and last snapshot, start and final value,
        return and maximum drawdown (from the running peak), snapshots."""
        if not self.exists():
            return {}
        where = "WHERE run_id = ?" if run_id else ""
        rows = self._query(
            "SELECT run_id, strategy, min(time_ns), max(time_ns), count(*), max(drawdown),"
            " first_value, last_value FROM ("
            "  SELECT run_id, strategy, time_ns, CASE WHEN peak > 0 THEN 1 - value / peak ELSE 0 END AS drawdown,"
            "   first_value(value) OVER whole AS first_value, last_value(value) OVER whole AS last_value"
            f"  FROM (SELECT *, max(value) OVER (PARTITION BY run_id ORDER BY time_ns, id) AS peak FROM portfolio {where})"
            "  WINDOW whole AS (PARTITION BY run_id ORDER BY time_ns, id"
            "   ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)"
            ") GROUP BY run_id",
            (run_id,) if run_id else (),
        )
        return {
            run_id: {
                "strategy": strategy, "first_ns": first, "last_ns": last, "snapshots": count,
                "max_drawdown": drawdown, "start_value": start, "final_value": final,
                "return": final / start - 1 if start else None,
            }
            for run_id, strategy, first, last, count, drawdown, start, final in rows
        }

    def run_strategies(self) -> dict[str, str]:
        """The strategy of each run that has trades (through the series table)."""
        if not self.exists():
            return {}
        return dict(self._query(
            "SELECT runs.run_id, series.strategy FROM runs JOIN trades ON trades.id ="
            " (SELECT id FROM trades WHERE trades.run = runs.id LIMIT 1) JOIN series ON series.id = trades.series"
        ))

    def run_ids(self) -> list[str]:
        if not self.exists():
            return []
        return [row[0] for row in self._query("SELECT run_id FROM runs UNION SELECT DISTINCT run_id FROM portfolio")]

    # --- one run --------------------------------------------------------------------

    def equity(self, run_id: str, max_points: int = 2_000) -> Equity:
        """The run's portfolio snapshots in simulated time, thinned to at most
        ``max_points`` (every n-th, the last always kept)."""
        rows = self._query(
            "SELECT time_ns, value, cash, positions FROM portfolio WHERE run_id = ? ORDER BY time_ns, id", (run_id,)
        )
        total = len(rows)
        peak, max_drawdown = float("-inf"), 0.0
        for value in map(_second, rows):
            if value > peak:
                peak = value
            elif peak > 0 and 1 - value / peak > max_drawdown:
                max_drawdown = 1 - value / peak
        if total > max_points:
            step = -(-total // max_points)
            rows = rows[::step] + ([rows[-1]] if (total - 1) % step else [])
        return Equity(
            [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
            [_open_positions(r[3]) for r in rows], total, max_drawdown if rows else None,
        )

    def trades(self, run_id: str, symbol: str | None = None, side: str | None = None, start_ns: int | None = None,
               end_ns: int | None = None, page: int = 0, page_size: int = PAGE_SIZE) -> tuple[list[tuple], int]:
        """One page of the run's trades, oldest first, and how many match.
        Symbol and side select through the (series, time_ns) index, the time
        range alone through (time_ns)."""
        run = self._query("SELECT id FROM runs WHERE run_id = ?", (run_id,))
        if not run:
            return [], 0
        clauses, parameters = ["trades.run = ?"], [run[0][0]]
        series = []
        if symbol:
            series.append("symbol = ?")
            parameters.append(symbol)
        if side:
            series.append("action = ?")
            parameters.append(side)
        if series:
            clauses.append(f"trades.series IN (SELECT id FROM series WHERE {' AND '.join(series)})")
        if start_ns is not None:
            clauses.append("trades.time_ns >= ?")
            parameters.append(start_ns)
        if end_ns is not None:
            clauses.append("trades.time_ns < ?")
            parameters.append(end_ns)
        where = " AND ".join(clauses)
        if series or start_ns is not None or end_ns is not None:
            total = self._query(f"SELECT count(*) FROM trades WHERE {where}", parameters)[0][0]
        else:
            total = self.trade_count(run_id)
        rows = self._query(
            "SELECT trades.id, time_ns, symbol, action, price, quantity FROM trades JOIN series ON series.id = trades.series"
            f" WHERE {where} ORDER BY trades.time_ns, trades.id LIMIT ? OFFSET ?",
            parameters + [page_size, page * page_size],
        )
        return rows, total

    def trade_marks(self, run_id: str, limit: int = 500) -> list[tuple[int, str]]:
        """(time, side) of trades to mark on the equity curve: all of them up
        to ``limit``, else the first ``limit`` (the chart says so)."""
        return self._query(
            "SELECT time_ns, action FROM trades JOIN series ON series.id = trades.series"
            " WHERE trades.run = (SELECT id FROM runs WHERE run_id = ?) ORDER BY time_ns LIMIT ?", (run_id, limit)
        )

    def symbols(self, strategy: str) -> list[str]:
        """The symbols the strategy traded (the small series table, not the trades)."""
        return [row[0] for row in self._query(
            "SELECT DISTINCT symbol FROM series WHERE strategy = ? ORDER BY symbol", (strategy,)
        )]


_second = itemgetter(1)


def _open_positions(holdings: str) -> int:
    import json

    try:
        return sum(1 for quantity in json.loads(holdings).values() if quantity)
    except (ValueError, AttributeError):
        return 0

"""``rqa-otel export``: a run's trades and equity series as CSV or Parquet files.

Parquet needs pyarrow (not a dependency of rqa-otel): without it the
command says so and writes nothing. Columns are documented in docs/journal.md.
"""

from __future__ import annotations

import csv
import datetime as dt
import os

from rqa_otel.view.data import TelemetryView

TRADE_COLUMNS = ("time", "time_ns", "symbol", "side", "price", "quantity", "notional")
EQUITY_COLUMNS = ("time", "time_ns", "value", "cash", "positions", "drawdown")
FORMATS = ("csv", "parquet")
_BATCH = 50_000


class ExportError(Exception):
    pass


def _iso(time_ns: int) -> str:
    return dt.datetime.fromtimestamp(time_ns / 1e9, dt.timezone.utc).isoformat()


def _trade_rows(view: TelemetryView, run_id: str):
    page = 0
    while True:  # in batches: a million trades never sit in memory at once
        rows, _ = view.journal.trades(run_id, page=page, page_size=_BATCH)
        for _, time_ns, symbol, side, price, quantity in rows:
            yield (_iso(time_ns), time_ns, symbol, side, price, quantity, price * quantity)
        if len(rows) < _BATCH:
            return
        page += 1


def _equity_rows(view: TelemetryView, run_id: str):
    equity = view.journal.equity(run_id, max_points=2**62)
    peak = float("-inf")
    for time_ns, value, cash, positions in zip(equity.time_ns, equity.value, equity.cash, equity.positions):
        peak = max(peak, value)
        yield (_iso(time_ns), time_ns, value, cash, positions, 1 - value / peak if peak > 0 else 0.0)


def export_run(directory: str, run_id: str, output: str, fmt: str = "csv") -> dict[str, str]:
    """Write ``trades.<fmt>`` and ``equity.<fmt>`` of the run under
    ``output`` (a directory); returns {"trades": path, "equity": path}."""
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        try:
            import pyarrow
            import pyarrow.parquet
        except ImportError:
            raise ExportError("format parquet needs pyarrow, which is not installed (pip install pyarrow); "
                              "--format csv needs nothing") from None
    view = TelemetryView(directory)
    run_id = view.resolve(run_id)
    os.makedirs(output, exist_ok=True)
    written = {}
    for name, columns, rows in (("trades", TRADE_COLUMNS, _trade_rows(view, run_id)),
                                ("equity", EQUITY_COLUMNS, _equity_rows(view, run_id))):
        path = os.path.join(output, f"{name}.{fmt}")
        if fmt == "csv":
            with open(path, "w", newline="", encoding="utf-8") as out:
                writer = csv.writer(out)
                writer.writerow(columns)
                writer.writerows(rows)
        else:
            data = list(zip(*rows)) or [[] for _ in columns]
            pyarrow.parquet.write_table(pyarrow.table(dict(zip(columns, map(list, data)))), path)
        written[name] = path
    return written

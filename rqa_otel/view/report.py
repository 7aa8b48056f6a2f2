"""``rqa-otel report``: one run's page as one self-contained HTML file.

Everything is inline (style, SVG charts); there is no script and no URL, so
the file shows the same offline, attached to a research note, years later.
The blotter and the log list are cut at REPORT_ROWS rows (the file says so;
``rqa-otel export`` writes every trade)."""

from __future__ import annotations

import os

from rqa_otel.view import pages
from rqa_otel.view.data import TelemetryView

REPORT_ROWS = 1_000


def write_report(directory: str, run_id: str, output: str) -> str:
    """Write the report of ``run_id`` (or a unique prefix of it) to
    ``output``; returns the full run id. UnknownRun if there is no such run."""
    view = TelemetryView(directory)
    view.refresh()
    run_id = view.resolve(run_id)
    equity = view.journal.equity(run_id)
    row = view.run(run_id, equity)
    body = pages.run_body(view, row, {}, 0, 0, live=False, trade_page_size=REPORT_ROWS, log_page_size=REPORT_ROWS,
                          equity=equity)
    html = pages.page(f"rqa-otel report: run {row.run_id} ({row.strategy})", body, live=False)
    temporary = f"{output}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as out:
        out.write(html)
    os.replace(temporary, output)
    return row.run_id

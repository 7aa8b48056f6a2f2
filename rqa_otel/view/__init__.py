"""``rqa-otel view``: a local web view of one telemetry directory (the
embedded default's OTLP-JSON files and its trade journal), the one-file
HTML report of a run, and a run's data written out for notebooks.

    from rqa_otel.view import ViewServer, write_report, export_run

Layout: ``files`` reads the JSONL files incrementally, ``journal`` queries
trades.db read-only through its indexes, ``data`` assembles what a page
shows, ``charts`` draws SVG, ``pages`` writes HTML, ``server`` serves it,
``report`` and ``export`` write files.
"""

from rqa_otel.view.data import TelemetryView, UnknownRun
from rqa_otel.view.export import export_run
from rqa_otel.view.report import write_report
from rqa_otel.view.server import ViewServer

__all__ = ["TelemetryView", "UnknownRun", "ViewServer", "export_run", "write_report"]

"""The pages, as HTML strings: every value escaped, no external asset.

``page()`` wraps a body in the layout. In the server the layout carries a
small script that polls ``/api/version`` every second and, when something
new was written, fetches the same URL's ``<main>`` and swaps it in (no
reload, scroll position kept). In a report (``live=False``) there is no
script and no link to the server: one self-contained file.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any, Iterable
from urllib.parse import urlencode

from rqa_otel import names
from rqa_otel.view import charts
from rqa_otel.view.data import LogQuery, RunRow, parse_time

POLL_MS = 1000

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1f2328;background:#fff}
header{background:#24292f;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}
header a{color:#fff;text-decoration:none}header .live{margin-left:auto;font-size:12px;color:#8c959f}
main{padding:8px 16px 32px}h1{font-size:20px}h2{font-size:16px;margin-top:24px;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;border-bottom:1px solid #eaeef2;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
dl.summary{display:grid;grid-template-columns:max-content auto;gap:2px 16px}dl.summary dt{color:#656d76}
.chart{max-width:1100px;display:block}.chart text{font-size:11px;fill:#656d76}.chart .grid{stroke:#eaeef2}
.waterfall .span rect{fill:#54aeff}.waterfall .span-alert rect{fill:#d1242f}.waterfall .span-alert text{fill:#d1242f}
.waterfall .event{stroke:#1f2328;stroke-width:2}.empty,.note{color:#656d76;font-style:italic}
.bad{color:#d1242f;font-weight:600}form.filters{display:flex;gap:8px;flex-wrap:wrap;margin:4px 0}
.sev-critical{color:#d1242f}.sev-warning{color:#9a6700}
"""

LIVE_SCRIPT = """
<script>
(function(){
  var version=null;
  function poll(){
    fetch('/api/version',{cache:'no-store'}).then(function(r){return r.json()}).then(function(v){
      if(version!==null && v.version!==version){
        return fetch(location.href,{headers:{'X-RQA-Partial':'1'},cache:'no-store'}).then(function(r){return r.text()})
          .then(function(html){var m=document.querySelector('main');m.innerHTML=html;
            document.body.dataset.version=v.version;version=v.version;});
      }
      version=v.version;document.body.dataset.version=v.version;
    }).catch(function(){}).then(function(){setTimeout(poll,%d)});
  }
  poll();
})();
</script>
""" % POLL_MS


def page(title: str, body: str, live: bool = True) -> str:
    nav = (
        '<header><strong>rqa-otel view</strong><a href="/">Runs</a><a href="/resources">Resources</a>'
        '<a href="/pipeline">Pipeline</a><span class="live">live: updates every second</span></header>'
        if live else f'<header><strong>rqa-otel report</strong><span class="live">generated '
        f'{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC</span></header>'
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style></head>'
        f'<body>{nav}<main>{body}</main>{LIVE_SCRIPT if live else ""}</body></html>'
    )


def _time(time_ns: int | None, with_time: bool = False) -> str:
    if time_ns is None:
        return "-"
    moment = dt.datetime.fromtimestamp(time_ns / 1e9, dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if with_time else "%Y-%m-%d")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2%}"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _table(headers: Iterable[str], rows: Iterable[Iterable[Any]], css_id: str, numeric: set[int] = frozenset()) -> str:
    head = "".join(f'<th{" class=n" if i in numeric else ""}>{escape(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{cell}</td>' for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f'<table id="{css_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# --- pages -----------------------------------------------------------------------------


def no_data(directory: str) -> str:
    return ((
        f'<h1>No telemetry in {escape(directory)}</h1><div id="no-data">'
        f"<p>The view reads the embedded default's files in this directory: <code>traces.jsonl</code>, "
        f"<code>metrics.jsonl</code>, <code>logs.jsonl</code> (OTLP JSON lines) and the trade journal "
        f"<code>trades.db</code>. None of them is here yet.</p>"
        f"<p>To produce them: <code>rqa-otel demo --output {escape(directory)}</code>, or run a strategy with "
        f"<code>RQA_EXPORT__DIRECTORY={escape(directory)} rqa-otel run -- python my_strategy.py</code> "
        f"(the default directory is <code>./rqa-telemetry</code>). This page updates by itself once data arrives.</p></div>"
    ))


def runs_page(rows: list[RunRow], strategies: list[str], strategy: str) -> str:
    options = "".join(
        f'<option value="{escape(s)}"{" selected" if s == strategy else ""}>{escape(s)}</option>' for s in strategies
    )
    form = (f'<form class="filters" method="get" action="/"><label>strategy <select name="strategy" id="strategy-filter">'
            f'<option value="">(all)</option>{options}</select></label><button>filter</button></form>')
    table = _table(
        ("run", "strategy", "parameters", "period", "trades", "return", "max drawdown", "alerts", "state"),
        (
            (f'<a href="/run/{escape(r.run_id)}">{escape(r.run_id[:12])}</a>', escape(r.strategy),
             escape(", ".join(f"{k}={v}" for k, v in r.parameters.items())),
             f"{_time(r.first_ns)} .. {_time(r.last_ns)}", f"{r.trades:,}", _pct(r.total_return),
             "-" if r.max_drawdown is None else f"{r.max_drawdown:.2%}", str(r.alerts),
             "finished" if r.finished else "running or not flushed")
            for r in rows
        ),
        "runs", numeric={4, 5, 6, 7},
    )
    return f'<h1>Runs</h1>{form}<p id="run-count">{len(rows)} run(s)</p>{table}'


def run_body(view, row: RunRow, filters: dict[str, str], trade_page: int, log_page: int, live: bool,
             trade_page_size: int = 50, log_page_size: int = 50, equity=None) -> str:
    """The run page's content (also the report's)."""
    equity = equity if equity is not None else view.journal.equity(row.run_id)
    parts = [f'<h1>Run {escape(row.run_id)}</h1>']
    parts.append('<dl class="summary" id="summary">' + "".join(
        f'<dt>{label}</dt><dd id="{css_id}">{value}</dd>' for label, css_id, value in (
            ("strategy", "strategy", escape(row.strategy)),
            ("parameters", "parameters", escape(", ".join(f"{k}={v}" for k, v in row.parameters.items())) or "-"),
            ("period (simulated)", "period", f"{_time(row.first_ns)} .. {_time(row.last_ns)}"),
            ("trades", "trade-count", f"{row.trades:,}"),
            ("start value", "start-value", _money(row.start_value)),
            ("final value", "final-value", _money(row.final_value)),
            ("return", "return", _pct(row.total_return)),
            ("max drawdown", "max-drawdown", "-" if row.max_drawdown is None else f"{row.max_drawdown:.2%}"),
            ("alerts", "alert-count", str(len(view.run_alerts(row)))),
            ("state", "state", "finished" if row.finished else "running (or its run span not yet flushed)"),
        )) + "</dl>")

    parts.append("<h2>Equity, drawdown, cash and positions (simulated time)</h2>")
    marks = view.journal.trade_marks(row.run_id) if equity.time_ns else []
    parts.append(charts.line_panel("equity", equity.time_ns, {"value": equity.value}, 220, marks=marks, css_id="equity"))
    if len(marks) < row.trades and marks:
        parts.append(f'<p class="note">the first {len(marks)} of {row.trades:,} trades are marked</p>')
    parts.append(charts.line_panel("drawdown", equity.time_ns, {"drawdown": [-d for d in charts.drawdowns(equity.value)]},
                                   110, fill="drawdown", percent=True, css_id="drawdown"))
    parts.append(charts.line_panel("cash", equity.time_ns, {"cash": equity.cash}, 110, css_id="cash"))
    parts.append(charts.line_panel("positions", equity.time_ns, {"positions": equity.positions}, 90, css_id="positions"))
    if equity.points > len(equity.time_ns):
        parts.append(f'<p class="note">{equity.points:,} snapshots, drawn as {len(equity.time_ns):,}</p>')

    parts.append(_blotter(view, row, filters, trade_page, live, trade_page_size))
    parts.append(_signals(view.signals(row)))
    parts.append("<h2>Trace</h2>" + charts.waterfall(view.spans(row), names.ALERT_NAME))
    retries = sum(1 for s in view.spans(row) for e in s.events if e[0] == names.RETRY_EVENT)
    parts.append(f'<p id="retry-count">{retries} retry event(s) (ticks on the bars)</p>')
    parts.append(_alerts(view.run_alerts(row)))
    parts.append(_logs(view, row, filters, log_page, live, log_page_size))
    return "".join(parts)


def _link(base: str, filters: dict[str, str], **changes: Any) -> str:
    query = {k: v for k, v in {**filters, **{k: str(v) for k, v in changes.items()}}.items() if v not in ("", "0")}
    return escape(base + ("?" + urlencode(query) if query else ""))


def _blotter(view, row: RunRow, filters: dict[str, str], page_number: int, live: bool, page_size: int) -> str:
    trades, total = view.journal.trades(
        row.run_id, filters.get("symbol") or None, filters.get("side") or None,
        parse_time(filters.get("from", ""), "from"), parse_time(filters.get("to", ""), "to"), page_number, page_size,
    )
    html = ['<h2>Trades</h2>']
    if live:
        symbols = "".join(f'<option{" selected" if s == filters.get("symbol") else ""}>{escape(s)}</option>'
                          for s in view.journal.symbols(row.strategy))
        sides = "".join(f'<option{" selected" if s == filters.get("side") else ""}>{s}</option>' for s in ("buy", "sell"))
        keep = "".join(f'<input type="hidden" name="{k}" value="{escape(v)}">' for k, v in filters.items()
                       if k in ("strategy", "stock", "signal", "level", "text"))
        html.append(
            f'<form class="filters" id="trade-filters" method="get">{keep}<label>symbol <select name="symbol"><option value="">(all)</option>'
            f'{symbols}</select></label><label>side <select name="side"><option value="">(both)</option>{sides}</select></label>'
            f'<label>from <input name="from" size="10" placeholder="YYYY-MM-DD" value="{escape(filters.get("from", ""))}"></label>'
            f'<label>to <input name="to" size="10" placeholder="YYYY-MM-DD" value="{escape(filters.get("to", ""))}"></label>'
            f'<button>filter</button></form>'
        )
    pages = max(1, -(-total // page_size))
    html.append(f'<p id="trade-page">{total:,} trade(s); page {page_number + 1} of {pages}</p>')
    html.append(_table(
        ("#", "time (simulated)", "symbol", "side", "price", "quantity", "notional"),
        ((str(i), _time(t, True), escape(sym), side, f"{price:,.4f}", f"{qty:,.0f}", f"{price * qty:,.2f}")
         for i, t, sym, side, price, qty in trades),
        "blotter", numeric={0, 4, 5, 6},
    ))
    if live and pages > 1:
        links = []
        if page_number > 0:
            links.append(f'<a id="trades-prev" href="{_link("", filters, trades=page_number - 1)}">previous</a>')
        if page_number + 1 < pages:
            links.append(f'<a id="trades-next" href="{_link("", filters, trades=page_number + 1)}">next</a>')
        html.append("<p>" + " ".join(links) + "</p>")
    elif not live and total > len(trades):
        html.append(f'<p class="note">the first {len(trades):,} of {total:,} trades; '
                    f"<code>rqa-otel export {escape(row.run_id)}</code> writes them all</p>")
    return "".join(html)


def _signals(signals: dict) -> str:
    if not signals:
        return '<h2>Signals per stock</h2><div class="empty" id="signals">no signal records for this run (yet)</div>'
    kinds = sorted({kind for counts in signals.values() for kind in counts})
    return "<h2>Signals per stock</h2>" + _table(
        ["stock", *kinds, "total"],
        ([escape(stock), *(f"{counts.get(k, 0):,}" for k in kinds), f"{sum(counts.values()):,}"]
         for stock, counts in signals.items()),
        "signals", numeric=set(range(1, len(kinds) + 2)),
    )


def _alerts(alerts: list) -> str:
    by_severity: dict[str, int] = {}
    for alert in alerts:
        severity = str(alert.attributes.get(names.ALERT_SEVERITY, ""))
        by_severity[severity] = by_severity.get(severity, 0) + 1
    counts = ", ".join(f'<span class="sev-{escape(k)}">{escape(k)} {n}</span>' for k, n in sorted(by_severity.items()))
    return (
        f'<h2>Alerts by severity over time</h2><p id="alerts-by-severity">{counts or "none"}</p>'
        + charts.severity_timeline(alerts)
        + _table(("time (wall clock)", "severity", "alert", "stock", "message"), (
            (_time(a.start_ns, True), f'<span class="sev-{escape(str(a.attributes.get(names.ALERT_SEVERITY, "")))}">'
             f'{escape(str(a.attributes.get(names.ALERT_SEVERITY, "")))}</span>',
             escape(str(a.attributes.get(names.ALERT_NAME, ""))), escape(str(a.attributes.get(names.STOCK, ""))),
             escape(str(a.attributes.get(names.ALERT_MESSAGE, ""))))
            for a in sorted(alerts, key=lambda a: a.start_ns)), "alerts")
    )


def _logs(view, row: RunRow, filters: dict[str, str], page_number: int, live: bool, page_size: int) -> str:
    query = LogQuery(filters.get("strategy", ""), filters.get("stock", ""), filters.get("signal", ""),
                     filters.get("level", ""), filters.get("text", ""))
    records, more = view.logs(row, query, page_number, page_size)
    html = ["<h2>Logs</h2>"]
    if live:
        keep = "".join(f'<input type="hidden" name="{k}" value="{escape(v)}">' for k, v in filters.items()
                       if k in ("symbol", "side", "from", "to"))
        fields = "".join(
            f'<label>{label} <input name="{name}" size="10" value="{escape(filters.get(name, ""))}"></label>'
            for name, label in (("strategy", "strategy"), ("stock", "stock"), ("signal", "signal"), ("level", "level"),
                                ("text", "text"))
        )
        html.append(f'<form class="filters" id="log-filters" method="get">{keep}{fields}<button>search</button></form>')
    html.append(f'<p id="log-page">page {page_number + 1}: {len(records)} record(s){", more follow" if more else ""}</p>')
    html.append(_table(
        ("time", "level", "logger / event", "stock", "signal", "message"),
        ((_time(r.time_ns, True), escape(r.level), escape(r.scope), escape(str(r.attributes.get(names.STOCK, ""))),
          escape(str(r.attributes.get(names.SIGNAL, ""))), escape(r.body)) for r in records),
        "logs",
    ))
    if live and (more or page_number):
        links = []
        if page_number:
            links.append(f'<a id="logs-prev" href="{_link("", filters, logs=page_number - 1)}">previous</a>')
        if more:
            links.append(f'<a id="logs-next" href="{_link("", filters, logs=page_number + 1)}">next</a>')
        html.append("<p>" + " ".join(links) + "</p>")
    return "".join(html)


def resources_body(resources: dict[str, dict[str, Any]]) -> str:
    if not resources:
        return ('<h1>Strategy resources</h1><div class="empty" id="resources">no per-strategy resource readings '
                '(rqa.strategy.* gauges) yet</div>')
    parts = ["<h1>Strategy resources</h1>"]
    units = {"cpu": ("% of a core", 1.0), "memory": ("MiB", 1 / 2**20), "gpu_memory": ("MiB", 1 / 2**20)}
    for strategy, data in resources.items():
        parts.append(f'<h2 class="strategy">{escape(strategy)}</h2>')
        rows = []
        for resource, (unit, factor) in units.items():
            usage = data["usage"].get(resource)
            quota = data["quota"].get(resource)
            state = data["state"].get(resource)
            if usage is None and quota is None:
                continue
            over = usage is not None and quota is not None and usage * factor > quota
            rows.append((resource, "-" if usage is None else f"{usage * factor:,.1f} {unit}",
                         "-" if quota is None else f"{quota:,.1f}", f'<span class="{"bad" if over else ""}">'
                         f'{"over quota" if over else "-" if state is None else "ok" if not state else "breach"}</span>'))
        parts.append(_table(("resource", "last reading", "quota", "state"), rows, f"usage-{escape(strategy)}"))
        for resource, points in data["history"].items():
            unit, factor = units[resource]
            parts.append(charts.line_panel(f"{resource} ({unit})", [t for t, _ in points],
                                           {resource: [v * factor for _, v in points]}, 90))
        episodes = data["episodes"]
        parts.append(f'<p class="episodes">breach episodes: <span class="episode-count">{len(episodes)}</span>; '
                     f'warnings: <span class="warning-count">{len(data["warnings"])}</span>; '
                     f'recoveries: {len(data["recovered"])}</p>')
        parts.append(_table(("time", "resource", "value", "quota", "episode", "message"), (
            (_time(a.start_ns, True), escape(str(a.attributes.get(names.QUOTA_RESOURCE, ""))),
             f'{a.attributes.get(names.QUOTA_VALUE, 0):,.1f}', f'{a.attributes.get(names.QUOTA_LIMIT, 0):,.1f}',
             escape(str(a.attributes.get(names.QUOTA_EPISODE_ID, ""))), escape(str(a.attributes.get(names.ALERT_MESSAGE, ""))))
            for a in episodes), f"episodes-{escape(strategy)}"))
        if data["warnings"]:
            parts.append(_table(("time", "warning"), ((_time(r.time_ns, True), escape(r.body)) for r in data["warnings"]),
                                f"warnings-{escape(strategy)}"))
    return "".join(parts)


def pipeline_body(data: dict[str, Any]) -> str:
    parts = ["<h1>Pipeline</h1><h2>Files read by this view</h2>"]
    parts.append(_table(("file", "lines read", "corrupt lines skipped", "unfinished last line (bytes)", "read up to",
                         "rotated (read again)"), (
        (escape(s.path), f"{s.lines:,}", f'<span class="{"bad" if s.corrupt else ""}">{s.corrupt:,}</span>',
         f"{s.pending:,}", f"{s.offset:,}", f"{s.restarts:,}") for s in data["files"]), "files", numeric={1, 2, 3, 4, 5}))
    labels = {
        names.LOG_RECORDS_DROPPED_COUNTER: "log records dropped", names.LOG_RECORDS_SUPPRESSED_COUNTER: "log records suppressed",
        names.SPOOL_SIZE_GAUGE: "spool size", names.SPOOL_DROPPED_COUNTER: "spool: dropped",
        names.SPOOL_REPLAYED_COUNTER: "spool: replayed", names.CONFIG_RELOADS_COUNTER: "settings reloads",
        names.CONFIG_LAST_RELOAD_SUCCESSFUL_GAUGE: "last reload successful",
    }
    parts.append("<h2>Records dropped and suppressed, spool, reloads (last values)</h2>")
    parts.append(_table(("metric", "series", "value"), (
        (f"{escape(labels[m])} <code>{escape(m)}</code>", escape(series), f"{value:,.0f}")
        for m, rows in data["metrics"].items() for series, value in (rows or [("(none reported)", 0.0)])),
        "pipeline-metrics", numeric={2}))
    parts.append(f'<h2>Export failures</h2><p id="export-failure-count">{len(data["alerts"])} alert(s)</p>')
    parts.append(_table(("time", "alert", "message"), (
        (_time(a.start_ns, True), escape(str(a.attributes.get(names.ALERT_NAME, ""))),
         escape(str(a.attributes.get(names.ALERT_MESSAGE, "")))) for a in data["alerts"]), "export-failures"))
    parts.append(f'<h2>Settings reloads</h2><p id="reload-count">{len(data["reloads"])} reload(s)</p>')
    parts.append(_table(("time", "trigger", "outcome", "changed keys"), (
        (_time(s.start_ns, True), escape(str(s.attributes.get(names.CONFIG_RELOAD_TRIGGER, ""))),
         escape(str(s.attributes.get(names.CONFIG_RELOAD_OUTCOME, ""))),
         escape(", ".join(map(str, s.attributes.get(names.CONFIG_CHANGED_KEYS, []) or []))))
        for s in data["reloads"]), "reloads"))
    return "".join(parts)

"""Charts as SVG, drawn on the server.

Why no JavaScript charting library: the pages and the one-file report then
need no asset at all (nothing to vendor, license or fetch; a report is
self-contained by construction), the browser draws a few thousand points of
SVG instantly, and the series are thinned on the server to what a chart
can show (``Journal.equity``: at most 2,000 points), so a million-trade run
costs the page no more than a small one. The run page's four charts of
2,000 points took 35 ms (cProfile, loaded 2-core machine); bench row
view_first_page includes them.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left
from html import escape
from typing import Sequence

WIDTH, PLOT_LEFT, PLOT_RIGHT = 900, 70, 10
COLORS = {"value": "#1f6feb", "cash": "#8b949e", "drawdown": "#d1242f", "positions": "#6f42c1",
          "buy": "#1a7f37", "sell": "#d1242f", "info": "#0969da", "warning": "#bf8700", "critical": "#d1242f"}


def _scale(values: Sequence[float], low_pixel: float, high_pixel: float, low=None, high=None):
    low = min(values) if low is None else low
    high = max(values) if high is None else high
    span = (high - low) or 1.0
    return lambda v: low_pixel + (v - low) / span * (high_pixel - low_pixel), low, high


def _date(time_ns: int, with_time: bool = False) -> str:
    moment = dt.datetime.fromtimestamp(time_ns / 1e9, dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if with_time else "%Y-%m-%d")


def _path(xs: Sequence[float], ys: Sequence[float]) -> str:
    return "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))


def line_panel(title: str, times: Sequence[int], series: dict[str, Sequence[float]], height: int = 160,
               fill: str | None = None, marks: Sequence[tuple[int, str]] = (), percent: bool = False,
               css_id: str = "") -> str:
    """One panel: lines over time (shared x axis), optional trade marks."""
    if not times:
        return f'<div class="empty">{escape(title)}: no data yet</div>'
    x_of, _, _ = _scale(times, PLOT_LEFT, WIDTH - PLOT_RIGHT, min(times), max(times) if len(times) > 1 else min(times) + 1)
    values = [v for points in series.values() for v in points]
    y_of, low, high = _scale(values, height - 20, 10)
    parts = [f'<svg class="chart" id="{css_id}" viewBox="0 0 {WIDTH} {height}" width="100%" role="img"'
             f' aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for fraction in (0.0, 0.5, 1.0):
        value = low + (high - low) * fraction
        y = y_of(value)
        label = f"{value:.1%}" if percent else f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
        parts.append(f'<line x1="{PLOT_LEFT}" x2="{WIDTH - PLOT_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{PLOT_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    parts.append(f'<text x="{PLOT_LEFT}" y="{height - 4}">{_date(times[0])}</text>'
                 f'<text x="{WIDTH - PLOT_RIGHT}" y="{height - 4}" text-anchor="end">{_date(times[-1])}</text>')
    xs = [x_of(t) for t in times]
    for name, points in series.items():
        ys = [y_of(v) for v in points]
        if fill == name:
            parts.append(f'<path d="{_path(xs, ys)} L{xs[-1]:.1f},{y_of(low):.1f} L{xs[0]:.1f},{y_of(low):.1f} Z"'
                         f' fill="{COLORS.get(name, "#888")}" fill-opacity="0.25" stroke="none"/>')
        parts.append(f'<path d="{_path(xs, ys)}" fill="none" stroke="{COLORS.get(name, "#888")}" stroke-width="1.5"'
                     f' class="series-{escape(name)}"/>')
    if marks:
        values_at = series[next(iter(series))]
        for time_ns, side in marks:
            x, y = x_of(time_ns), y_of(_at(times, values_at, time_ns))
            tip = 9 if side == "buy" else -9
            parts.append(f'<path class="mark-{side}" d="M{x:.1f},{y:.1f} l-4,{tip} l8,0 Z" fill="{COLORS[side]}"/>')
    legend = " ".join(f'<tspan fill="{COLORS.get(n, "#888")}">&#9632; {escape(n)}</tspan>' for n in series)
    parts.append(f'<text x="{PLOT_LEFT + 4}" y="12" class="legend">{escape(title)} {legend}</text></svg>')
    return "".join(parts)


def _at(times: Sequence[int], values: Sequence[float], time_ns: int) -> float:
    """The series at ``time_ns``, interpolated between its snapshots (a
    trade sits on the line even when snapshots are sparser than trades)."""
    index = bisect_left(times, time_ns)
    if index == 0 or index == len(times):
        return values[min(index, len(times) - 1)]
    t0, t1 = times[index - 1], times[index]
    fraction = (time_ns - t0) / (t1 - t0) if t1 > t0 else 1.0
    return values[index - 1] + (values[index] - values[index - 1]) * fraction


def drawdowns(values: Sequence[float]) -> list[float]:
    """Drawdown from the running peak at each point (0.1 = 10 % below it)."""
    peak, result = float("-inf"), []
    for value in values:
        peak = max(peak, value)
        result.append(1 - value / peak if peak > 0 else 0.0)
    return result


def waterfall(spans: list, highlight: str, max_rows: int = 300) -> str:
    """The trace as rows of bars on one time axis, parents before children;
    alert spans highlighted, span events (retries) as ticks."""
    if not spans:
        return '<div class="empty">no spans for this run yet (the run span is written when the run ends)</div>'
    children: dict[str, list] = {}
    ids = {span.span_id for span in spans}
    for span in sorted(spans, key=lambda s: s.start_ns):
        parent = span.parent_id if span.parent_id in ids else ""
        children.setdefault(parent, []).append(span)
    ordered: list[tuple[int, object]] = []

    def walk(parent: str, depth: int) -> None:
        for span in children.get(parent, []):
            ordered.append((depth, span))
            walk(span.span_id, depth + 1)

    walk("", 0)
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    x_of, _, _ = _scale([start, end], 300, WIDTH - PLOT_RIGHT, start, end if end > start else start + 1)
    shown = ordered[:max_rows]
    row = 18
    parts = [f'<svg class="chart waterfall" viewBox="0 0 {WIDTH} {row * len(shown) + 24}" width="100%">']
    for index, (depth, span) in enumerate(shown):
        y = 4 + index * row
        alert = highlight in span.attributes
        css = "span-alert" if alert else "span"
        label = span.name + (f" {span.attributes[highlight]}" if alert else "")
        x0, x1 = x_of(span.start_ns), max(x_of(span.end_ns), x_of(span.start_ns) + 2)
        duration_ms = (span.end_ns - span.start_ns) / 1e6
        parts.append(
            f'<g class="{css}"><title>{escape(label)} {duration_ms:.3f} ms</title>'
            f'<text x="{4 + depth * 12}" y="{y + 12}">{escape(label[:40])}</text>'
            f'<rect x="{x0:.1f}" y="{y + 2}" width="{x1 - x0:.1f}" height="{row - 6}"/></g>'
        )
        for name, time_ns, _ in span.events:
            x = x_of(time_ns)
            parts.append(f'<line class="event" x1="{x:.1f}" x2="{x:.1f}" y1="{y}" y2="{y + row - 2}"><title>{escape(name)}</title></line>')
    parts.append(f'<text x="300" y="{row * len(shown) + 18}">{(end - start) / 1e6:,.1f} ms of wall time</text></svg>')
    if len(ordered) > max_rows:
        parts.append(f'<p class="note">{len(ordered) - max_rows} more spans not drawn</p>')
    return "".join(parts)


def severity_timeline(alerts: list, buckets: int = 40) -> str:
    """Alerts over wall-clock time, stacked by severity."""
    if not alerts:
        return '<div class="empty">no alerts</div>'
    start = min(a.start_ns for a in alerts)
    end = max(a.start_ns for a in alerts) + 1
    width = (end - start) / buckets
    counts = [dict.fromkeys(("info", "warning", "critical"), 0) for _ in range(buckets)]
    for alert in alerts:
        severity = str(alert.attributes.get("alert.severity", "warning"))
        counts[min(int((alert.start_ns - start) / width), buckets - 1)][severity if severity in counts[0] else "warning"] += 1
    top = max(sum(c.values()) for c in counts) or 1
    height, bar = 120, (WIDTH - PLOT_LEFT - PLOT_RIGHT) / buckets
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="100%">']
    for index, count in enumerate(counts):
        y = height - 20
        for severity in ("info", "warning", "critical"):
            h = count[severity] / top * (height - 40)
            if h:
                y -= h
                parts.append(f'<rect class="alert-{severity}" x="{PLOT_LEFT + index * bar:.1f}" y="{y:.1f}" width="{bar - 1:.1f}"'
                             f' height="{h:.1f}" fill="{COLORS[severity]}"><title>{count[severity]} {severity}</title></rect>')
    parts.append(f'<text x="{PLOT_LEFT}" y="{height - 4}">{_date(start, True)}</text>'
                 f'<text x="{WIDTH - PLOT_RIGHT}" y="{height - 4}" text-anchor="end">{_date(end, True)}</text>'
                 f'<text x="{PLOT_LEFT - 4}" y="24" text-anchor="end">{top}</text></svg>')
    return "".join(parts)

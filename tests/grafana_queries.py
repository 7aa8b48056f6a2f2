"""What Grafana would send to InfluxDB: the queries of the provisioned
dashboards and alert rules, with Grafana's macros expanded.

Grafana cannot run here (no package, no Docker engine), so this module does
the part of its work that decides whether a query returns rows: it collects
every InfluxQL query (panel targets, template-variable queries, alert-rule
data queries) and expands them the way Grafana's InfluxDB data source does:

- ``$timeFilter`` -> ``time >= <from>ms and time <= <to>ms``;
- ``$__interval`` / ``$interval`` -> range / max data points rounded to a
  round interval, at least the data source's ``timeInterval`` (10s)
  (``$__interval_ms`` in milliseconds);
- template variables (``$var``, ``${var}``, ``[[var]]``): a multi-value or
  include-all variable is regex-formatted: one value regex-escaped, several
  as ``(a|b)``, "All" as the variable's custom all value; any other variable
  is inserted as is.

Alert rules are evaluated over their ``relativeTimeRange``; their queries
have no template variables (Grafana refuses them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS_DIR = ROOT / "grafana" / "dashboards"
ALERTING_DIR = ROOT / "grafana" / "provisioning" / "alerting"
DATASOURCES_DIR = ROOT / "grafana" / "provisioning" / "datasources"
EXPRESSION_DATASOURCE = "__expr__"  # Grafana's server-side expressions (reduce, threshold)

# Grafana's roundInterval (@grafana/data rangeutil): (below this many ms, use this interval).
_ROUND_INTERVALS_MS = [
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1_500, 1_000), (3_500, 2_000),
    (7_500, 5_000), (12_500, 10_000), (17_500, 15_000), (25_000, 20_000), (45_000, 30_000), (90_000, 60_000),
    (210_000, 120_000), (450_000, 300_000), (1_050_000, 600_000), (2_100_000, 1_200_000), (4_500_000, 1_800_000),
    (9_000_000, 3_600_000), (16_200_000, 7_200_000), (32_400_000, 10_800_000), (86_400_000, 21_600_000),
    (604_800_000, 86_400_000), (1_814_400_000, 604_800_000), (3_628_800_000, 2_592_000_000),
]
_LONGEST_INTERVAL_MS = 31_536_000_000
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
_FROM = re.compile(r'\bFROM\s+(?:"[^"]+"\.)?"([^"]+)"', re.IGNORECASE)  # "rp"."measurement" too


@dataclass(frozen=True)
class Query:
    """One InfluxQL query Grafana would run, and where it comes from."""

    where: str  # "strategy-overview.json: panel 'Cash' (A)"
    text: str
    kind: str  # "panel", "variable" or "alert"
    relative_range_s: tuple[int, int] | None = None  # alerts: (from, to) seconds before now
    max_data_points: int = 1000

    @property
    def measurements(self) -> list[str]:
        return _FROM.findall(self.text)


@dataclass
class Variable:
    name: str
    multi: bool
    include_all: bool
    all_value: str | None
    query: str


@dataclass
class Dashboard:
    path: Path
    model: dict
    variables: list[Variable] = field(default_factory=list)


def load_dashboards() -> list[Dashboard]:
    boards = []
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        model = json.loads(path.read_text(encoding="utf-8"))
        variables = [
            Variable(v["name"], bool(v.get("multi")), bool(v.get("includeAll")), v.get("allValue"), _query_text(v))
            for v in model.get("templating", {}).get("list", [])
        ]
        boards.append(Dashboard(path, model, variables))
    return boards


def _query_text(holder: dict) -> str:
    query = holder.get("query", "")
    return query.get("query", "") if isinstance(query, dict) else query


def panels(model: dict) -> Iterator[dict]:
    """Every panel, including those inside collapsed rows."""
    for panel in model.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(board: Dashboard) -> list[Query]:
    queries = [Query(f"{board.path.name}: variable ${v.name}", v.query, "variable") for v in board.variables]
    for panel in panels(board.model):
        for target in panel.get("targets", []):
            queries.append(Query(
                f"{board.path.name}: panel {panel.get('title')!r} ({target.get('refId')})", _query_text(target), "panel",
                max_data_points=int(panel.get("maxDataPoints") or 1000),
            ))
    return queries


def alert_rules(load_yaml) -> Iterator[tuple[Path, dict, dict]]:
    """(file, group, rule) of every provisioned alert rule."""
    for path in sorted(ALERTING_DIR.glob("*.y*ml")):
        for group in (load_yaml(path) or {}).get("groups", []):
            for rule in group.get("rules", []):
                yield path, group, rule


def alert_queries(load_yaml) -> list[Query]:
    queries = []
    for path, group, rule in alert_rules(load_yaml):
        for item in rule["data"]:
            if item["datasourceUid"] == EXPRESSION_DATASOURCE:
                continue
            window = item["relativeTimeRange"]
            queries.append(Query(
                f"{path.name}: rule {rule['title']!r} ({item['refId']})", _query_text(item["model"]), "alert",
                relative_range_s=(int(window["from"]), int(window.get("to", 0))),
            ))
    return queries


def interval_ms(range_ms: int, max_data_points: int, min_interval_ms: int) -> int:
    """Grafana's $__interval (rangeutil.calculateInterval): range / max data
    points rounded to a round interval, then at least the data source's
    time interval."""
    raw = range_ms / max(max_data_points, 1)
    rounded = next((step for below, step in _ROUND_INTERVALS_MS if raw < below), _LONGEST_INTERVAL_MS)
    return max(rounded, min_interval_ms)


def duration(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|[\]{}/]")


def escape_regex(value: str) -> str:
    """Grafana's escapeRegex (@grafana/data): these characters, and only these."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def format_value(variable: Variable, value: str | Sequence[str] | None) -> str:
    """A variable's value as Grafana's InfluxDB data source inserts it
    (``value`` None: "All")."""
    regex = variable.multi or variable.include_all
    if value is None:
        if variable.all_value is not None:
            return variable.all_value
        raise ValueError(f"${variable.name}: 'All' needs the values (no custom all value)")
    if isinstance(value, str):
        return escape_regex(value) if regex else value
    if not regex:
        raise ValueError(f"${variable.name} is not multi-value")
    return "(" + "|".join(escape_regex(v) for v in value) + ")"


def expand(query: str, start_ms: int, end_ms: int, interval: int, values: dict[str, str] | None = None) -> str:
    """``query`` with Grafana's macros and the (already formatted) variable values."""
    text = query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
    text = text.replace("$__interval_ms", str(interval))
    text = text.replace("$__interval", duration(interval)).replace("$interval", duration(interval))
    values = values or {}

    def substitute(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in values:
            raise KeyError(f"unknown variable ${name} in {query!r}")
        return values[name]

    return _VARIABLE.sub(substitute, text)


def datasource_uids(load_yaml) -> set[str]:
    uids = set()
    for path in sorted(DATASOURCES_DIR.glob("*.y*ml")):
        for source in (load_yaml(path) or {}).get("datasources", []):
            uids.add(source["uid"])
    return uids


def min_interval_ms(load_yaml) -> int:
    """The provisioned InfluxDB data source's timeInterval (Grafana's floor for $__interval)."""
    for path in sorted(DATASOURCES_DIR.glob("*.y*ml")):
        for source in (load_yaml(path) or {}).get("datasources", []):
            if source.get("type") == "influxdb":
                text = source.get("jsonData", {}).get("timeInterval", "1ms")
                number, unit = re.fullmatch(r"(\d+)(ms|s|m|h)", text).groups()
                return int(number) * {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}[unit]
    raise AssertionError("no InfluxDB data source provisioned")

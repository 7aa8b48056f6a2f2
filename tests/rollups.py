"""The shipped retention policies and continuous queries of InfluxDB 1.x
(deploy/influxdb/retention-1x.iql), for tests: apply the file to a real
influxd, and backfill the rollups over a time range with the continuous
queries' own SELECT ... INTO statements (InfluxDB's documented way to
backfill; the scheduler only covers recent intervals)."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

from backends import http_request

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "influxdb" / "retention-1x.iql"
ROLLUP_RP = "rollup_5m"
_CQ = re.compile(r'CREATE CONTINUOUS QUERY "([^"]+)" ON "rqa"(?: RESAMPLE[^B]*)? BEGIN (.*) END$')


def statements(text: str | None = None) -> list[str]:
    text = SCRIPT.read_text(encoding="utf-8") if text is None else text
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("--")]
    return [s.strip() for s in " ".join(lines).split(";") if s.strip()]


def apply(influx, chosen: list[str] | None = None) -> None:
    """POST the statements (``chosen``: some of them) to /query in one
    request, as the file's header says."""
    body = urllib.parse.urlencode({"q": ";\n".join(statements() if chosen is None else chosen)})
    status, answer = http_request("POST", f"{influx.url}/query", data=body,
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and b'"error"' not in answer, answer


def continuous_queries(text: str | None = None) -> dict[str, str]:
    """name -> the SELECT ... INTO ... GROUP BY statement of each CQ."""
    found = {}
    for statement in statements(text):
        match = _CQ.match(statement)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def backfill(influx, db: str, start_ns: int, end_ns: int) -> None:
    for select in continuous_queries().values():
        head, group = select.split(" GROUP BY ", 1)
        influx.query(f"{head} WHERE time >= {start_ns} AND time < {end_ns} GROUP BY {group}", db)

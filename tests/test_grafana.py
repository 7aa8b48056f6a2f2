"""The Grafana dashboards and alert rules against a real InfluxDB, and the
demo's ops endpoints.

Grafana itself cannot run here (no package, no Docker engine): these tests
do what decides whether a panel or an alert shows anything. A demo run
(`rqa-otel demo`, its telemetry in OTLP-JSON files) is converted to line
protocol by the project's own exporter code (`rqa-otel lp --series-budget`,
the Collector's otel2influx conversion after the series-budget processors
of collector/*.yaml), loaded into a real InfluxDB 1.x, and every panel
query, template-variable query and alert query is run with Grafana's macros
expanded (tests/grafana_queries.py) under the variable selections a user
makes: All, one value, several values. Each must return rows. The JSON and
YAML are checked for what Grafana would reject or silently break on:
duplicate uids and panel ids, data sources that do not resolve, alert
conditions that refer to nothing.

Two demo runs feed the data, at the same time:
- one serving /health /ready /metrics (checked while it runs) and exporting
  metrics every second for about 11 s, so that rates over Grafana's 10 s
  minimum interval have two points;
- one whose log export fails (OTLP to a closed port: its spool fills) and
  one whose logs the back-end refuses (OTLP to InfluxDB's port: 404), for
  the pipeline panels and alerts; a fourth run then takes over the failing
  run's spool with a real OTLP receiver (rotel) up, and replays it;
- one more writes straight into the database with the project's InfluxDB
  exporter (`rqa-otel demo --influxdb`), its trade events tagged with
  rqa.strategy and rqa.stock instead of carrying them in `attributes`.

This machine has no NVIDIA GPU, so for the GPU panels the serving demo
loads the fake NVML of tests/fake_nvml (a gcc-built libnvidia-ml.so.1 behind
pynvml's real ctypes path) reporting 2 GiB of GPU memory for the demo's own
pid. Everything else is real.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

import fake_nvml
import grafana_queries as gq
import rollups
from backends import LOOPBACK, InfluxDB1, Rotel, free_port, http_request
from conftest import _start
from test_deploy_configs import _load_yaml
from rqa_otel import names

RQA_OTEL = Path(sys.executable).parent / "rqa-otel"
DB = "rqa"  # the DBRP database the data source queries
SERVE_S = 11.5
ALERTS_EXPECTED_TO_FIRE = {
    "rqa-insufficient-funds", "rqa-trading-error-rate", "rqa-log-export-failing", "rqa-quota-breach",
    "rqa-spool-not-draining",
}


GPU_BYTES = 2 << 30  # what the fake NVML reports for the serving demo


def _demo(output: Path, *args: str, env: dict[str, str] | None = None, gpu: bool = False) -> subprocess.Popen:
    command = [str(RQA_OTEL), "demo", "--output", str(output), *args]
    if gpu:  # the shell's pid is the demo's (exec), so the fake can name it before it starts
        command = ["sh", "-c", f'FAKE_NVML_PROCESSES="0:$$:{GPU_BYTES}" exec "$@"', "sh", *command]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
    )


class _RotelAt(Rotel):
    """Rotel with its OTLP/HTTP receiver on a given port: the back-end a
    spool was filled for, back up (a spool replays to its own destination)."""

    def __init__(self, http_port: int) -> None:
        super().__init__(debug_log=())
        self._fixed_http_port = http_port

    def _prepare(self, binary: str) -> list[str]:
        argv = super()._prepare(binary)
        argv[argv.index(f"{LOOPBACK}:{self.http_port}")] = f"{LOOPBACK}:{self._fixed_http_port}"
        self.http_port = self._fixed_http_port
        return argv


def _get(url: str) -> tuple[int, str]:
    status, body = http_request("GET", url, timeout=5)
    return status, body.decode()


@pytest.fixture(scope="module")
def influx(request):
    """One real InfluxDB 1.x for the module, database rqa; the tests only read."""
    server = _start(request, InfluxDB1())
    server.create_database(DB)
    return server


@pytest.fixture(scope="module")
def demo_telemetry(request, tmp_path_factory, influx):
    """Both demo runs done and loaded into ``influx``; what the serving one
    printed and answered."""
    root = tmp_path_factory.mktemp("grafana-demo")
    nvml = fake_nvml.build(root / "fake_nvml")
    serving = _demo(root / "serving", "--serve-s", str(SERVE_S), gpu=True, env={
        "RQA_EXPORT__METRIC_INTERVAL_S": "1", "LD_LIBRARY_PATH": str(nvml), "FAKE_NVML_SCENARIO": "normal",
    })
    down_port = free_port()
    failing = _demo(root / "failing", "--quiet", "--http-port", "off", env={
        "RQA_EXPORT__LOGS": "otlp", "RQA_EXPORT__OTLP__PROTOCOL": "http/protobuf",
        "RQA_EXPORT__OTLP__ENDPOINT": f"http://127.0.0.1:{down_port}",  # nothing listens: the spool fills
        "RQA_EXPORT__OTLP__TIMEOUT_S": "1",
    })
    # The project's own InfluxDB exporter straight into the database (v1
    # /write), trade events tagged with rqa.strategy and rqa.stock.
    direct = _demo(root / "direct", "--quiet", "--http-port", "off", "--influxdb", influx.url,
                   "--influxdb-v1-compatibility", "--influxdb-db", DB)
    refused = _demo(root / "refused", "--quiet", "--http-port", "off", env={
        "RQA_EXPORT__LOGS": "otlp", "RQA_EXPORT__OTLP__PROTOCOL": "http/protobuf",
        "RQA_EXPORT__OTLP__ENDPOINT": influx.url,  # InfluxDB answers /v1/logs with 404: refused for good
        "RQA_EXPORT__OTLP__TIMEOUT_S": "1",
    })
    try:
        lines, url, answers = [], None, {}
        for line in serving.stdout:  # the demo says where it serves, then when the backtest is done
            lines.append(line)
            found = re.search(r"serving (http://127\.0\.0\.1:\d+)/health /ready /metrics", line)
            url = url or (found and found.group(1))
            if "backtest done" in line:
                break
        assert url, "the demo did not print its ops address:\n" + "".join(lines) + serving.stderr.read()
        answers = {path: _get(url + path) for path in ("/health", "/ready", "/metrics")}
        out, err = serving.communicate(timeout=60)
        lines.append(out)
        assert serving.returncode == 0, err
        failing_out, failing_err = failing.communicate(timeout=60)
        assert failing.returncode == 0, failing_err
        refused_err = refused.communicate(timeout=60)[1]
        assert refused.returncode in (0, 1), refused_err  # 1: not everything was delivered, as it says
        direct_out, direct_err = direct.communicate(timeout=60)
        assert direct.returncode == 0 and " failed" not in direct_out, direct_out + direct_err
    finally:
        for process in (serving, failing, refused, direct):
            if process.poll() is None:
                process.kill()
    # The back-end the failing run could not reach comes up (a real OTLP
    # receiver on that port), and a run taking over its spool replays it.
    _start(request, _RotelAt(down_port))
    replaying = _demo(root / "replaying", "--quiet", "--http-port", "off", env={
        "RQA_EXPORT__LOGS": "otlp", "RQA_EXPORT__OTLP__PROTOCOL": "http/protobuf",
        "RQA_EXPORT__OTLP__ENDPOINT": f"http://127.0.0.1:{down_port}",
        "RQA_EXPORT__SPOOL__DIRECTORY": str(root / "failing" / "spool"),
    })
    replaying_err = replaying.communicate(timeout=60)[1]
    assert replaying.returncode == 0, replaying_err
    for run in ("serving", "failing", "refused", "replaying"):
        files = sorted(str(path) for path in (root / run).glob("*.jsonl"))
        # --series-budget: what the shipped Collector configs' processors do
        # before their influxdb exporter (the Collector cannot run here).
        converted = subprocess.run([RQA_OTEL, "lp", "--series-budget", *files], capture_output=True, text=True, timeout=60)
        assert converted.returncode == 0, converted.stderr
        influx.write(converted.stdout, DB)
    # The rollups the long-range dashboard reads (deploy/influxdb/retention-1x.iql),
    # without shortening the raw policy: the demo's events carry 2024 times.
    rollups.apply(influx, [s for s in rollups.statements() if not s.startswith("ALTER RETENTION")])
    now = time.time_ns()
    rollups.backfill(influx, DB, now - 3_600_000_000_000, now + 3_600_000_000_000)
    return {"stdout": "".join(lines), "url": url, "answers": answers, "failing_stdout": failing_out}


@pytest.fixture(scope="module")
def spans(influx, demo_telemetry) -> dict[str, tuple[int, int]]:
    """measurement -> (first, last) timestamp in ms, as loaded."""
    result = {}
    for [name] in influx.query("SHOW MEASUREMENTS", DB)[0]["series"][0]["values"]:
        [first], [last] = (
            influx.points(f'SELECT * FROM "{name}" ORDER BY time {order} LIMIT 1', DB, epoch="ms")
            for order in ("ASC", "DESC")
        )
        result[name] = (first["time"], last["time"])
    return result


def _range_ms(query: gq.Query, spans: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """The time range a user would look at: the query's data, and at least
    the last 5 minutes of it; an alert: its window before the latest data."""
    known = [spans[name] for name in query.measurements if name in spans]
    assert known or not query.measurements, f"{query.where}: no data at all in {query.measurements}"
    end = max((last for _, last in known), default=0) + 1_000
    if query.relative_range_s:
        before, after = query.relative_range_s
        return end - before * 1000, end - after * 1000
    start = min((first for first, _ in known), default=end)
    return min(start, end - 300_000) - 1_000, end


def _run(influx, query: gq.Query, spans, min_interval, values=None) -> tuple[list[dict], str]:
    start, end = _range_ms(query, spans)
    interval = gq.interval_ms(end - start, 43_200 if query.kind == "alert" else query.max_data_points, min_interval)
    text = gq.expand(query.text, start, end, interval, values)
    return influx.points(text, DB, epoch="ns"), text


def _selections(board: gq.Dashboard, influx, spans, min_interval) -> dict[str, dict[str, str]]:
    """Variable values as Grafana inserts them: All, the first value of each
    variable, every value (multi-value), each variable query run in turn
    with the selection of the variables before it."""
    selections: dict[str, dict[str, str]] = {"all": {}, "one": {}, "several": {}}
    for variable in board.variables:
        for mode, values in selections.items():
            query = gq.Query(f"{board.path.name}: variable ${variable.name}", variable.query, "variable")
            rows, text = _run(influx, query, spans, min_interval, values)
            found = sorted({row["value"] for row in rows})
            assert found, f"{query.where} ({mode}) returned no values: {text}"
            choice = {"all": None, "one": found[0], "several": found}[mode]
            values[variable.name] = gq.format_value(variable, choice)
    return selections


# --- the demo's ops endpoints ---------------------------------------------


def test_demo_serves_health_ready_and_metrics_while_it_runs(demo_telemetry, promtool):
    url, answers = demo_telemetry["url"], demo_telemetry["answers"]
    assert f"serving {url}/health /ready /metrics" in demo_telemetry["stdout"]
    status, body = answers["/health"]
    assert status == 200 and json.loads(body)["status"] == "ok", body
    status, body = answers["/ready"]
    ready = json.loads(body)
    assert status == 200 and ready["status"] == "ok", body
    assert ready["checks"][names.CIRCUIT_BREAKER_READINESS]["ok"], "the demo's broker breaker is closed"
    status, text = answers["/metrics"]
    assert status == 200
    assert re.search(r'^rqa_trades_total\{.*rqa_stock="600519\.SH".*\} \d', text, re.M), text[:2000]
    assert re.search(r'^rqa_alerts_total\{.*rqa_alert_name="insufficient_funds".*\} 1\.0$', text, re.M)
    ok, output = promtool(text)
    assert ok, output
    with pytest.raises(OSError):  # the endpoints end with the demo
        http_request("GET", url + "/health", timeout=2)


def test_demo_without_ops_port_says_nothing_about_it(demo_telemetry):
    assert "serving http" not in demo_telemetry["failing_stdout"]


def test_demo_names_a_bad_http_port():
    result = subprocess.run([RQA_OTEL, "demo", "--http-port", "70000"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--http-port" in result.stderr and "auto or off" in result.stderr, result.stderr


# --- dashboards -------------------------------------------------------------


def test_dashboards_and_alert_rules_are_consistent():
    datasources = gq.datasource_uids(_load_yaml)
    boards = gq.load_dashboards()
    expected = {"strategy-overview.json", "strategy-resources.json", "pipeline-health.json"}
    assert {b.path.name for b in boards} >= expected
    uids = [b.model.get("uid") for b in boards]
    assert all(uids) and len(set(uids)) == len(uids), f"dashboard uids must be set and unique: {uids}"
    for board in boards:
        where = board.path.name
        ids = [panel.get("id") for panel in gq.panels(board.model)]
        assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids), f"{where}: panel ids {ids}"
        assert {v.name for v in board.variables} >= {"strategy"}, f"{where}: no strategy variable"
        for variable in board.model["templating"]["list"]:
            assert variable["datasource"]["uid"] in datasources, f"{where}: ${variable['name']}"
        for panel in gq.panels(board.model):
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, f"{where}: panel {panel['title']!r} is wider than the grid"
            if panel["type"] == "row":
                continue
            assert panel["targets"], f"{where}: panel {panel['title']!r} has no query"
            for holder in [panel, *panel["targets"]]:
                assert holder["datasource"]["uid"] in datasources, f"{where}: {panel['title']!r} data source"
            assert all(t.get("rawQuery") and t["query"].strip() for t in panel["targets"]), panel["title"]
    overview = next(b for b in boards if b.path.name == "strategy-overview.json")
    assert {v.name for v in overview.variables} == {"strategy", "symbol"}

    rules = list(gq.alert_rules(_load_yaml))
    rule_uids = [rule["uid"] for _, _, rule in rules]
    assert len(set(rule_uids)) == len(rule_uids), rule_uids
    assert {"rqa-insufficient-funds", "rqa-trading-error-rate", "rqa-strategy-no-data",
            "rqa-log-export-failing", "rqa-quota-breach"} <= set(rule_uids)
    for path, group, rule in rules:
        where = f"{path.name}: {rule['title']}"
        refs = {item["refId"] for item in rule["data"]}
        assert rule["condition"] in refs, where
        assert rule["noDataState"] in {"OK", "NoData", "Alerting", "KeepLast"}, where
        assert rule["execErrState"] in {"OK", "Error", "Alerting", "KeepLast"}, where
        assert rule["labels"]["severity"] in names.ALERT_SEVERITIES, where
        dashboard = rule.get("annotations", {}).get("__dashboardUid__")
        assert dashboard is None or dashboard in uids, f"{where}: dashboard {dashboard}"
        for item in rule["data"]:
            if item["datasourceUid"] == gq.EXPRESSION_DATASOURCE:
                assert item["model"]["expression"] in refs - {item["refId"]}, f"{where}: {item['refId']}"
            else:
                assert item["datasourceUid"] in datasources, where
                assert item["relativeTimeRange"]["from"] > item["relativeTimeRange"].get("to", 0), where
    critical = {rule["uid"] for _, _, rule in rules if rule["labels"]["severity"] == "critical"}
    assert {"rqa-insufficient-funds", "rqa-quota-breach"} <= critical


@pytest.mark.parametrize("dashboard", sorted(p.name for p in gq.DASHBOARDS_DIR.glob("*.json")))
def test_every_dashboard_query_returns_rows(dashboard, influx, spans):
    min_interval = gq.min_interval_ms(_load_yaml)
    board = next(b for b in gq.load_dashboards() if b.path.name == dashboard)
    queries = [q for q in gq.dashboard_queries(board) if q.kind == "panel"]
    assert queries
    empty = []
    for mode, values in _selections(board, influx, spans, min_interval).items():
        for query in queries:
            rows, text = _run(influx, query, spans, min_interval, values)
            if not rows:
                empty.append(f"{query.where} [{mode}]: {text}")
    assert not empty, "queries without rows:\n" + "\n".join(empty)


def test_trade_blotter_filters_by_strategy_and_symbol(influx, spans):
    """Trades from both schemas: symbol and strategy inside the attributes
    JSON (the Collector's defaults) or as tags (the --influxdb run)."""
    min_interval = gq.min_interval_ms(_load_yaml)
    board = next(b for b in gq.load_dashboards() if b.path.name == "strategy-overview.json")
    [blotter] = [q for q in gq.dashboard_queries(board) if "Trade blotter" in q.where]
    variables = {v.name: v for v in board.variables}

    def symbols(chosen) -> list[tuple[str, bool]]:
        values = {"strategy": gq.format_value(variables["strategy"], "dual_ma_demo"),
                  "symbol": gq.format_value(variables["symbol"], chosen)}
        rows, _ = _run(influx, blotter, spans, min_interval, values)
        times = [row["time"] for row in rows]
        assert times == sorted(times, reverse=True), "newest first"
        found = []
        for row in rows:
            attributes = json.loads(row["attributes"])
            assert attributes[names.TRADE_SIDE] in ("buy", "sell")
            tagged = names.STOCK not in attributes
            found.append((row["body"].split()[2] if tagged else attributes[names.STOCK], tagged))
        return found

    found = symbols("600519.SH")
    assert {symbol for symbol, _ in found} == {"600519.SH"}
    assert {tagged for _, tagged in found} == {True, False}, "rows of both schemas"
    assert {symbol for symbol, _ in symbols(["000001.SZ", "300750.SZ"])} == {"000001.SZ", "300750.SZ"}


# --- alert rules ------------------------------------------------------------

_REDUCERS = {"sum": sum, "max": max, "min": min, "last": lambda values: values[-1], "count": len,
             "mean": lambda values: sum(values) / len(values)}
_EVALUATORS = {"gt": lambda value, limit: value > limit, "lt": lambda value, limit: value < limit}


def test_every_alert_query_returns_rows_and_the_demo_fires_what_it_drilled(influx, spans):
    """Each rule's query returns rows over its window ending at the demo's
    latest data; the reduce and threshold steps (Grafana server-side
    expressions, re-done here) fire the rules the demo's failures should
    fire, and leave the no-data rule quiet while data arrives."""
    min_interval = gq.min_interval_ms(_load_yaml)
    rules = {rule["uid"]: rule for _, _, rule in gq.alert_rules(_load_yaml)}
    queries = gq.alert_queries(_load_yaml)
    assert len(queries) >= len(rules)
    empty, firing = [], set()
    for query in queries:
        rows, text = _run(influx, query, spans, min_interval)
        if not rows:
            empty.append(f"{query.where}: {text}")
            continue
        rule = next(r for r in rules.values() if f"rule {r['title']!r}" in query.where)
        steps = {item["refId"]: item["model"] for item in rule["data"]}
        series = defaultdict(list)
        for row in rows:
            value = next(v for k, v in row.items() if k not in ("time", "_measurement") and isinstance(v, (int, float)))
            series[tuple(sorted((k, v) for k, v in row.items() if isinstance(v, str) and k != "time"))].append(value)
        reduce = next(m for m in steps.values() if m.get("type") == "reduce")
        threshold = steps[rule["condition"]]
        [condition] = threshold["conditions"]
        evaluate = _EVALUATORS[condition["evaluator"]["type"]]
        if any(evaluate(_REDUCERS[reduce["reducer"]](values), condition["evaluator"]["params"][0])
               for values in series.values()):
            firing.add(rule["uid"])
    assert not empty, "alert queries without rows:\n" + "\n".join(empty)
    assert firing == ALERTS_EXPECTED_TO_FIRE


def test_macro_expansion_follows_grafana():
    """The expander itself, on the forms Grafana accepts (the dashboards use
    some of them; a hand-edited panel may use the others)."""
    multi = gq.Variable("symbol", True, True, ".*", "")
    single = gq.Variable("env", False, False, None, "")
    assert gq.format_value(multi, None) == ".*"
    assert gq.format_value(multi, "600519.SH") == r"600519\.SH"
    assert gq.format_value(multi, ["a/b", "c(d)"]) == r"(a\/b|c\(d\))"
    assert gq.format_value(single, "prod.1") == "prod.1"
    assert gq.interval_ms(300_000, 1000, 10_000) == 10_000  # the data source's floor
    assert gq.interval_ms(86_400_000, 1000, 10_000) == 60_000  # 86.4 s: the nearest round interval, 1 m
    assert gq.interval_ms(172_800_000, 1000, 10_000) == 120_000  # 172.8 s: 2 m
    query = ('SELECT x FROM "m" WHERE $timeFilter AND "s" =~ /^$symbol$/ AND "e" = \'${env}\' AND "k" = \'[[env]]\' '
             "GROUP BY time($__interval), time($interval) LIMIT $__interval_ms")
    expanded = gq.expand(query, 1_000, 2_000, 60_000, {"symbol": r"(a|b)", "env": "prod"})
    assert expanded == ('SELECT x FROM "m" WHERE time >= 1000ms and time <= 2000ms AND "s" =~ /^(a|b)$/ AND '
                        "\"e\" = 'prod' AND \"k\" = 'prod' GROUP BY time(1m), time(1m) LIMIT 60000")
    with pytest.raises(KeyError):
        gq.expand("SELECT x FROM m WHERE a = '$nope'", 0, 1, 1, {})

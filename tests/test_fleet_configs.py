"""The path past one InfluxDB (docs/capacity.md): Collector gateways routing
by desk to one InfluxDB per desk.

The Collector cannot run here (no binary, no Docker engine), so its configs
(collector/fleet/*.yaml and the series-budget processors of collector/*.yaml)
are checked statically: every key against the component's upstream config
schema (the ``config.schema.yaml`` each contrib component publishes, keys
copied below with their source), every reference resolved, the budget the
same as the in-process exporter's. The part of the path that runs here does
run: several real influxd instances, one per desk, written by senders that
queue (the project's exporter with its durable spool); an instance is killed
while its desk keeps trading, and comes back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from backends import InfluxDB1
from test_deploy_configs import COLLECTOR_DIR, ENV_REF, COLLECTOR_ENV_REF, IN_PROCESS, _ctype, _load_yaml, _pipelines, _section

FLEET_DIR = COLLECTOR_DIR / "fleet"
FLEET_CONFIGS = ["agent-loadbalancing.yaml", "gateway-by-desk.yaml"]
RUNS_SCRIPT = Path(__file__).with_name("series_runs.py")
DESKS = ("equities", "futures")

# Keys of each component's configuration, from its upstream config.schema.yaml
# (open-telemetry/opentelemetry-collector-contrib): the top level, and the
# items of list-valued keys ("<key>[]") or mapping-valued ones ("<key>.").
UPSTREAM_KEYS: dict[str, dict[str, set[str]]] = {
    # processor/cumulativetodeltaprocessor/config.schema.yaml @ 6f4043f
    "cumulativetodelta": {"": {"include", "exclude", "initial_value", "max_staleness"}},
    # processor/transformprocessor/config.schema.yaml @ 1ca0305 and internal/common/config.schema.yaml @ 10584cf
    "transform": {
        "": {"error_mode", "flatten_data", "log_statements", "metric_statements", "profile_statements", "trace_statements"},
        "metric_statements[]": {"conditions", "context", "error_mode", "flatten", "shared_cache", "statements"},
    },
    # processor/filterprocessor/config.schema.yaml @ 61bceb3 (metrics/logs/traces/spans/profiles: deprecated,
    # left out) and internal/condition/config.go @ 0383219
    "filter": {
        "": {"error_mode", "log_conditions", "metric_conditions", "profile_conditions", "trace_conditions"},
        "metric_conditions[]": {"context", "conditions", "error_mode"},
    },
    # exporter/loadbalancingexporter/config.schema.yaml @ 0140961 (timeout_config and back_off_config
    # are the exporterhelper's timeout and retry_on_failure)
    "loadbalancing": {
        "": {"protocol", "resolver", "routing_attributes", "routing_key", "sending_queue", "timeout", "retry_on_failure"},
        "protocol.": {"otlp"},
        "resolver.": {"aws_cloud_map", "dns", "k8s", "static"},
        "resolver.dns.": {"hostname", "interval", "port", "timeout"},
    },
    # connector/routingconnector/config.schema.yaml @ 2257f4c
    "routing": {
        "": {"default_pipelines", "error_mode", "table"},
        "table[]": {"action", "condition", "context", "pipelines", "statement"},
    },
}
LOADBALANCING_ROUTING_KEYS = {"service", "traceID", "resource", "metric", "streamID", "attributes"}
OTTL_CONTEXTS = {"resource", "scope", "span", "spanevent", "metric", "datapoint", "log", "profile"}


def _components(cfg: dict) -> dict[str, dict]:
    return {**_section(cfg, "processors"), **_section(cfg, "exporters"), **_section(cfg, "connectors")}


def _check_keys(where: str, conf: dict, schema: dict[str, set[str]]) -> None:
    for path, allowed in schema.items():
        if path == "":
            holders = [conf]
        elif path.endswith("[]"):
            holders = list(conf.get(path[:-2]) or [])
        else:
            holder = conf
            for part in path.rstrip(".").split("."):
                holder = (holder or {}).get(part) or {}
            holders = [holder]
        for holder in holders:
            unknown = set(holder) - allowed
            assert not unknown, f"{where}: unknown key(s) {sorted(unknown)} under {path or 'the top'}; upstream: {sorted(allowed)}"


@pytest.mark.parametrize("path", [FLEET_DIR / n for n in FLEET_CONFIGS] + [COLLECTOR_DIR / n for n in
                                  ("agent.yaml", "gateway.yaml", "agent-to-gateway.yaml")], ids=lambda p: p.name)
def test_component_keys_match_the_upstream_schemas(path):
    cfg = _load_yaml(path)
    checked = 0
    for cid, conf in _components(cfg).items():
        schema = UPSTREAM_KEYS.get(_ctype(cid))
        if schema is None:
            continue  # memory_limiter, batch, influxdb, prometheus...: tests/test_deploy_configs.py
        _check_keys(f"{path.name}: {cid}", conf or {}, schema)
        checked += 1
        for group in (conf or {}).get("metric_statements", []) + (conf or {}).get("metric_conditions", []):
            assert group["context"] in OTTL_CONTEXTS, f"{path.name}: {cid}: context {group['context']!r}"
        if _ctype(cid) == "loadbalancing":
            assert conf["routing_key"] in LOADBALANCING_ROUTING_KEYS
            assert conf["protocol"]["otlp"].get("endpoint") is None, "the resolver gives the endpoints"
        if _ctype(cid) == "routing":
            for item in conf["table"]:
                assert item["context"] in OTTL_CONTEXTS and item["condition"] and item["pipelines"], item
    assert checked, f"{path.name}: no component of the series budget or the fleet path"


@pytest.mark.parametrize("name", FLEET_CONFIGS)
def test_fleet_configs_resolve_and_use_the_environment(name):
    cfg = _load_yaml(FLEET_DIR / name)
    defined = {**_section(cfg, "receivers"), **_components(cfg)}
    used = set()
    for pid, pipeline in _pipelines(cfg).items():
        assert _ctype(pid) in ("traces", "metrics", "logs"), pid
        for kind in ("receivers", "processors", "exporters"):
            for ref in pipeline.get(kind) or []:
                assert ref in defined, f"{name}: pipeline {pid} uses {ref!r}, not defined"
                used.add(ref)
    assert set(defined) <= used, f"{name}: defined but unused: {sorted(set(defined) - used)}"
    extensions = _section(cfg, "extensions")
    for eid, conf in _section(cfg, "exporters").items():
        if _ctype(eid) in ("influxdb", "loadbalancing"):
            assert conf["sending_queue"]["storage"] in extensions, f"{name}: {eid} queues on disk"
            assert conf["retry_on_failure"]["max_elapsed_time"] == "0s", f"{name}: {eid} never gives up"
    text = (FLEET_DIR / name).read_text()
    for ref in ENV_REF.findall(text):
        assert COLLECTOR_ENV_REF.match(ref), f"{name}: ${{{ref}}}"


def test_agent_applies_the_series_budget_of_the_in_process_exporter():
    """The processors of every agent (and gateway) that writes InfluxDB drop
    what the in-process exporter's defaults drop, in the order that works:
    cumulativetodelta while the identity is still there."""
    for path in [FLEET_DIR / "agent-loadbalancing.yaml"] + [COLLECTOR_DIR / n for n in ("agent.yaml", "gateway.yaml", "agent-to-gateway.yaml")]:
        cfg = _load_yaml(path)
        processors = _section(cfg, "processors")
        order = _pipelines(cfg)["metrics"]["processors"]
        assert order == ["memory_limiter", "filter/series_budget", "cumulativetodelta/series_budget",
                         "transform/series_budget", "batch"], f"{path.name}: {order}"
        [statements] = [g["statements"] for g in processors["transform/series_budget"]["metric_statements"]]
        text = " ".join(statements)
        for key in IN_PROCESS.metric_resource_exclude:
            assert (f'"{key}"' in text) if not key.endswith("*") else (key[:-2].replace(".", "[.]") in text), (path.name, key)
        [conditions] = [g["conditions"] for g in processors["filter/series_budget"]["metric_conditions"]]
        for name in IN_PROCESS.metric_exclude:
            assert any(f'"^{name[:-2]}[.]"' in c for c in conditions), (path.name, name)
        assert _pipelines(cfg)["metrics/prometheus"]["processors"] == ["memory_limiter", "batch"]


def test_gateways_route_every_signal_of_every_desk_to_its_own_influxdb():
    cfg = _load_yaml(FLEET_DIR / "gateway-by-desk.yaml")
    pipelines = _pipelines(cfg)
    connectors = _section(cfg, "connectors")
    exporters = _section(cfg, "exporters")
    reference = _section(_load_yaml(COLLECTOR_DIR / "gateway.yaml"), "exporters")["influxdb"]
    for signal_name in ("traces", "metrics", "logs"):
        routing = connectors[f"routing/{signal_name}"]
        routes = {item["condition"]: item["pipelines"] for item in routing["table"]}
        for desk in DESKS:
            assert routes[f'attributes["rqa.desk"] == "{desk}"'] == [f"{signal_name}/{desk}"]
            assert pipelines[f"{signal_name}/{desk}"]["exporters"] == [f"influxdb/{desk}"]
            assert pipelines[f"{signal_name}/{desk}"]["receivers"] == [f"routing/{signal_name}"]
        assert routing["default_pipelines"] == [f"{signal_name}/{DESKS[0]}"]
    for desk in DESKS:
        conf = exporters[f"influxdb/{desk}"]
        assert set(conf) == set(reference), f"influxdb/{desk}: the same keys as gateway.yaml's exporter"
        assert conf["endpoint"] == f"${{env:INFLUXDB_{desk.upper()}_URL}}"
        for key in ("metrics_schema", "span_dimensions", "log_record_dimensions"):
            assert conf[key] == reference[key]
    sources = _load_yaml(Path(__file__).resolve().parents[1] / "deploy" / "fleet" / "grafana-datasources.yaml")
    assert {s["uid"] for s in sources["datasources"]} == {f"rqa-influxdb-{desk}" for desk in DESKS}


def _desk_runs(influx, desk: str, runs: int, spool: Path, directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RUNS_SCRIPT), "--influx", influx.url, "--db", "rqa", "--runs", str(runs), "--symbols", "5",
         "--strategy", f"{desk}_mom", "--desk", desk, "--spool", str(spool), "--directory", str(directory)],
        capture_output=True, text=True, timeout=180,
    )


def test_one_influxdb_per_desk_every_point_once_and_a_killed_instance_loses_nothing(start_backend, tmp_path):
    servers = {desk: start_backend(InfluxDB1()) for desk in DESKS}
    for server in servers.values():
        server.create_database("rqa")
    trades_per_run = 5 * 2 * 3  # series_runs.py: 5 symbols, both sides, 3 days
    first = {desk: _desk_runs(servers[desk], desk, 2, tmp_path / f"spool-{desk}", tmp_path) for desk in DESKS}
    assert all(r.returncode == 0 for r in first.values()), {d: r.stderr[-1500:] for d, r in first.items()}

    # The futures InfluxDB dies (SIGKILL) while its desk keeps trading: what
    # the senders could not deliver waits in their spool.
    os.killpg(servers["futures"].process.pid, signal.SIGKILL)
    servers["futures"].process.wait(timeout=10)
    down = _desk_runs(servers["futures"], "futures", 3, tmp_path / "spool-futures", tmp_path)
    assert down.returncode in (0, 1), down.stderr[-1500:]  # 1: not everything was delivered, as it says
    assert list((tmp_path / "spool-futures").rglob("*")), "the spool holds what was not delivered"
    # It comes back on the same port and data; the next run of the desk replays the spool first.
    servers["futures"].restart()
    after = _desk_runs(servers["futures"], "futures", 1, tmp_path / "spool-futures", tmp_path)
    assert after.returncode == 0, after.stderr[-1500:]
    # The replay runs beside the process's own work; what a run that ends
    # first leaves on disk waits for the next run (docs/spool.md), so the desk
    # trades on until its spool is empty: nothing held may be lost on the way.
    later_runs = 0
    while list((tmp_path / "spool-futures").rglob("*.batch")) and later_runs < 5:
        again = _desk_runs(servers["futures"], "futures", 1, tmp_path / "spool-futures", tmp_path)
        assert again.returncode == 0, again.stderr[-1500:]
        later_runs += 1
    assert not list((tmp_path / "spool-futures").rglob("*.batch")), "the spool drains once the instance is back"

    expected_runs = {"equities": 2, "futures": 2 + 3 + 1 + later_runs}
    for desk, server in servers.items():
        [total] = server.points('SELECT sum("gauge") FROM "rqa.trades"', "rqa")
        assert total["sum"] == expected_runs[desk] * trades_per_run, (desk, total)
        # Every trade event once: the journal's sequence numbers are unique per run.
        events = server.points("SELECT \"attributes\" FROM \"logs\" WHERE \"attributes\" =~ /\"rqa\\.trade\\.side\"/", "rqa")
        assert len(events) == expected_runs[desk] * trades_per_run, (desk, len(events))
        runs = server.points("SELECT count(\"duration_nano\") FROM \"spans\" WHERE \"span.name\" = 'rqa.backtest'", "rqa")
        assert runs[0]["count"] == expected_runs[desk]
        # Nothing of the other desk.
        strategies = {row["value"] for row in server.points('SHOW TAG VALUES FROM "rqa.trades" WITH KEY = "rqa.strategy"', "rqa")}
        assert strategies == {f"{desk}_mom"}

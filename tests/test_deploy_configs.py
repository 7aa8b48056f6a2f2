"""Static (structural) consistency checks of the deployment configuration.

Covers collector/*.yaml (OpenTelemetry Collector), grafana/provisioning/ and
docker-compose.yml. The Collector (otelcol-contrib), Grafana, InfluxDB and a
Docker engine cannot run on this machine: there is no Docker engine, images
cannot be pulled, and none of them is installable as a package here. So these
files are checked statically instead: they parse, every reference in them
resolves, and the properties the stack relies on hold (memory_limiter first,
persistent sending queues, the InfluxDB schema, InfluxQL through a DBRP
mapping, no secret in the repository). The one external check is
`docker-compose config`, which validates docker-compose.yml without an engine;
it is skipped when no Compose binary is installed, except under CI=true, where
it fails instead.

What this cannot catch: a key a component does not know, or a value it
rejects, is only reported by `otelcol-contrib validate --config FILE` and by
Grafana at start-up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rqa_otel.config.loader import load_settings

ROOT = Path(__file__).resolve().parents[1]
COLLECTOR_DIR = ROOT / "collector"
COLLECTOR_CONFIGS = ["agent.yaml", "agent-to-gateway.yaml", "gateway.yaml"]
INFLUX_CONFIGS = ["agent.yaml", "gateway.yaml"]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DATASOURCE_FILE = ROOT / "grafana" / "provisioning" / "datasources" / "influxdb.yaml"
DASHBOARD_PROVIDER_FILE = ROOT / "grafana" / "provisioning" / "dashboards" / "rqa.yaml"
DASHBOARDS_DIR = ROOT / "grafana" / "dashboards"

SIGNALS = ("traces", "metrics", "logs")
IN_PROCESS = load_settings(environ={}).export.influxdb  # the in-process influxdb exporter's defaults

# Exporter types that push to a remote and so must queue on disk. Every
# exporter used must be in one of the two sets, so that a new exporter type
# is classified deliberately rather than slipping past the queue check.
PUSH_EXPORTERS = {"otlp", "otlp_grpc", "otlphttp", "otlp_http", "influxdb"}
LOCAL_EXPORTERS = {"prometheus", "debug", "nop", "file"}
# Deprecated aliases (Collector >= 0.144.0): file_storage names its files
# after the exporter, so moving off an alias later orphans a persistent queue.
DEPRECATED_EXPORTER_ALIASES = {"otlp": "otlp_grpc", "otlphttp": "otlp_http"}

ENV_REF = re.compile(r"\$\{([^}]*)\}")
COLLECTOR_ENV_REF = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)(:-.*)?$")


def _load_yaml_text(text: str) -> Any:
    """Parse YAML with PyYAML when installed, else ruamel (dynaconf vendors it)."""
    try:
        import yaml  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        return yaml.safe_load(text)
    try:
        from ruamel.yaml import YAML  # type: ignore[import-not-found]
    except ImportError:
        from dynaconf.vendor.ruamel.yaml import YAML  # type: ignore[import-not-found]
    return YAML(typ="safe", pure=True).load(text)


def _load_yaml(path: Path) -> Any:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    return _load_yaml_text(path.read_text(encoding="utf-8"))


def _ctype(component_id: str) -> str:
    """The type of a component id: `otlp_grpc/gateway` -> `otlp_grpc`."""
    return component_id.split("/", 1)[0]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


# --------------------------------------------------------------------------
# Collector


@pytest.fixture(params=COLLECTOR_CONFIGS)
def collector_config(request: pytest.FixtureRequest) -> tuple[str, dict]:
    cfg = _load_yaml(COLLECTOR_DIR / request.param)
    assert isinstance(cfg, dict), f"{request.param}: top level is not a mapping"
    return request.param, cfg


def _section(cfg: dict, name: str) -> dict:
    value = cfg.get(name) or {}
    assert isinstance(value, dict), f"`{name}` is not a mapping"
    return value


def _pipelines(cfg: dict) -> dict[str, dict]:
    return _section(_section(cfg, "service"), "pipelines")


def test_collector_has_a_pipeline_per_signal(collector_config):
    name, cfg = collector_config
    allowed = {"receivers", "processors", "exporters", "extensions", "connectors", "service"}
    assert set(cfg) <= allowed, f"{name}: unknown top-level keys {set(cfg) - allowed}"
    pipelines = _pipelines(cfg)
    for signal in SIGNALS:
        assert signal in pipelines, f"{name}: no {signal} pipeline"
    for pid in pipelines:
        assert _ctype(pid) in SIGNALS, f"{name}: pipeline {pid!r} is not traces/metrics/logs"


def test_collector_pipelines_reference_defined_components(collector_config):
    name, cfg = collector_config
    receivers = _section(cfg, "receivers")
    processors = _section(cfg, "processors")
    exporters = _section(cfg, "exporters")
    connectors = _section(cfg, "connectors")
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for pid, pipeline in _pipelines(cfg).items():
        assert pipeline.get("receivers"), f"{name}: pipeline {pid} has no receivers"
        assert pipeline.get("exporters"), f"{name}: pipeline {pid} has no exporters"
        for kind, defined in (
            ("receivers", {**receivers, **connectors}),
            ("processors", processors),
            ("exporters", {**exporters, **connectors}),
        ):
            refs = pipeline.get(kind) or []
            assert len(refs) == len(set(refs)), f"{name}: pipeline {pid} lists a {kind[:-1]} twice"
            for ref in refs:
                assert ref in defined, f"{name}: pipeline {pid} uses {kind[:-1]} {ref!r}, which is not defined"
            used[kind].update(refs)
    # A defined but unused component is ignored by the Collector: almost
    # always a pipeline someone forgot to update.
    for kind, defined in (("receivers", receivers), ("processors", processors), ("exporters", exporters)):
        unused = set(defined) - used[kind]
        assert not unused, f"{name}: {kind} defined but in no pipeline: {sorted(unused)}"


def test_collector_extensions_defined_and_enabled(collector_config):
    name, cfg = collector_config
    defined = _section(cfg, "extensions")
    enabled = _section(cfg, "service").get("extensions") or []
    for ext in enabled:
        assert ext in defined, f"{name}: service.extensions enables {ext!r}, which is not defined"
    unused = set(defined) - set(enabled)
    assert not unused, f"{name}: extensions defined but not in service.extensions: {sorted(unused)}"
    assert any(_ctype(e) == "health_check" for e in enabled), f"{name}: no health_check extension"


def test_memory_limiter_is_first_processor(collector_config):
    name, cfg = collector_config
    for pid, pipeline in _pipelines(cfg).items():
        procs = pipeline.get("processors") or []
        assert procs, f"{name}: pipeline {pid} has no processors (memory_limiter must be first)"
        assert _ctype(procs[0]) == "memory_limiter", (
            f"{name}: pipeline {pid} starts with {procs[0]!r}; memory_limiter must be first"
        )
        batch = [i for i, p in enumerate(procs) if _ctype(p) == "batch"]
        assert batch, f"{name}: pipeline {pid} has no batch processor"


def test_memory_limiter_has_a_limit(collector_config):
    name, cfg = collector_config
    for pid, conf in _section(cfg, "processors").items():
        if _ctype(pid) != "memory_limiter":
            continue
        conf = conf or {}
        assert conf.get("check_interval"), f"{name}: {pid} needs check_interval (0 disables it)"
        assert conf.get("limit_mib") or conf.get("limit_percentage"), f"{name}: {pid} has no limit"


def test_push_exporters_use_persistent_queue(collector_config):
    name, cfg = collector_config
    exporters = _section(cfg, "exporters")
    extensions = _section(cfg, "extensions")
    enabled = _section(cfg, "service").get("extensions") or []
    used = {e for p in _pipelines(cfg).values() for e in (p.get("exporters") or [])}
    assert used, f"{name}: no exporters in use"
    for eid in sorted(used):
        etype = _ctype(eid)
        assert etype in PUSH_EXPORTERS | LOCAL_EXPORTERS, (
            f"{name}: exporter type {etype!r} is unclassified; add it to PUSH_EXPORTERS "
            "(needs a persistent queue) or LOCAL_EXPORTERS in this test"
        )
        if etype not in PUSH_EXPORTERS:
            continue
        conf = exporters.get(eid) or {}
        queue = conf.get("sending_queue")
        assert isinstance(queue, dict), f"{name}: {eid} has no sending_queue"
        assert queue.get("enabled", True) is not False, f"{name}: {eid} sending_queue is disabled"
        storage = queue.get("storage")
        assert storage, f"{name}: {eid} sending_queue has no storage (in-memory queue loses data on restart)"
        assert storage in extensions, f"{name}: {eid} queue storage {storage!r} is not a defined extension"
        assert storage in enabled, f"{name}: {eid} queue storage {storage!r} is not in service.extensions"
        assert _ctype(storage) == "file_storage", f"{name}: {eid} queue storage {storage!r} is not file_storage"
        retry = conf.get("retry_on_failure")
        assert isinstance(retry, dict) and retry.get("enabled", True) is not False, (
            f"{name}: {eid} needs retry_on_failure enabled"
        )


def test_file_storage_directory_is_created(collector_config):
    name, cfg = collector_config
    for eid, conf in _section(cfg, "extensions").items():
        if _ctype(eid) != "file_storage":
            continue
        conf = conf or {}
        assert conf.get("directory"), f"{name}: {eid} has no directory"
        assert conf.get("create_directory") is True, f"{name}: {eid} should create its directory"


def test_no_deprecated_exporter_aliases(collector_config):
    name, cfg = collector_config
    for eid in _section(cfg, "exporters"):
        new = DEPRECATED_EXPORTER_ALIASES.get(_ctype(eid))
        assert new is None, f"{name}: exporter {eid!r} uses a deprecated alias; use {new!r}"


def test_collector_env_references_use_env_provider(collector_config):
    name, _ = collector_config
    text = (COLLECTOR_DIR / name).read_text(encoding="utf-8")
    for ref in ENV_REF.findall(text):
        assert COLLECTOR_ENV_REF.match(ref), (
            f"{name}: ${{{ref}}} is not ${{env:NAME}} or ${{env:NAME:-default}}"
        )


def test_otlp_receiver_endpoints(collector_config):
    name, cfg = collector_config
    otlp = _section(cfg, "receivers").get("otlp") or {}
    protocols = otlp.get("protocols") or {}
    assert (protocols.get("grpc") or {}).get("endpoint") == "0.0.0.0:4317", f"{name}: OTLP grpc endpoint"
    assert (protocols.get("http") or {}).get("endpoint") == "0.0.0.0:4318", f"{name}: OTLP http endpoint"


@pytest.mark.parametrize("name", INFLUX_CONFIGS)
def test_influxdb_exporter_schema_and_dimensions(name):
    cfg = _load_yaml(COLLECTOR_DIR / name)
    exporters = _section(cfg, "exporters")
    influx = [eid for eid in exporters if _ctype(eid) == "influxdb"]
    assert influx, f"{name}: no influxdb exporter"
    for eid in influx:
        conf = exporters[eid] or {}
        # One source of truth: the in-process exporter's settings defaults
        # (rqa_otel/default_settings.yaml), which are the Collector's own.
        assert conf.get("metrics_schema") == IN_PROCESS.metrics_schema, f"{name}: {eid} metrics_schema"
        assert conf.get("span_dimensions") == list(IN_PROCESS.span_dimensions), f"{name}: {eid} span_dimensions"
        assert conf.get("log_record_dimensions") == list(IN_PROCESS.log_record_dimensions), (
            f"{name}: {eid} log_record_dimensions"
        )
        assert conf.get("endpoint") == "${env:INFLUXDB_URL}", f"{name}: {eid} endpoint must come from INFLUXDB_URL"
        # No default for the token: a literal (even a dev one) would be a
        # secret in git, and a missing token must fail at start-up.
        assert conf.get("token") == "${env:INFLUXDB_TOKEN}", f"{name}: {eid} token must be ${{env:INFLUXDB_TOKEN}}"
        for key in ("org", "bucket"):
            assert str(conf.get(key, "")).startswith("${env:"), f"{name}: {eid} {key} should come from the environment"
    for pid, pipeline in _pipelines(cfg).items():
        if pid == "metrics/prometheus":  # the series budget's unprocessed copy, for scrapers
            continue
        assert any(_ctype(e) == "influxdb" for e in pipeline.get("exporters") or []), (
            f"{name}: pipeline {pid} does not write to InfluxDB"
        )
    metrics_exporters = [e for pid, p in _pipelines(cfg).items() if _ctype(pid) == "metrics" for e in p.get("exporters") or []]
    prom = [e for e in metrics_exporters if _ctype(e) == "prometheus"]
    assert prom, f"{name}: no metrics pipeline has a prometheus exporter"
    assert (exporters[prom[0]] or {}).get("endpoint") == "0.0.0.0:8889", f"{name}: prometheus exporter endpoint"
    # The same negotiation as rqa-otel's own /metrics (ops/exposition.py).
    assert (exporters[prom[0]] or {}).get("enable_open_metrics") is True, f"{name}: prometheus exporter OpenMetrics"


def test_in_process_defaults_are_the_collector_exporters():
    """The settings the Collector configs are compared with are themselves
    the Collector influxdb exporter's defaults (otel2influx's constants)."""
    from rqa_otel.export.influx import otel2influx as o2i

    assert IN_PROCESS.metrics_schema == o2i.SCHEMA_TELEGRAF_PROMETHEUS_V1
    assert IN_PROCESS.span_dimensions == o2i.DEFAULT_SPAN_DIMENSIONS
    assert IN_PROCESS.log_record_dimensions == o2i.DEFAULT_LOG_RECORD_DIMENSIONS
    assert (IN_PROCESS.max_lines, IN_PROCESS.max_bytes) == (10_000, 10_000_000)


def test_agent_to_gateway_forwards_everything_to_gateway():
    cfg = _load_yaml(COLLECTOR_DIR / "agent-to-gateway.yaml")
    exporters = _section(cfg, "exporters")
    assert not any(_ctype(e) == "influxdb" for e in exporters), "the agent must not hold InfluxDB credentials"
    for pid, pipeline in _pipelines(cfg).items():
        outs = [_ctype(e) for e in pipeline.get("exporters") or []]
        # Everything to the gateway; metrics also to a local prometheus exporter for scrapers.
        assert outs == (["prometheus"] if pid == "metrics/prometheus" else ["otlp_grpc"]), (
            f"agent pipeline {pid} should export to the gateway (and metrics to prometheus)"
        )
    assert (exporters["prometheus"] or {}).get("endpoint") == "0.0.0.0:8889"
    assert (exporters["prometheus"] or {}).get("enable_open_metrics") is True
    gateway = [exporters[e] for e in exporters if _ctype(e) == "otlp_grpc"]
    assert gateway and str(gateway[0].get("endpoint", "")).startswith("${env:RQA_GATEWAY_ENDPOINT:-"), (
        "agent gateway endpoint must be ${env:RQA_GATEWAY_ENDPOINT:-default}"
    )


# --------------------------------------------------------------------------
# docker-compose.yml


def _compose() -> dict:
    data = _load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def _compose_cmd() -> list[str] | None:
    exe = shutil.which("docker-compose")
    if exe:
        return [exe]
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return [docker, "compose"]
    return None


def test_docker_compose_config_is_valid():
    cmd = _compose_cmd()
    if cmd is None:
        message = "no docker-compose binary (nor `docker compose`) on PATH"
        if _in_ci():
            pytest.fail(message + "; CI=true requires it (Debian package docker-compose)")
        pytest.skip(message)
    result = subprocess.run(
        [*cmd, "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"`{' '.join(cmd)} config` failed:\n{result.stdout}\n{result.stderr}"


def test_compose_images_are_pinned():
    for name, svc in _compose()["services"].items():
        image = svc.get("image", "")
        assert image, f"service {name} has no image"
        ref = image.split("@", 1)[0]
        tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else ""
        assert tag and tag != "latest" and re.search(r"\d+\.\d+", tag), (
            f"service {name}: image {image!r} is not pinned to a version"
        )


def test_compose_restart_policies():
    services = _compose()["services"]
    for name in ("influxdb", "otel-collector", "grafana"):
        assert name in services, f"no {name} service"
        assert services[name].get("restart") == "unless-stopped", f"{name}: restart should be unless-stopped"
    for name in ("influxdb-init", "otelcol-storage-init"):
        assert services[name].get("restart") == "no", f"one-shot {name} must not restart"


def test_compose_named_volumes_are_declared():
    data = _compose()
    declared = set(data.get("volumes") or {})
    for name, svc in data["services"].items():
        for vol in svc.get("volumes") or []:
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if source.startswith((".", "/", "~")):
                assert (ROOT / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source!r} is not declared under volumes:"


def _mounts(svc: dict) -> dict[str, str]:
    """container path -> source, for short-syntax volumes."""
    out = {}
    for vol in svc.get("volumes") or []:
        parts = vol.split(":")
        out[parts[1]] = parts[0]
    return out


def test_compose_collector_runs_the_agent_config():
    svc = _compose()["services"]["otel-collector"]
    assert svc["image"].startswith("otel/opentelemetry-collector-contrib:"), "needs the contrib distribution"
    mounts = _mounts(svc)
    configs = [c.split("=", 1)[1] for c in svc.get("command") or [] if c.startswith("--config=")]
    assert configs, "otel-collector: no --config= in command"
    assert mounts.get(configs[0]) == "./collector/agent.yaml", "otel-collector must run collector/agent.yaml"
    ports = {str(p).split(":")[-1] for p in svc.get("ports") or []}
    assert {"4317", "4318", "8889"} <= ports, f"otel-collector ports: {sorted(ports)}"
    env = svc.get("environment") or {}
    storage_dir = env.get("RQA_OTELCOL_STORAGE_DIR")
    assert storage_dir and storage_dir in mounts, "the persistent queue directory must be a mounted volume"
    assert not mounts[storage_dir].startswith((".", "/")), "the persistent queue should be a named volume"


def _required_collector_env(name: str) -> set[str]:
    text = (COLLECTOR_DIR / name).read_text(encoding="utf-8")
    required = set()
    for ref in ENV_REF.findall(text):
        m = COLLECTOR_ENV_REF.match(ref)
        if m and m.group(2) is None:
            required.add(m.group(1))
    return required


def test_compose_provides_collector_env():
    env = _compose()["services"]["otel-collector"].get("environment") or {}
    missing = _required_collector_env("agent.yaml") - set(env)
    assert not missing, f"otel-collector environment lacks {sorted(missing)} (no default in agent.yaml)"


def test_compose_influx_settings_agree():
    services = _compose()["services"]
    influx = services["influxdb"]["environment"]
    init = services["influxdb-init"]["environment"]
    otel = services["otel-collector"]["environment"]
    graf = services["grafana"]["environment"]
    assert influx["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert influx["DOCKER_INFLUXDB_INIT_BUCKET"] == init["RQA_BUCKET"] == otel["INFLUXDB_BUCKET"]
    assert influx["DOCKER_INFLUXDB_INIT_ORG"] == init["INFLUX_ORG"] == otel["INFLUXDB_ORG"]
    token = influx["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    assert token.startswith("${INFLUXDB_TOKEN"), "the admin token must be overridable by INFLUXDB_TOKEN"
    assert token == init["INFLUX_TOKEN"] == otel["INFLUXDB_TOKEN"] == graf["INFLUXDB_TOKEN"]


def test_compose_creates_dbrp_mapping_grafana_uses():
    services = _compose()["services"]
    init = services["influxdb-init"]
    script = "\n".join(init.get("command") or [])
    assert "influx v1 dbrp create" in script and "--default" in script
    env = init["environment"]
    datasource = _datasource()
    assert env["RQA_DBRP_DB"] == datasource["jsonData"]["dbName"], "DBRP database and Grafana dbName differ"
    assert env["RQA_DBRP_RP"] == "autogen"
    depends = services["grafana"].get("depends_on") or {}
    assert (depends.get("influxdb-init") or {}).get("condition") == "service_completed_successfully", (
        "grafana should start after the DBRP mapping exists"
    )


def test_compose_grafana_mounts_provisioning_and_dashboards():
    svc = _compose()["services"]["grafana"]
    assert svc["image"].startswith("grafana/grafana:")
    mounts = _mounts(svc)
    assert mounts.get("/etc/grafana/provisioning") == "./grafana/provisioning"
    provider_path = _dashboard_provider()["options"]["path"]
    assert mounts.get(provider_path) == "./grafana/dashboards", (
        f"dashboard provider reads {provider_path}, which is not the grafana/dashboards mount"
    )
    assert any(str(p).split(":")[-1] == "3000" for p in svc.get("ports") or [])
    env = svc.get("environment") or {}
    # Grafana expands ${VAR} in the parsed values (not in comments).
    for path, value in _walk(_load_yaml(DATASOURCE_FILE)):
        for ref in ENV_REF.findall(value) if isinstance(value, str) else []:
            assert ref in env, f"grafana environment lacks {ref}, which the datasource reads at {path}"


# --------------------------------------------------------------------------
# Grafana provisioning


def _datasource() -> dict:
    data = _load_yaml(DATASOURCE_FILE)
    assert data.get("apiVersion") == 1
    sources = [d for d in data.get("datasources") or [] if d.get("type") == "influxdb"]
    assert len(sources) == 1, "expected exactly one influxdb datasource"
    return sources[0]


def _dashboard_provider() -> dict:
    data = _load_yaml(DASHBOARD_PROVIDER_FILE)
    assert data.get("apiVersion") == 1
    providers = data.get("providers") or []
    assert len(providers) == 1
    return providers[0]


def test_datasource_is_influxql_through_dbrp():
    ds = _datasource()
    json_data = ds.get("jsonData") or {}
    assert json_data.get("version") == "InfluxQL", "InfluxQL, not Flux/SQL"
    assert json_data.get("dbName"), "InfluxQL needs the DBRP database name (jsonData.dbName)"
    if "database" in ds:
        assert ds["database"] == json_data["dbName"]
    assert json_data.get("httpHeaderName1") == "Authorization"
    header = (ds.get("secureJsonData") or {}).get("httpHeaderValue1", "")
    assert re.fullmatch(r"Token \$\{[A-Z_][A-Z0-9_]*\}", header), (
        "InfluxDB 2.x token must be sent as 'Token ${ENV_VAR}'"
    )
    assert ds.get("uid") == "rqa-influxdb", "dashboards reference the datasource by uid rqa-influxdb"
    assert ds.get("access") == "proxy"


def _walk(node: Any, path: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")
    else:
        yield path, node


SECRET_KEY = re.compile(r"(token|password|secret|httpheadervalue\d*|apikey|api_key)$", re.IGNORECASE)


def test_datasource_contains_no_literal_secret():
    data = _load_yaml(DATASOURCE_FILE)
    checked = 0
    for path, value in _walk(data):
        leaf = path.rsplit(".", 1)[-1]
        if path.split(".")[-2:-1] == ["secureJsonData"] or SECRET_KEY.search(leaf):
            checked += 1
            assert isinstance(value, str) and ENV_REF.search(value), (
                f"{path} holds a literal value; secrets must come from an environment variable"
            )
            stripped = ENV_REF.sub("", value).replace("Token", "").replace("Bearer", "").strip()
            assert not stripped, f"{path}: literal text {stripped!r} beside the env reference"
    assert checked, "no secret-bearing field found; the token header is missing"


def test_dashboard_provider_loads_repo_dashboards():
    provider = _dashboard_provider()
    assert provider.get("type") == "file"
    assert (provider.get("options") or {}).get("path"), "provider has no options.path"
    assert DASHBOARDS_DIR.is_dir(), "grafana/dashboards/ is missing"
    for dashboard in DASHBOARDS_DIR.glob("*.json"):
        json.loads(dashboard.read_text(encoding="utf-8"))


def test_compose_health_checks():
    """InfluxDB and Grafana check themselves; the Collector image has no
    shell, so its health_check extension's port is published for a check
    from outside, and it is the port the agent configuration serves."""
    services = _compose()["services"]
    for name, url in (("influxdb", "http://localhost:8086/health"), ("grafana", "http://localhost:3000/api/health")):
        test = services[name].get("healthcheck", {}).get("test") or []
        assert test[:1] == ["CMD"] and url in test, f"{name}: healthcheck {test}"
    collector = services["otel-collector"]
    assert "healthcheck" not in collector, "the Collector image has no shell to run a healthcheck in"
    health = _load_yaml(COLLECTOR_DIR / "agent.yaml")["extensions"]["health_check"]["endpoint"]
    port = health.rsplit(":", 1)[1]
    published = {str(p).split(":")[-1] for p in collector.get("ports") or []}
    assert port in published, f"health_check port {port} is not published: {sorted(published)}"

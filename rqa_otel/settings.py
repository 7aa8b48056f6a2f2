"""Layered, validated settings.

Layers, lowest first (docs/settings.md):

1. packaged defaults (``rqa_otel/default_settings.yaml``);
2. the settings file: ``setup(settings_file=…)`` or ``RQA_SETTINGS_FILE``
   (``settings.yaml``), then its siblings ``settings.{env}.yaml``,
   ``settings.local.yaml`` and ``.secrets.yaml``;
3. standard ``OTEL_*`` variables, where one applies (``OTEL_SERVICE_NAME``…);
4. ``RQA_*`` variables, nested with ``__`` (``RQA_EXPORT__TRACES=otlp``);
5. arguments to ``setup()``.

Files are read through one descriptor each, permission-checked on that
descriptor (rqa_otel.config.permissions), parsed (YAML by dynaconf's own
parser) and merged key by key; dynaconf reads the ``RQA_*`` variables.
``ENC[...]`` values are decrypted by the ConfigVault. The result is validated against
``SCHEMA`` and frozen into dataclasses, so a read on the hot path is a plain
attribute access and a bad value fails at once, naming the setting, where it
came from and what is allowed.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

ENV_PREFIX = "RQA"
SETTINGS_FILE_VARIABLE = "RQA_SETTINGS_FILE"
DEFAULTS_FILE = Path(__file__).with_name("default_settings.yaml")

EXPORTERS = ("otlp", "console", "file", "none", "influxdb")
OTLP_PROTOCOLS = ("grpc", "http/protobuf")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """A setting is unknown or has a value that is not allowed."""


@dataclass(frozen=True)
class OtlpSettings:
    endpoint: str
    """Collector URL, ``http(s)://host:port``; for http/protobuf the signal path
    (``/v1/traces``…) is appended, as for ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
    protocol: str
    headers: Mapping[str, str]
    timeout_s: float
    """Per-request timeout."""


@dataclass(frozen=True)
class SpoolSettings:
    enabled: bool
    """Keep what the otlp/influxdb exporters cannot deliver on disk and replay it."""
    directory: str
    """Empty: ``<export.directory>/spool``."""
    max_bytes: int
    """Bound of each signal's spool directory."""


@dataclass(frozen=True)
class InfluxSettings:
    """The ``influxdb`` exporter: the Collector influxdb exporter's options."""

    url: str
    org: str
    bucket: str
    token: str
    """Secret: registered with the scrubber."""
    v1_compatibility: bool
    """``/write?db=`` with basic auth (InfluxDB 1.x) instead of ``/api/v2/write``."""
    db: str
    username: str
    password: str
    """Secret: registered with the scrubber."""
    metrics_schema: str
    span_dimensions: tuple[str, ...]
    log_record_dimensions: tuple[str, ...]
    max_lines: int
    max_bytes: int


@dataclass(frozen=True)
class ExportSettings:
    traces: str
    metrics: str
    logs: str
    directory: str
    """Directory of the file exporter's ``traces.jsonl``, ``metrics.jsonl``, ``logs.jsonl``."""
    metric_interval_s: float
    shutdown_timeout_s: float
    """Upper bound of ``shutdown()``, also when the back-end is unreachable."""
    otlp: OtlpSettings
    spool: "SpoolSettings"
    influxdb: InfluxSettings

    def exporter(self, signal: str) -> str:
        return getattr(self, signal)


@dataclass(frozen=True)
class ServiceSettings:
    name: str
    environment: str
    instance_id: str


@dataclass(frozen=True)
class SamplingRuleSettings:
    logger: str
    level: str
    rate_per_s: float | None
    ratio: float | None


@dataclass(frozen=True)
class LoggingSettings:
    capture: bool
    """Attach the handler to the root logger, so stdlib ``logging`` becomes log records."""
    level: str
    queue_size: int
    max_wait_s: float
    batch_size: int
    flush_interval_s: float
    console: bool
    file: str
    file_format: str
    sampling_rules: tuple[SamplingRuleSettings, ...]
    summary_interval_s: float


@dataclass(frozen=True)
class FileSettings:
    max_bytes: int
    backup_count: int
    compress: bool


@dataclass(frozen=True)
class RetrySettings:
    max_tries: int
    base_delay_s: float
    max_delay_s: float


@dataclass(frozen=True)
class BreakerSettings:
    failure_threshold: int
    open_s: float


@dataclass(frozen=True)
class ErrorSettings:
    order_rejected: RetrySettings
    broker_connection: RetrySettings
    data_load: RetrySettings
    breaker: BreakerSettings


@dataclass(frozen=True)
class OpsSettings:
    http_port: int
    """Port of /health, /ready and /metrics; 0 leaves them off."""
    http_host: str


@dataclass(frozen=True)
class ResourceSettings:
    enabled: bool
    """Export this process's resource gauges (CPU, RSS, threads, fds, GPU memory)."""
    host: bool
    """Also export host CPU and memory and GPU devices (the host agent always does)."""
    gpu: bool
    """Read GPUs through NVML when it is there."""
    interval_s: float
    """The host agent's collection interval."""


@dataclass(frozen=True)
class RegistrySettings:
    enabled: bool
    """``setup()`` registers its process in the run directory (for the host agent)."""
    dir: str
    """The run directory; empty: ``$XDG_RUNTIME_DIR/rqa-otel``, else ``/tmp/rqa-otel-<uid>``."""


@dataclass(frozen=True)
class AgentSettings:
    http_port: int
    """Port of the agent's /health, /ready and /metrics; 0: off (``--http-port`` sets it)."""
    smoothing: float
    """EMA factor of quota readings, in (0, 1]: 1 is no smoothing."""
    warn_ratio: float
    """Smoothed usage / quota from which a quota warns (a breach is 1.0)."""
    restart_backoff_max_s: float
    """Longest wait before restarting a monitoring worker that keeps dying."""


@dataclass(frozen=True)
class ScrubSettings:
    patterns: tuple[str, ...]
    allowlist: tuple[str, ...]


@dataclass(frozen=True)
class ConfigSettings:
    watch: bool
    """Reload when a settings file changes (and on SIGHUP)."""
    debounce_s: float
    poll_interval_s: float
    sighup: bool


@dataclass(frozen=True)
class Settings:
    strategy: str
    service: ServiceSettings
    export: ExportSettings
    logging: LoggingSettings
    files: FileSettings
    scrub: ScrubSettings
    errors: ErrorSettings
    ops: OpsSettings
    resources: ResourceSettings
    registry: RegistrySettings
    agent: AgentSettings
    quotas: Mapping[str, Any]
    """Strategy -> ``rqa_otel.resources.quota.Quota``."""
    resource_attributes: Mapping[str, str]
    config: ConfigSettings
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    """Where each setting's value came from, by dotted key (for messages)."""
    secret_keys: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    """Dotted keys whose value was decrypted: never shown in messages."""
    values: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """Every validated value by dotted key (``SCHEMA``'s keys): for diffs."""

    def get(self, key: str) -> Any:
        """A value by dotted key, or the mapping of those under a section
        (``get("errors.order_rejected")``); KeyError when none."""
        if key in self.values:
            return self.values[key]
        found = {k: v for k, v in self.values.items() if k.startswith(key + ".")}
        if not found:
            raise KeyError(key)
        return found


# --- Schema -------------------------------------------------------------------
# One row per leaf setting: its parser and, where the OTel specification has
# one, the standard variable that feeds it.


def _string(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("expected a string")
    return str(value)


def _one_of(*allowed: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _string(value).strip().lower()
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return text

    return parse


def _level(value: Any) -> str:
    text = _string(value).strip().upper()
    if text not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return text


def _positive_seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a positive number of seconds")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("expected a positive number of seconds") from None
    if not number > 0 or number == float("inf"):
        raise ValueError("expected a positive number of seconds")
    return number


def _count(minimum: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"expected an integer >= {minimum}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected an integer >= {minimum}") from None
        if number != value and not isinstance(value, str) or number < minimum:
            raise ValueError(f"expected an integer >= {minimum}")
        return number

    return parse


def _port(value: Any) -> int:
    try:
        port = _count(0)(value)
    except ValueError:
        raise ValueError("expected a TCP port, 0 (off) to 65535") from None
    if port > 65535:
        raise ValueError("expected a TCP port, 0 (off) to 65535")
    return port


def _non_negative_seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds >= 0")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("expected a number of seconds >= 0") from None
    if not 0 <= number < float("inf"):
        raise ValueError("expected a number of seconds >= 0")
    return number


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)):
        raise ValueError("expected a list of strings")
    return tuple(_string(item) for item in value)


def _regexes(value: Any) -> tuple[str, ...]:
    import re

    patterns = _strings(value)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from None
    return patterns


_SAMPLED_LEVELS = ("DEBUG", "INFO")


def _sampling_rules(value: Any) -> tuple[SamplingRuleSettings, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError("expected a list of rules like {logger: 'rqa.feed', level: DEBUG, rate_per_s: 100, ratio: 0.1}")
    rules = []
    for index, rule in enumerate(value):
        where = f"rule [{index}]"
        if not isinstance(rule, Mapping):
            raise ValueError(f"{where}: expected a mapping with logger, level, rate_per_s and/or ratio")
        unknown = set(map(str, rule)) - {"logger", "level", "rate_per_s", "ratio"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: logger, level, rate_per_s, ratio")
        level = _string(rule.get("level", "INFO")).strip().upper()
        if level not in _SAMPLED_LEVELS:
            raise ValueError(f"{where}: level {level!r} cannot be sampled; expected DEBUG or INFO (WARNING and above are always kept)")
        rate = rule.get("rate_per_s")
        ratio = rule.get("ratio")
        if rate is None and ratio is None:
            raise ValueError(f"{where}: give rate_per_s, ratio or both")
        if rate is not None:
            try:
                rate = _positive_seconds(rate)
            except ValueError:
                raise ValueError(f"{where}: rate_per_s = {rate!r}: expected a number > 0") from None
        if ratio is not None:
            try:
                ratio = float(ratio)
            except (TypeError, ValueError):
                ratio = float("nan")
            if not 0 < ratio <= 1:
                raise ValueError(f"{where}: ratio = {rule.get('ratio')!r}: expected a number in (0, 1]")
        rules.append(SamplingRuleSettings(_string(rule.get("logger", "*")).strip() or "*", level, rate, ratio))
    return tuple(rules)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _string_map(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        return parse_key_value_list(value)
    if not isinstance(value, Mapping):
        raise ValueError("expected a mapping of strings, or 'key=value,key2=value2'")
    return {str(k): _string(v) for k, v in value.items()}


def _dimensions(value: Any) -> tuple[str, ...]:
    keys = _strings(value)
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate dimension(s): {', '.join(duplicates)}")
    if any(not key.strip() for key in keys):
        raise ValueError("expected attribute keys, not empty strings")
    return keys


def _endpoint(value: Any) -> str:
    text = _string(value).strip()
    if text == "":
        return text
    allowed = "expected a URL like http://host:4317 or https://host:4318 (scheme http or https, a host and a port)"
    try:
        url = urllib.parse.urlsplit(text)
        port = url.port
    except ValueError:
        raise ValueError(allowed) from None
    if url.scheme not in ("http", "https") or not url.hostname or port is None:
        raise ValueError(allowed)
    return text


def _fraction(inclusive_one: bool) -> Callable[[Any], float]:
    allowed = "a number in (0, 1]" if inclusive_one else "a number in (0, 1)"

    def parse(value: Any) -> float:
        try:
            number = float(value) if not isinstance(value, bool) else float("nan")
        except (TypeError, ValueError):
            raise ValueError(f"expected {allowed}") from None
        if not (0 < number < 1 or (inclusive_one and number == 1)):
            raise ValueError(f"expected {allowed}")
        return number

    return parse


def _quotas(value: Any) -> dict[str, Any]:
    from rqa_otel.resources.quota import Quota

    if not isinstance(value, Mapping):
        raise ValueError("expected a mapping {strategy: {cpu_percent, memory_mib, gpu_memory_mib, max_workers}}")
    return {str(strategy): Quota.from_mapping(str(strategy), limits) for strategy, limits in value.items()}


SCHEMA: dict[str, tuple[Callable[[Any], Any], str | None]] = {
    "strategy": (_string, None),
    "service.name": (_string, "OTEL_SERVICE_NAME"),
    "service.environment": (_string, None),
    "service.instance_id": (_string, None),
    "resource_attributes": (_string_map, "OTEL_RESOURCE_ATTRIBUTES"),
    "export.traces": (_one_of(*EXPORTERS), "OTEL_TRACES_EXPORTER"),
    "export.metrics": (_one_of(*EXPORTERS), "OTEL_METRICS_EXPORTER"),
    "export.logs": (_one_of(*EXPORTERS), "OTEL_LOGS_EXPORTER"),
    "export.directory": (_string, None),
    "export.metric_interval_s": (_positive_seconds, "OTEL_METRIC_EXPORT_INTERVAL"),
    "export.shutdown_timeout_s": (_positive_seconds, None),
    "export.otlp.endpoint": (_endpoint, "OTEL_EXPORTER_OTLP_ENDPOINT"),
    "export.otlp.protocol": (_one_of(*OTLP_PROTOCOLS), "OTEL_EXPORTER_OTLP_PROTOCOL"),
    "export.otlp.headers": (_string_map, "OTEL_EXPORTER_OTLP_HEADERS"),
    "export.otlp.timeout_s": (_positive_seconds, None),
    "export.spool.enabled": (_boolean, None),
    "export.spool.directory": (_string, None),
    "export.spool.max_bytes": (_count(1), None),
    "export.influxdb.url": (_endpoint, None),
    "export.influxdb.org": (_string, None),
    "export.influxdb.bucket": (_string, None),
    "export.influxdb.token": (_string, None),
    "export.influxdb.v1_compatibility": (_boolean, None),
    "export.influxdb.db": (_string, None),
    "export.influxdb.username": (_string, None),
    "export.influxdb.password": (_string, None),
    "export.influxdb.metrics_schema": (_one_of("telegraf-prometheus-v1", "telegraf-prometheus-v2"), None),
    "export.influxdb.span_dimensions": (_dimensions, None),
    "export.influxdb.log_record_dimensions": (_dimensions, None),
    "export.influxdb.max_lines": (_count(1), None),
    "export.influxdb.max_bytes": (_count(1), None),
    "logging.capture": (_boolean, None),
    "logging.level": (_level, None),
    "logging.queue_size": (_count(1), None),
    "logging.max_wait_s": (_non_negative_seconds, None),
    "logging.batch_size": (_count(1), None),
    "logging.flush_interval_s": (_positive_seconds, None),
    "logging.console": (_boolean, None),
    "logging.file": (_string, None),
    "logging.file_format": (_one_of("text", "json"), None),
    "logging.sampling.rules": (_sampling_rules, None),
    "logging.sampling.summary_interval_s": (_positive_seconds, None),
    "files.max_bytes": (_count(0), None),
    "files.backup_count": (_count(0), None),
    "files.compress": (_boolean, None),
    "scrub.patterns": (_regexes, None),
    "scrub.allowlist": (_strings, None),
    **{
        f"errors.{kind}.{field}": (parse, None)
        for kind in ("order_rejected", "broker_connection", "data_load")
        for field, parse in (("max_tries", _count(1)), ("base_delay_s", _non_negative_seconds), ("max_delay_s", _non_negative_seconds))
    },
    "ops.http_port": (_port, None),
    "ops.http_host": (_string, None),
    "errors.breaker.failure_threshold": (_count(1), None),
    "errors.breaker.open_s": (_positive_seconds, None),
    "config.watch": (_boolean, None),
    "config.debounce_s": (_non_negative_seconds, None),
    "config.poll_interval_s": (_positive_seconds, None),
    "config.sighup": (_boolean, None),
    "resources.enabled": (_boolean, None),
    "resources.host": (_boolean, None),
    "resources.gpu": (_boolean, None),
    "resources.interval_s": (_positive_seconds, None),
    "registry.enabled": (_boolean, None),
    "registry.dir": (_string, None),
    "agent.http_port": (_port, None),
    "agent.smoothing": (_fraction(inclusive_one=True), None),
    "agent.warn_ratio": (_fraction(inclusive_one=False), None),
    "agent.restart_backoff_max_s": (_positive_seconds, None),
    "quotas": (_quotas, None),
}
_MAP_KEYS = {"resource_attributes", "export.otlp.headers", "quotas"}


def parse_key_value_list(text: str) -> dict[str, str]:
    """Parse the OTel ``key1=value1,key2=value2`` format (values percent-encoded)."""
    result: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value pairs separated by commas, got {item!r}")
        result[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return result


# --- Loading ------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """One load of every layer: the settings and what the hot reload needs."""

    settings: Settings
    watched: tuple[Path, ...]
    """Every file whose content counts, present or not (a settings.local.yaml
    created later is a change): the watcher watches their directories."""
    fingerprint: str
    """SHA-256 over the bytes of those files: equal means nothing changed."""
    plaintexts: tuple[str, ...]
    """Every value the vault decrypted (for the log scrubber)."""


def load_settings(
    settings_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the layers, validate, decrypt, and return frozen settings.

    ``overrides`` may be nested (``{"export": {"traces": "none"}}``) or dotted
    (``{"export.traces": "none"}``). Raises SettingsError listing every bad
    setting.
    """
    return load_layers(settings_file, overrides, environ).settings


def layer_files(settings_file: Path, environment: str) -> list[tuple[Path, bool]]:
    """The files above the packaged defaults, lowest first, as (path, holds
    secrets): ``settings.yaml``, ``settings.{env}.yaml``,
    ``settings.local.yaml``, ``.secrets.yaml`` (the siblings of the settings
    file, with its name and extension)."""
    stem, suffix = settings_file.stem, settings_file.suffix
    directory = settings_file.parent
    return [
        (settings_file, False),
        (directory / f"{stem}.{environment}{suffix}", False),
        (directory / f"{stem}.local{suffix}", False),
        (directory / f".secrets{suffix}", True),
    ]


_ENVIRONMENT_NAME = re.compile(r"[A-Za-z0-9_-]+")


def load_layers(
    settings_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    vault: Any = None,
) -> Loaded:
    """``load_settings`` with what a reload needs; ``vault`` (a ConfigVault)
    defaults to the one the environment configures, loaded only when a
    value is encrypted."""
    from rqa_otel.config.permissions import UnsafePermissions, read_checked
    from rqa_otel.config.vault import KEY_FILE_VARIABLE, ConfigVault, VaultError, decrypt_values

    environ = os.environ if environ is None else environ
    overrides = _flatten(dict(overrides or {}))
    if settings_file is None:
        settings_file = environ.get(SETTINGS_FILE_VARIABLE) or None
    digest = hashlib.sha256()
    layers: list[tuple[str, dict[str, Any]]] = [("packaged defaults", _packaged_defaults())]
    watched: list[Path] = []
    secret_sources: set[str] = set()  # values from these are never shown in messages

    def read(path: Path, secret: bool) -> None:
        try:
            data = read_checked(path, secret=secret)
        except FileNotFoundError:
            _digest(digest, path, None)
            return
        except UnsafePermissions as exc:
            raise SettingsError(str(exc)) from None
        except OSError as exc:
            raise SettingsError(f"cannot read settings file {str(path)!r}: {exc}") from None
        _digest(digest, path, data)
        source = f"settings file {str(path)!r}"
        if secret:
            secret_sources.add(source)
        layers.append((source, parse_file(path, data, secret)))

    if settings_file is not None:
        path = Path(settings_file)
        if not path.is_file():
            raise SettingsError(f"settings file {str(path)!r} does not exist or is not a file")
        read(path, secret=False)
        environment = _environment(overrides, environ, layers)
        for candidate, secret in layer_files(path, environment):
            watched.append(candidate)
            if candidate != path:
                read(candidate, secret)
    key_file = environ.get(KEY_FILE_VARIABLE, "").strip()
    if key_file:
        watched.append(Path(key_file))
        _digest(digest, Path(key_file), _read_or_none(Path(key_file)))

    sources = {key: "packaged defaults" for key in SCHEMA}
    merged: dict[str, Any] = {}
    for source, tree in layers:
        _merge(merged, tree, source, sources)
    flat = _flatten(merged)
    rqa = _flatten(_rqa_environment(environ))
    flat.update(rqa)
    for key in rqa:
        sources[key] = f"environment variable {_rqa_variable(key)}"
    for key, (value, variable) in _otel_environment(environ).items():
        if key not in rqa:
            flat[key] = value
            sources[key] = f"environment variable {variable}"
    for key, value in overrides.items():
        flat[key] = value
        sources[key] = "setup() argument"

    plaintexts: tuple[str, ...] = ()
    secret_keys: frozenset[str] = frozenset()
    errors: list[str] = []
    if any(_has_envelope(value) for value in flat.values()):
        try:
            vault = vault if vault is not None else ConfigVault.from_environment(environ)
        except VaultError as exc:
            raise SettingsError(f"invalid rqa-otel settings: encrypted values cannot be read: {exc}") from None
        flat, secret_keys, plaintexts, errors = decrypt_values(flat, vault, lambda key: sources.get(key, "environment"))

    values = {}
    for key, value in flat.items():
        if key not in SCHEMA and _foreign_variable(key, sources.get(key, "")):
            continue
        if key not in SCHEMA:
            errors.append(f"unknown setting {key!r} (from {sources.get(key, 'environment')}); known settings: {', '.join(SCHEMA)}")
            continue
        parse, _ = SCHEMA[key]
        try:
            values[key] = parse(value)
        except ValueError as exc:
            shown = "[REDACTED]" if key in secret_keys or sources[key] in secret_sources else repr(value)
            errors.append(f"setting {key} = {shown} (from {sources[key]}): {exc}")
    for key in SCHEMA:
        if key not in flat:
            errors.append(f"required setting {key} is missing (a file above the defaults emptied its section?)")
    errors += _influxdb_errors(values)
    if errors:
        raise SettingsError("invalid rqa-otel settings:\n  " + "\n  ".join(errors))
    settings = _freeze(values, sources, secret_keys)
    return Loaded(settings, tuple(watched), digest.hexdigest(), plaintexts)


def _influxdb_errors(values: Mapping[str, Any]) -> list[str]:
    """The influxdb exporter needs a URL, and a bucket (v2) or a db (v1)."""
    users = [f"export.{signal}" for signal in ("traces", "metrics", "logs") if values.get(f"export.{signal}") == "influxdb"]
    if not users:
        return []
    needed = ["export.influxdb.url"]
    needed.append("export.influxdb.db" if values.get("export.influxdb.v1_compatibility") else "export.influxdb.bucket")
    return [
        f"setting {key} is empty, but {', '.join(users)} = influxdb needs it"
        + (" (or set export.influxdb.v1_compatibility for InfluxDB 1.x)" if key.endswith("bucket") else "")
        for key in needed
        if not values.get(key)
    ]


def content_fingerprint(paths) -> str | None:
    """SHA-256 over the files' bytes as ``load_layers`` computes it (None
    when one cannot be read now): the watcher's cheap "did anything change"."""
    digest = hashlib.sha256()
    try:
        for path in paths:
            _digest(digest, path, _read_or_none(path))
    except OSError:
        return None
    return digest.hexdigest()


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _digest(digest, path: Path, data: bytes | None) -> None:
    if data is None:
        digest.update(f"{path}\0absent\0".encode())
    else:
        digest.update(f"{path}\0{len(data)}\0".encode() + data)


@functools.lru_cache(maxsize=1)
def _packaged_defaults_cached() -> dict[str, Any]:
    return parse_file(DEFAULTS_FILE, DEFAULTS_FILE.read_bytes())


def _packaged_defaults() -> dict[str, Any]:
    """Parsed once per process (it is part of the installed package)."""
    return copy.deepcopy(_packaged_defaults_cached())


def _has_envelope(value: Any) -> bool:
    if isinstance(value, str):
        return value.lstrip().startswith("ENC[")
    if isinstance(value, Mapping):
        return any(_has_envelope(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_envelope(v) for v in value)
    return False


def _environment(overrides: Mapping[str, Any], environ: Mapping[str, str], layers) -> str:
    """The environment that picks ``settings.{env}.yaml``: service.environment
    from setup(), RQA_SERVICE__ENVIRONMENT, the settings file or the defaults."""
    value = overrides.get("service.environment")
    if value is None:
        value = next((v for k, v in environ.items() if k.upper() == "RQA_SERVICE__ENVIRONMENT"), None)
    if value is None:
        for _, tree in reversed(layers):
            service = tree.get("service")
            if isinstance(service, Mapping) and service.get("environment") is not None:
                value = service["environment"]
                break
    text = str(value).strip()
    if not _ENVIRONMENT_NAME.fullmatch(text):
        raise SettingsError(
            f"setting service.environment = {value!r} cannot name a settings file; expected letters, digits, _ or -"
        )
    return text


def parse_file(path: Path, data: bytes, secret: bool = False) -> dict[str, Any]:
    """One file's tree. YAML through dynaconf's own (vendored) parser.
    ``secret``: a parse error gives the position only, since parsers quote
    the offending line and the line may hold a secret."""
    suffix = path.suffix.lower()
    try:
        text = data.decode("utf-8")
        if suffix in (".yaml", ".yml"):
            from dynaconf.vendor.ruamel import yaml

            tree = yaml.load(text, Loader=yaml.SafeLoader)
        elif suffix == ".toml":
            import tomllib

            tree = tomllib.loads(text)
        elif suffix == ".json":
            import json

            tree = json.loads(text) if text.strip() else None
        else:
            raise ValueError("unknown format; expected a .yaml, .yml, .toml or .json file")
    except Exception as exc:  # each parser has its own error types
        if secret:
            raise SettingsError(f"cannot read settings file {str(path)!r}: {_position(exc)}") from None
        raise SettingsError(f"cannot read settings file {str(path)!r}: {exc}") from None
    if tree is None:
        return {}
    if not isinstance(tree, Mapping):
        raise SettingsError(f"settings file {str(path)!r}: expected a mapping of settings at the top, got {type(tree).__name__}")
    return dict(tree)


def _position(error: Exception) -> str:
    """Where a parser failed, without the text it would quote."""
    mark = getattr(error, "problem_mark", None)  # YAML
    if mark is not None:
        return f"malformed YAML at line {mark.line + 1}, column {mark.column + 1}"
    line = getattr(error, "lineno", None)  # JSON, TOML (3.14+)
    if line is not None:
        return f"malformed at line {line}, column {getattr(error, 'colno', '?')}"
    return f"malformed ({type(error).__name__}; the message is withheld because this file holds secrets)"


def _merge(into: dict[str, Any], tree: Mapping[str, Any], source: str, sources: dict[str, str], prefix: str = "") -> None:
    """Deep merge, key by key: mappings merge, everything else (lists
    included) replaces; a section set to null is an error naming the file."""
    for key, value in tree.items():
        name = str(key).lower() if prefix not in _MAP_PREFIXES else str(key)
        dotted = f"{prefix}{name}"
        current = into.get(name)
        if isinstance(value, Mapping) and dotted not in _MAP_KEYS:
            if not isinstance(current, dict):
                current = into[name] = {}
            _merge(current, value, source, sources, dotted + ".")
            continue
        if value is None and isinstance(current, dict) and dotted not in _MAP_KEYS:
            raise SettingsError(
                f"section {dotted!r} in {source} is empty (null); expected a mapping of its settings, or remove the line"
            )
        into[name] = dict(value) if isinstance(value, Mapping) else value
        for flat_key in _flatten({name: value}, prefix) if isinstance(value, Mapping) else [dotted]:
            sources[flat_key] = source


_MAP_PREFIXES = {f"{key}." for key in _MAP_KEYS}  # inside these, keys keep their case


def _rqa_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """RQA_* variables as a tree, parsed by dynaconf (TOML-typed values,
    ``__`` nesting)."""
    if environ is not os.environ:
        # dynaconf reads os.environ itself; for any other mapping, only what
        # that mapping holds counts.
        return _nest({k: v for k, v in environ.items() if k.upper().startswith(f"{ENV_PREFIX}_")})
    from dynaconf import Dynaconf

    options = dict(envvar_prefix=ENV_PREFIX, environments=False, load_dotenv=False, settings_files=[])
    try:
        loaded = Dynaconf(**options).as_dict()
    except Exception as exc:  # dynaconf raises parser-specific errors
        raise SettingsError(f"cannot read the {ENV_PREFIX}_* environment variables: {exc}") from exc
    internal = {name.upper() for name in options} | {"SETTINGS_FILE"}
    return {key.lower(): value for key, value in loaded.items() if key.upper() not in internal}


def _nest(variables: Mapping[str, str]) -> dict[str, Any]:
    from dynaconf.utils.parse_conf import parse_conf_data

    tree: dict[str, Any] = {}
    for name, text in variables.items():
        parts = name[len(ENV_PREFIX) + 1 :].lower().split("__")
        if parts == ["settings_file"]:
            continue
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = parse_conf_data(text, tomlfy=True)
    return tree


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{str(key).lower()}"
        if isinstance(value, Mapping) and dotted not in _MAP_KEYS:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


_SECTIONS = frozenset(key.split(".")[0] for key in SCHEMA)


def _foreign_variable(key: str, source: str) -> bool:
    """An RQA_* variable outside our sections belongs to another RQA2025
    layer (RQA_HOME, say) and is none of our business; one inside a section
    of ours (RQA_EXPORT__TRACSE) is a typo worth an error."""
    return source.startswith("environment variable") and key.split(".")[0] not in _SECTIONS


def _rqa_variable(key: str) -> str:
    return f"{ENV_PREFIX}_" + key.replace(".", "__").upper()


def _otel_environment(environ: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    """The standard OTEL_* variables that apply, as {setting: (value, variable)}."""
    found: dict[str, tuple[Any, str]] = {}
    for key, (_, variable) in SCHEMA.items():
        if variable and environ.get(variable, "").strip():
            found[key] = (environ[variable].strip(), variable)
    if "export.metric_interval_s" in found:  # the variable is in milliseconds
        text, variable = found["export.metric_interval_s"]
        try:
            found["export.metric_interval_s"] = (float(text) / 1000.0, variable)
        except ValueError:
            pass  # left as text: the parser reports it with the variable's name
    # The specification gives OTEL_SERVICE_NAME precedence over a service.name
    # inside OTEL_RESOURCE_ATTRIBUTES; the latter still counts when alone.
    if "resource_attributes" in found:
        try:
            attributes = parse_key_value_list(found["resource_attributes"][0])
        except ValueError:
            return found
        promoted = {
            "service.name": "service.name",
            "service.instance.id": "service.instance_id",
            "deployment.environment.name": "service.environment",
            "deployment.environment": "service.environment",
        }
        for attribute, key in promoted.items():
            if attribute in attributes and key not in found:
                found[key] = (attributes[attribute], "OTEL_RESOURCE_ATTRIBUTES")
    if _boolean_or_false(environ.get("OTEL_SDK_DISABLED", "")):
        for signal in ("traces", "metrics", "logs"):
            found[f"export.{signal}"] = ("none", "OTEL_SDK_DISABLED")
    return found


def _boolean_or_false(text: str) -> bool:
    return text.strip().lower() == "true"


def _freeze(values: Mapping[str, Any], sources: Mapping[str, str], secret_keys: frozenset[str] = frozenset()) -> Settings:
    v = values
    return Settings(
        strategy=v["strategy"],
        service=ServiceSettings(
            name=v["service.name"],
            environment=v["service.environment"],
            instance_id=v["service.instance_id"],
        ),
        export=ExportSettings(
            traces=v["export.traces"],
            metrics=v["export.metrics"],
            logs=v["export.logs"],
            directory=v["export.directory"],
            metric_interval_s=v["export.metric_interval_s"],
            shutdown_timeout_s=v["export.shutdown_timeout_s"],
            otlp=OtlpSettings(
                endpoint=v["export.otlp.endpoint"],
                protocol=v["export.otlp.protocol"],
                headers=dict(v["export.otlp.headers"]),
                timeout_s=v["export.otlp.timeout_s"],
            ),
            spool=SpoolSettings(
                enabled=v["export.spool.enabled"],
                directory=v["export.spool.directory"] or os.path.join(v["export.directory"], "spool"),
                max_bytes=v["export.spool.max_bytes"],
            ),
            influxdb=InfluxSettings(
                **{name: v[f"export.influxdb.{name}"] for name in InfluxSettings.__dataclass_fields__}
            ),
        ),
        logging=LoggingSettings(
            capture=v["logging.capture"],
            level=v["logging.level"],
            queue_size=v["logging.queue_size"],
            max_wait_s=v["logging.max_wait_s"],
            batch_size=v["logging.batch_size"],
            flush_interval_s=v["logging.flush_interval_s"],
            console=v["logging.console"],
            file=v["logging.file"],
            file_format=v["logging.file_format"],
            sampling_rules=v["logging.sampling.rules"],
            summary_interval_s=v["logging.sampling.summary_interval_s"],
        ),
        files=FileSettings(
            max_bytes=v["files.max_bytes"], backup_count=v["files.backup_count"], compress=v["files.compress"]
        ),
        scrub=ScrubSettings(patterns=v["scrub.patterns"], allowlist=v["scrub.allowlist"]),
        errors=ErrorSettings(
            **{
                kind: RetrySettings(
                    v[f"errors.{kind}.max_tries"], v[f"errors.{kind}.base_delay_s"], v[f"errors.{kind}.max_delay_s"]
                )
                for kind in ("order_rejected", "broker_connection", "data_load")
            },
            breaker=BreakerSettings(v["errors.breaker.failure_threshold"], v["errors.breaker.open_s"]),
        ),
        ops=OpsSettings(http_port=v["ops.http_port"], http_host=v["ops.http_host"]),
        resources=ResourceSettings(
            enabled=v["resources.enabled"], host=v["resources.host"], gpu=v["resources.gpu"], interval_s=v["resources.interval_s"]
        ),
        registry=RegistrySettings(enabled=v["registry.enabled"], dir=v["registry.dir"]),
        agent=AgentSettings(
            http_port=v["agent.http_port"], smoothing=v["agent.smoothing"], warn_ratio=v["agent.warn_ratio"],
            restart_backoff_max_s=v["agent.restart_backoff_max_s"],
        ),
        quotas=dict(v["quotas"]),
        resource_attributes=dict(v["resource_attributes"]),
        config=ConfigSettings(
            watch=v["config.watch"], debounce_s=v["config.debounce_s"],
            poll_interval_s=v["config.poll_interval_s"], sighup=v["config.sighup"],
        ),
        sources=dict(sources),
        secret_keys=secret_keys,
        values=dict(values),
    )

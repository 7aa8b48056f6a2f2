"""The settings' shape: every frozen settings dataclass, ``SettingsError``
and the constants the schema and the loader share.

A ``Settings`` is immutable: a reload builds a new one
(rqa_otel.config.loader) and LiveSettings swaps it in, so a read on the hot
path is a plain attribute access.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from rqa_otel.config.quotas import Quota

ENV_PREFIX = "RQA"
SETTINGS_FILE_VARIABLE = "RQA_SETTINGS_FILE"
# The packaged defaults stay beside the package's __init__ (pyproject's
# package-data names rqa_otel/default_settings.yaml).
DEFAULTS_FILE = Path(__file__).parent.parent / "default_settings.yaml"

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
    send_budget_s: float = 2.0
    """How long an exporting thread waits for a first send before it spools the payload."""


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
class RotationSettings:
    """Rotation of every file rqa-otel writes (``rotation.*``; ``files.*``
    is its deprecated name)."""

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
    rotation: RotationSettings
    scrub: ScrubSettings
    errors: ErrorSettings
    ops: OpsSettings
    resources: ResourceSettings
    registry: RegistrySettings
    agent: AgentSettings
    quotas: Mapping[str, Quota]
    """Strategy -> its limits."""
    resource_attributes: Mapping[str, str]
    config: ConfigSettings
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    """Where each setting's value came from, by dotted key (for messages)."""
    secret_keys: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    """Dotted keys whose value was decrypted: never shown in messages."""
    values: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """Every validated value by dotted key (``SCHEMA``'s keys): for diffs."""

    @property
    def files(self) -> RotationSettings:
        """Deprecated name of ``rotation`` (the section was ``files.*``)."""
        warnings.warn("Settings.files is deprecated; use Settings.rotation", DeprecationWarning, stacklevel=2)
        return self.rotation

    def get(self, key: str) -> Any:
        """A value by dotted key, or the mapping of those under a section
        (``get("errors.order_rejected")``); KeyError when none."""
        if key in self.values:
            return self.values[key]
        found = {k: v for k, v in self.values.items() if k.startswith(key + ".")}
        if not found:
            raise KeyError(key)
        return found


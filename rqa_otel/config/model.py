"""The settings' shape: every frozen settings dataclass, ``SettingsError``
and the constants the schema and the loader share.

A ``Settings`` is immutable: a reload builds a new one
(rqa_otel.config.loader) and LiveSettings swaps it in, so a read on the hot
path is a plain attribute access.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from rqa_otel.config.quotas import Quota

ENV_PREFIX = "RQA"
SETTINGS_FILE_VARIABLE = "RQA_SETTINGS_FILE"
# The packaged defaults stay beside the package's __init__ (pyproject's
# package-data names rqa_otel/default_settings.yaml).
DEFAULTS_FILE = Path(__file__).parent.parent / "default_settings.yaml"
DEFAULTS_TREE_FILE = DEFAULTS_FILE.with_suffix(".json")
"""DEFAULTS_FILE's parsed tree, generated at build time and read at start
(rqa_otel/config/packaged_defaults.py)."""

EXPORTERS = ("otlp", "console", "file", "none", "influxdb")
METRIC_EXPORTERS = EXPORTERS + ("prometheus",)
"""``prometheus`` (metrics only): served on /metrics of the ops server."""
OTLP_PROTOCOLS = ("grpc", "http/protobuf")
OTLP_COMPRESSIONS = ("none", "gzip")
TEMPORALITY_PREFERENCES = ("cumulative", "delta", "lowmemory")
OTLP_SIGNAL_FIELDS = (
    "endpoint", "protocol", "headers", "timeout_s", "compression",
    "certificate", "client_key", "client_certificate", "insecure",
)
"""The ``export.otlp`` settings a signal may override (``export.otlp.traces.endpoint``...)."""
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
    compression: str = "none"
    """``gzip``: HTTP bodies with ``Content-Encoding: gzip``, grpc's gzip."""
    certificate: str = ""
    """PEM file of the CA(s) that verify the receiver; empty: the system's."""
    client_key: str = ""
    """PEM private key for mTLS (with ``client_certificate``)."""
    client_certificate: str = ""
    insecure: bool = False
    """Plaintext for an endpoint without a scheme; ``http://``/``https://`` decide otherwise."""
    signals: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per-signal overrides (``export.otlp.<signal>.<field>``); a missing
    or empty one inherits the generic value."""
    temporality: str = "cumulative"
    """Metric temporality preference of the OTLP metric exporter."""

    def for_signal(self, signal: str) -> "OtlpSettings":
        """The settings in force for ``signal``: per-signal over generic.
        ``signal_endpoint`` tells a per-signal endpoint (used as-is for
        http/protobuf) from the generic one (``/v1/<signal>`` appended)."""
        own = {key: value for key, value in self.signals.get(signal, {}).items() if value not in (None, "", {})}
        if not own:
            return self
        return replace(self, signals={}, signal_endpoint="endpoint" in own, **own)

    signal_endpoint: bool = field(default=False, compare=False)
    """True when ``endpoint`` came from a per-signal setting (see ``for_signal``)."""


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
    metric_resource_exclude: tuple[str, ...]
    """Resource attributes that are not metric tags (series budget, docs/capacity.md)."""
    metric_temporality: str
    """``delta`` (sums and histograms as increments) or ``cumulative``."""
    series_limit: int
    """Series per metric before points go to the overflow series (0: no limit)."""
    metric_exclude: tuple[str, ...]
    """Metrics not written to InfluxDB (per-process gauges, for live views)."""


@dataclass(frozen=True)
class SpanBatchSettings:
    """The batch span processor (``OTEL_BSP_*``)."""

    schedule_delay_s: float = 5.0
    export_timeout_s: float = 10.0
    max_queue_size: int = 2048
    max_export_batch_size: int = 512


@dataclass(frozen=True)
class LimitSettings:
    """Attribute limits (``OTEL_ATTRIBUTE_*``, ``OTEL_SPAN_*``,
    ``OTEL_LOGRECORD_*``); None: not set, so the more general limit (or
    none) applies."""

    attribute_value_length: int | None = None
    attribute_count: int | None = None
    span_attribute_value_length: int | None = None
    span_attribute_count: int | None = None
    span_event_count: int | None = None
    span_link_count: int | None = None
    event_attribute_count: int | None = None
    link_attribute_count: int | None = None
    log_record_attribute_value_length: int | None = None
    log_record_attribute_count: int | None = None

    def log_record(self) -> tuple[int | None, int | None]:
        """(value length, count) for log records: the log-record limit,
        else the general one; (None, None) costs the log path nothing."""
        length = self.log_record_attribute_value_length
        count = self.log_record_attribute_count
        return (
            self.attribute_value_length if length is None else length,
            self.attribute_count if count is None else count,
        )


@dataclass(frozen=True)
class SdkSettings:
    """SDK-wide settings the specification gives variables for."""

    traces_sampler: str = "parentbased_always_on"
    traces_sampler_arg: float = 1.0
    propagators: tuple[str, ...] = ("tracecontext", "baggage")
    log_level: str = ""
    """Level of the ``opentelemetry`` and ``rqa_otel`` loggers; empty: leave them."""
    metrics_exemplar_filter: str = "trace_based"
    limits: LimitSettings = field(default_factory=LimitSettings)


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
    metric_timeout_s: float = 10.0
    """Longest one metric export may take (``OTEL_METRIC_EXPORT_TIMEOUT``)."""
    span_batch: SpanBatchSettings = field(default_factory=SpanBatchSettings)
    prometheus_host: str = "localhost"
    prometheus_port: int = 9464
    """Where ``export.metrics = prometheus`` serves /metrics when ``ops.http_port`` is 0."""
    file_mode: int = 0o600
    """Mode of the files rqa-otel creates (JSONL, text log, trade journal,
    rotated copies); directories it creates get the matching 0700/0750/0755."""

    def exporter(self, signal: str) -> str:
        """The first (primary) exporter of ``signal``; ``exporters`` has all."""
        return self.exporters(signal)[0]

    def exporters(self, signal: str) -> tuple[str, ...]:
        """Every exporter of ``signal`` (``otlp,console`` is two), or ``("none",)``."""
        return tuple(getattr(self, signal).split(","))


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
    code_attributes: bool = False
    """Add code.file.path, code.function.name and code.line.number to each
    stdlib record (off by default: it costs log export throughput about a sixth)."""
    export_timeout_s: float = 10.0
    """Longest one log batch export may take (``OTEL_BLRP_EXPORT_TIMEOUT``)."""


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
    sdk: SdkSettings = field(default_factory=SdkSettings)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    """Where each setting's value came from, by dotted key (for messages)."""
    secret_keys: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    """Dotted keys whose value was decrypted: never shown in messages."""
    values: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """Every validated value by dotted key (``SCHEMA``'s keys): for diffs."""
    app: Any = field(default=None, repr=False)
    """The application's own settings (rqa_otel.config.application.AppConfig):
    every top-level key of the files that rqa-otel does not own, and ``RQA_APP__*``."""
    app_values: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The application's settings by dotted key (leaves only): for diffs."""

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
        if key in self.app_values:
            return self.app_values[key]
        found = {k: v for k, v in self.values.items() if k.startswith(key + ".")}
        if not found:
            found = {k: v for k, v in self.app_values.items() if k.startswith(key + ".")}
        if not found:
            raise KeyError(key)
        return found


"""The settings schema: one row per leaf setting, its parser and, where the
OpenTelemetry specification has one, the standard variable that feeds it.

A parser takes the raw value (from YAML, TOML, JSON, a variable or
``setup()``) and returns the validated one or raises ValueError saying what
is allowed; the loader (rqa_otel.config.loader) adds the setting's name and
where the value came from.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any, Callable, Mapping

from rqa_otel._util.private_files import parse_file_mode
from rqa_otel.config.model import (
    EXPORTERS,
    LOG_LEVELS,
    METRIC_EXPORTERS,
    OTLP_COMPRESSIONS,
    OTLP_PROTOCOLS,
    OTLP_SIGNAL_FIELDS,
    TEMPORALITY_PREFERENCES,
    SamplingRuleSettings,
)
from rqa_otel.config.quotas import Quota


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


def _otlp_endpoint(value: Any) -> str:
    """An OTLP endpoint, as the OTLP exporter specification allows: an
    http(s) URL, its port optional (then 80 or 443), or ``host:port``
    without a scheme (TLS unless ``export.otlp.insecure``)."""
    text = _string(value).strip()
    if not text:
        return text
    allowed = "expected a URL like http://host:4317 or https://host[:port][/path], or host:port (TLS unless insecure)"
    try:
        url = urllib.parse.urlsplit(text if "://" in text else "//" + text)
        port = url.port
    except ValueError:
        raise ValueError(allowed) from None
    if not url.hostname:
        raise ValueError(allowed)
    if "://" in text:
        if url.scheme not in ("http", "https"):
            raise ValueError(allowed)
    elif port is None or url.path not in ("", "/"):
        raise ValueError(allowed)
    return text


def exporter_list(allowed: tuple[str, ...]) -> Callable[[Any], str]:
    """One exporter or several, comma-separated or as a list
    (``otlp,console``): returned as one comma-joined string, ``none``
    dropped beside others."""

    def parse(value: Any) -> str:
        items = [item.strip().lower() for item in _strings(value)]
        unknown = [item for item in items if item not in allowed]
        if unknown or not items:
            raise ValueError(f"expected one or more of {', '.join(allowed)}, comma-separated")
        chosen = list(dict.fromkeys(item for item in items if item != "none"))
        return ",".join(chosen) or "none"

    return parse


def _inherit(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A per-signal setting: empty (or null) inherits the generic one."""

    def parse_or_inherit(value: Any) -> Any:
        if value is None or value == "" or value == {}:
            return None
        return parse(value)

    return parse_or_inherit


def _optional_count(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return _count(0)(value)


def _ratio(value: Any) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        number = float("nan")
    if not 0 <= number <= 1:
        raise ValueError("expected a number in [0, 1]")
    return number


SAMPLERS = (
    "always_on", "always_off", "traceidratio",
    "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio",
)
PROPAGATORS = ("tracecontext", "baggage", "b3", "b3multi", "jaeger", "xray", "ottrace", "none")
SDK_LOG_LEVELS = ("", "debug", "info", "warn", "warning", "error", "critical")


def _propagators(value: Any) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(item.strip().lower() for item in _strings(value)))
    unknown = [item for item in items if item not in PROPAGATORS]
    if unknown:
        raise ValueError(f"expected a comma-separated list of {', '.join(PROPAGATORS)}")
    return () if "none" in items else items


def pem_file(kind: str) -> Callable[[Any], str]:
    """A readable PEM file holding a ``kind`` (CERTIFICATE, PRIVATE KEY),
    or empty. Checked when the settings load, so a bad path fails setup()
    at once instead of the first export."""

    def parse(value: Any) -> str:
        path = _string(value).strip()
        if not path:
            return path
        try:
            with open(path, "rb") as file:
                data = file.read(1 << 20)
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
        if b"-----BEGIN " not in data or kind.encode() not in data:
            raise ValueError(f"{path} is not a PEM file holding a {kind} (no '-----BEGIN ...{kind}-----' line)")
        return path

    return parse


_OTLP_FIELD_PARSERS: dict[str, Callable[[Any], Any]] = {
    "endpoint": _otlp_endpoint,
    "protocol": _one_of(*OTLP_PROTOCOLS),
    "headers": lambda value: _string_map(value),
    "timeout_s": _positive_seconds,
    "compression": _one_of(*OTLP_COMPRESSIONS),
    "certificate": pem_file("CERTIFICATE"),
    "client_key": pem_file("PRIVATE KEY"),
    "client_certificate": pem_file("CERTIFICATE"),
    "insecure": lambda value: _boolean(value),
}
_OTLP_FIELD_VARIABLES = {
    "endpoint": "ENDPOINT", "protocol": "PROTOCOL", "headers": "HEADERS", "timeout_s": "TIMEOUT",
    "compression": "COMPRESSION", "certificate": "CERTIFICATE", "client_key": "CLIENT_KEY",
    "client_certificate": "CLIENT_CERTIFICATE", "insecure": "INSECURE",
}
SECURITY_KEYS = frozenset(
    f"export.otlp.{prefix}{name}"
    for prefix in ("", "traces.", "metrics.", "logs.")
    for name in ("certificate", "client_key", "client_certificate")
)
"""Settings whose bad value fails setup() even from an ``OTEL_*`` variable:
a security setting never falls back to a default silently."""


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


def _quotas(value: Any) -> dict[str, Quota]:
    if not isinstance(value, Mapping):
        raise ValueError("expected a mapping {strategy: {cpu_percent, memory_mib, gpu_memory_mib, max_workers}}")
    return {str(strategy): Quota.from_mapping(str(strategy), limits) for strategy, limits in value.items()}


SCHEMA: dict[str, tuple[Callable[[Any], Any], str | None]] = {
    "strategy": (_string, None),
    "service.name": (_string, "OTEL_SERVICE_NAME"),
    "service.environment": (_string, None),
    "service.instance_id": (_string, None),
    "resource_attributes": (_string_map, "OTEL_RESOURCE_ATTRIBUTES"),
    "export.traces": (exporter_list(EXPORTERS), "OTEL_TRACES_EXPORTER"),
    "export.metrics": (exporter_list(METRIC_EXPORTERS), "OTEL_METRICS_EXPORTER"),
    "export.logs": (exporter_list(EXPORTERS), "OTEL_LOGS_EXPORTER"),
    "export.directory": (_string, None),
    "export.metric_interval_s": (_positive_seconds, "OTEL_METRIC_EXPORT_INTERVAL"),
    "export.shutdown_timeout_s": (_positive_seconds, None),
    "export.file_mode": (parse_file_mode, None),
    # export.otlp.* and its per-signal overrides, as the OTLP exporter
    # specification's OTEL_EXPORTER_OTLP_[TRACES_|METRICS_|LOGS_]*.
    **{f"export.otlp.{name}": (parse, f"OTEL_EXPORTER_OTLP_{_OTLP_FIELD_VARIABLES[name]}")
       for name, parse in _OTLP_FIELD_PARSERS.items()},
    **{f"export.otlp.{signal}.{name}": (_inherit(_OTLP_FIELD_PARSERS[name]),
                                        f"OTEL_EXPORTER_OTLP_{signal.upper()}_{_OTLP_FIELD_VARIABLES[name]}")
       for signal in ("traces", "metrics", "logs") for name in OTLP_SIGNAL_FIELDS},
    "export.otlp.metrics_temporality": (
        _one_of(*TEMPORALITY_PREFERENCES), "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"
    ),
    "export.metric_timeout_s": (_positive_seconds, "OTEL_METRIC_EXPORT_TIMEOUT"),
    "export.span_batch.schedule_delay_s": (_positive_seconds, "OTEL_BSP_SCHEDULE_DELAY"),
    "export.span_batch.export_timeout_s": (_positive_seconds, "OTEL_BSP_EXPORT_TIMEOUT"),
    "export.span_batch.max_queue_size": (_count(1), "OTEL_BSP_MAX_QUEUE_SIZE"),
    "export.span_batch.max_export_batch_size": (_count(1), "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
    "export.prometheus.host": (_string, "OTEL_EXPORTER_PROMETHEUS_HOST"),
    "export.prometheus.port": (_port, "OTEL_EXPORTER_PROMETHEUS_PORT"),
    "sdk.traces_sampler": (_one_of(*SAMPLERS), "OTEL_TRACES_SAMPLER"),
    "sdk.traces_sampler_arg": (_ratio, "OTEL_TRACES_SAMPLER_ARG"),
    "sdk.propagators": (_propagators, "OTEL_PROPAGATORS"),
    "sdk.log_level": (_one_of(*SDK_LOG_LEVELS), "OTEL_LOG_LEVEL"),
    "sdk.metrics_exemplar_filter": (_one_of("trace_based", "always_on", "always_off"), "OTEL_METRICS_EXEMPLAR_FILTER"),
    **{f"sdk.limits.{name}": (_optional_count, variable) for name, variable in (
        ("attribute_value_length", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"),
        ("attribute_count", "OTEL_ATTRIBUTE_COUNT_LIMIT"),
        ("span_attribute_value_length", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT"),
        ("span_attribute_count", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT"),
        ("span_event_count", "OTEL_SPAN_EVENT_COUNT_LIMIT"),
        ("span_link_count", "OTEL_SPAN_LINK_COUNT_LIMIT"),
        ("event_attribute_count", "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT"),
        ("link_attribute_count", "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT"),
        ("log_record_attribute_value_length", "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT"),
        ("log_record_attribute_count", "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT"),
    )},
    "export.spool.enabled": (_boolean, None),
    "export.spool.directory": (_string, None),
    "export.spool.max_bytes": (_count(1), None),
    "export.spool.send_budget_s": (_positive_seconds, None),
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
    "export.influxdb.metric_resource_exclude": (_dimensions, None),
    "export.influxdb.metric_temporality": (_one_of("delta", "cumulative"), None),
    "export.influxdb.series_limit": (_count(0), None),
    "export.influxdb.metric_exclude": (_dimensions, None),
    "logging.capture": (_boolean, None),
    "logging.level": (_level, None),
    "logging.queue_size": (_count(1), "OTEL_BLRP_MAX_QUEUE_SIZE"),
    "logging.max_wait_s": (_non_negative_seconds, None),
    "logging.batch_size": (_count(1), "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE"),
    "logging.flush_interval_s": (_positive_seconds, "OTEL_BLRP_SCHEDULE_DELAY"),
    "logging.export_timeout_s": (_positive_seconds, "OTEL_BLRP_EXPORT_TIMEOUT"),
    "logging.console": (_boolean, None),
    "logging.file": (_string, None),
    "logging.file_format": (_one_of("text", "json"), None),
    "logging.code_attributes": (_boolean, None),
    "logging.sampling.rules": (_sampling_rules, None),
    "logging.sampling.summary_interval_s": (_positive_seconds, None),
    "rotation.max_bytes": (_count(0), None),
    "rotation.backup_count": (_count(0), None),
    "rotation.compress": (_boolean, None),
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
    "instrumentation.backtrader.orders": (_one_of("fills", "all", "none"), None),
    "instrumentation.backtrader.fill_order_events": (_boolean, None),
    "run.quiet": (_boolean, None),
}
MAP_KEYS = frozenset(
    {"resource_attributes", "export.otlp.headers", "quotas"}
    | {f"export.otlp.{signal}.headers" for signal in ("traces", "metrics", "logs")}
)
"""Settings whose value is a mapping with keys of the user's choosing (kept
as one value, their keys keep their case)."""
SECTIONS = frozenset(key.split(".")[0] for key in SCHEMA)
"""The top-level names the schema owns."""


def parse_key_value_list(text: str) -> dict[str, str]:
    """Parse the OTel ``key1=value1,key2=value2`` format (values percent-encoded)."""
    result: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value pairs separated by commas, got {item!r}")
        result[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return result


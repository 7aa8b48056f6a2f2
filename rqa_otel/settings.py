"""Deprecated path: the settings now live in ``rqa_otel.config``.

- ``rqa_otel.config.model``: ``Settings`` and every ``*Settings`` dataclass,
  ``SettingsError`` and the constants (``EXPORTERS``, ``DEFAULTS_FILE``…);
- ``rqa_otel.config.schema``: ``SCHEMA`` and ``parse_key_value_list``;
- ``rqa_otel.config.loader``: ``load_settings``, ``load_layers``, ``Loaded``,
  ``parse_file``, ``layer_files``, ``content_fingerprint``;
- ``rqa_otel.config.environment``: the ``OTEL_*`` and ``RQA_*`` variables;
- ``rqa_otel.config.quotas``: ``Quota``.

This module re-exports what it used to define, so old imports keep working.
``FileSettings`` is the old name of ``RotationSettings`` (``files.*`` is now
``rotation.*``).
"""

from rqa_otel.config.loader import Loaded, content_fingerprint, layer_files, load_layers, load_settings, parse_file
from rqa_otel.config.model import (
    DEFAULTS_FILE,
    ENV_PREFIX,
    EXPORTERS,
    LOG_LEVELS,
    OTLP_PROTOCOLS,
    SETTINGS_FILE_VARIABLE,
    AgentSettings,
    BreakerSettings,
    ConfigSettings,
    ErrorSettings,
    ExportSettings,
    InfluxSettings,
    LoggingSettings,
    OpsSettings,
    OtlpSettings,
    RegistrySettings,
    ResourceSettings,
    RetrySettings,
    RotationSettings,
    SamplingRuleSettings,
    ScrubSettings,
    ServiceSettings,
    Settings,
    SettingsError,
    SpoolSettings,
)
from rqa_otel.config.schema import SCHEMA, parse_key_value_list

FileSettings = RotationSettings

__all__ = [
    "DEFAULTS_FILE",
    "ENV_PREFIX",
    "EXPORTERS",
    "LOG_LEVELS",
    "OTLP_PROTOCOLS",
    "SCHEMA",
    "SETTINGS_FILE_VARIABLE",
    "AgentSettings",
    "BreakerSettings",
    "ConfigSettings",
    "ErrorSettings",
    "ExportSettings",
    "FileSettings",
    "InfluxSettings",
    "Loaded",
    "LoggingSettings",
    "OpsSettings",
    "OtlpSettings",
    "RegistrySettings",
    "ResourceSettings",
    "RetrySettings",
    "RotationSettings",
    "SamplingRuleSettings",
    "ScrubSettings",
    "ServiceSettings",
    "Settings",
    "SettingsError",
    "SpoolSettings",
    "content_fingerprint",
    "layer_files",
    "load_layers",
    "load_settings",
    "parse_file",
    "parse_key_value_list",
]

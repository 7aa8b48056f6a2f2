"""Settings layers and the errors a user sees for bad values."""

from __future__ import annotations

import logging
import warnings

import pytest

from rqa_otel.config.loader import load_settings
from rqa_otel.config.model import SettingsError


def test_packaged_defaults_send_everything_to_local_files():
    settings = load_settings(environ={})
    assert (settings.export.traces, settings.export.metrics, settings.export.logs) == ("file", "file", "file")
    assert settings.export.directory == "./rqa-telemetry"
    assert settings.service.name == "rqa-strategy"


def test_layers_apply_in_documented_order(tmp_path, monkeypatch):
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(
        "service:\n  name: from-file\n  environment: staging\nexport:\n  traces: console\n  metrics: console\n"
    )
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-otel")  # beats the file
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")  # beaten by RQA_*
    monkeypatch.setenv("RQA_EXPORT__TRACES", "otlp")
    monkeypatch.setenv("RQA_EXPORT__LOGS", "none")  # beaten by the argument
    settings = load_settings(settings_file, overrides={"export.logs": "console"})

    assert settings.service.name == "from-otel"
    assert settings.service.environment == "staging"  # file beats defaults
    assert settings.export.traces == "otlp"
    assert settings.export.metrics == "console"
    assert settings.export.logs == "console"


def test_settings_file_from_environment_variable(tmp_path, monkeypatch):
    settings_file = tmp_path / "rqa.toml"
    settings_file.write_text('strategy = "alpha"\n')
    monkeypatch.setenv("RQA_SETTINGS_FILE", str(settings_file))
    assert load_settings().strategy == "alpha"


def test_standard_otel_variables_are_honoured(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s%3Dcret,tenant=quant")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "2500")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,team=alpha")
    settings = load_settings()
    assert settings.export.otlp.endpoint == "http://collector:4318"
    assert settings.export.otlp.protocol == "http/protobuf"
    assert settings.export.otlp.headers == {"api-key": "s=cret", "tenant": "quant"}
    assert settings.export.metric_interval_s == 2.5
    assert settings.service.name == "from-attrs"
    assert settings.resource_attributes["team"] == "alpha"


def test_otel_sdk_disabled_turns_every_exporter_off(monkeypatch):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    settings = load_settings()
    assert (settings.export.traces, settings.export.metrics, settings.export.logs) == ("none", "none", "none")


def test_unknown_exporter_names_setting_value_and_choices():
    with pytest.raises(SettingsError) as error:
        load_settings(overrides={"export": {"traces": "jaeger"}}, environ={})
    message = str(error.value)
    assert "export.traces" in message and "'jaeger'" in message
    assert "otlp, console, file, none" in message and "setup() argument" in message


def test_malformed_endpoint_is_rejected_with_what_is_allowed():
    with pytest.raises(SettingsError) as error:
        load_settings(overrides={"export.otlp.endpoint": "ftp://localhost:4317"}, environ={})
    assert "export.otlp.endpoint = 'ftp://localhost:4317'" in str(error.value)
    assert "http://host:4317" in str(error.value)


def test_bad_environment_value_names_the_variable(monkeypatch):
    """RQA_* variables are the project's own contract: strict. (A bad
    standard OTEL_* value warns instead: tests/test_otel_environment.py.)"""
    monkeypatch.setenv("RQA_EXPORT__SHUTDOWN_TIMEOUT_S", "soon")
    with pytest.raises(SettingsError) as error:
        load_settings()
    message = str(error.value)
    assert "export.shutdown_timeout_s = 'soon' (from environment variable RQA_EXPORT__SHUTDOWN_TIMEOUT_S)" in message
    assert "positive number of seconds" in message


def test_typo_in_settings_file_is_an_unknown_setting(tmp_path):
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("export:\n  tarces: otlp\n")
    with pytest.raises(SettingsError) as error:
        load_settings(settings_file, environ={})
    assert "unknown setting 'export.tarces'" in str(error.value)
    assert str(settings_file) in str(error.value)


def test_missing_settings_file_is_named():
    with pytest.raises(SettingsError, match="settings file '/nonexistent/rqa.yaml' does not exist"):
        load_settings("/nonexistent/rqa.yaml", environ={})


def test_broken_settings_file_is_named(tmp_path):
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("export: [unclosed\n")
    with pytest.raises(SettingsError) as error:
        load_settings(settings_file, environ={})
    assert str(settings_file) in str(error.value)


def test_variables_of_other_rqa_layers_are_ignored_but_typos_in_ours_fail(monkeypatch):
    monkeypatch.setenv("RQA_HOME", "/opt/rqa")
    assert load_settings().export.traces == "file"
    monkeypatch.setenv("RQA_EXPORT__TRACSE", "otlp")
    with pytest.raises(SettingsError, match="unknown setting 'export.tracse' .from environment variable RQA_EXPORT__TRACSE"):
        load_settings()


def test_misconfigured_sampling_rules_fail_with_the_rule_named():
    cases = [
        ([{"logger": "rqa.feed", "level": "WARNING", "ratio": 0.5}], "rule [0]: level 'WARNING' cannot be sampled"),
        ([{"logger": "a", "ratio": 0.5}, {"logger": "b", "ratio": 2}], "rule [1]: ratio = 2: expected a number in (0, 1]"),
        ([{"logger": "a"}], "rule [0]: give rate_per_s, ratio or both"),
        ([{"logger": "a", "rate": 5}], "rule [0]: unknown key(s) rate"),
        ([{"logger": "a", "rate_per_s": -1}], "rule [0]: rate_per_s = -1: expected a number > 0"),
    ]
    for rules, message in cases:
        with pytest.raises(SettingsError) as error:
            load_settings(overrides={"logging.sampling.rules": rules}, environ={})
        assert "logging.sampling.rules" in str(error.value) and message in str(error.value), str(error.value)


def test_sampling_rules_from_a_settings_file(tmp_path):
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(
        "logging:\n  sampling:\n    rules:\n      - {logger: rqa.feed, level: DEBUG, rate_per_s: 100, ratio: 0.1}\n"
    )
    [rule] = load_settings(settings_file, environ={}).logging.sampling_rules
    assert (rule.logger, rule.level, rule.rate_per_s, rule.ratio) == ("rqa.feed", "DEBUG", 100.0, 0.1)


def test_rotation_settings_from_a_file_and_the_environment(tmp_path, monkeypatch):
    defaults = load_settings(environ={}).rotation
    assert (defaults.max_bytes, defaults.backup_count, defaults.compress) == (104857600, 5, False)
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("rotation:\n  max_bytes: 1000\n  compress: true\n")
    monkeypatch.setenv("RQA_ROTATION__BACKUP_COUNT", "2")
    rotation = load_settings(settings_file).rotation
    assert (rotation.max_bytes, rotation.backup_count, rotation.compress) == (1000, 2, True)


def test_deprecated_files_section_in_a_settings_file_applies_to_rotation(tmp_path, caplog):
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("files:\n  max_bytes: 1000\n")
    with caplog.at_level(logging.WARNING, logger="rqa_otel.config"):
        settings = load_settings(settings_file, environ={})
        load_settings(settings_file, environ={})  # warned once, not on every (re)load
    assert settings.rotation.max_bytes == 1000
    assert settings.get("rotation.max_bytes") == 1000
    assert settings.sources["rotation.max_bytes"] == f"settings file {str(settings_file)!r}"
    warned = [record.getMessage() for record in caplog.records if "is deprecated" in record.getMessage()]
    assert warned == [f"setting files.max_bytes (from settings file {str(settings_file)!r}) is deprecated: use rotation.max_bytes"]


def test_deprecated_files_variable_applies_to_rotation(monkeypatch, caplog):
    monkeypatch.setenv("RQA_FILES__BACKUP_COUNT", "2")
    with caplog.at_level(logging.WARNING, logger="rqa_otel.config"):
        settings = load_settings()
    assert settings.rotation.backup_count == 2
    assert "setting files.backup_count (from environment variable RQA_FILES__BACKUP_COUNT) is deprecated: use " \
        "rotation.backup_count (RQA_ROTATION__BACKUP_COUNT)" in caplog.text


def test_deprecated_files_key_as_a_setup_argument_applies_to_rotation():
    assert load_settings(overrides={"files.compress": True}, environ={}).rotation.compress is True


def test_a_bad_value_under_the_deprecated_name_is_reported(tmp_path):
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("files:\n  max_bytes: lots\n")
    with pytest.raises(SettingsError, match="setting rotation.max_bytes = 'lots' .from settings file .*expected an integer >= 0"):
        load_settings(settings_file, environ={})


def test_old_and_new_rotation_key_in_one_layer_is_an_error_naming_both(tmp_path, monkeypatch):
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("files:\n  max_bytes: 1000\nrotation:\n  max_bytes: 2000\n")
    with pytest.raises(SettingsError, match="settings files.max_bytes and rotation.max_bytes are both given"):
        load_settings(settings_file, environ={})
    with pytest.raises(SettingsError, match="settings files.compress and rotation.compress are both given"):
        load_settings(environ={"RQA_FILES__COMPRESS": "true", "RQA_ROTATION__COMPRESS": "false"})
    monkeypatch.setenv("RQA_FILES__MAX_BYTES", "1")
    monkeypatch.setenv("RQA_ROTATION__MAX_BYTES", "2")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "RQA_FILES__MAX_BYTES" in str(error.value) and "RQA_ROTATION__MAX_BYTES" in str(error.value)


def test_old_and_new_rotation_keys_in_different_layers_follow_the_layer_order(tmp_path):
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("files:\n  max_bytes: 1000\n  backup_count: 3\n")
    rotation = load_settings(settings_file, environ={"RQA_ROTATION__MAX_BYTES": "2000"}).rotation
    assert (rotation.max_bytes, rotation.backup_count) == (2000, 3)


def test_settings_files_is_a_deprecated_alias_of_rotation():
    settings = load_settings(environ={})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert settings.files is settings.rotation
    assert [w.category for w in caught] == [DeprecationWarning]
    assert "Settings.rotation" in str(caught[0].message)


def test_old_settings_module_still_exports_its_names():
    import rqa_otel
    import rqa_otel.config
    from rqa_otel import settings as old
    from rqa_otel.config import loader, model, schema

    assert old.Settings is model.Settings is rqa_otel.Settings is rqa_otel.config.Settings
    assert old.SettingsError is model.SettingsError is rqa_otel.SettingsError
    assert old.load_settings is loader.load_settings is rqa_otel.load_settings
    assert old.SCHEMA is schema.SCHEMA and old.parse_key_value_list is schema.parse_key_value_list
    assert old.FileSettings is model.RotationSettings
    assert old.DEFAULTS_FILE.is_file() and old.DEFAULTS_FILE == model.DEFAULTS_FILE
    for name in old.__all__:
        assert getattr(old, name) is not None, name

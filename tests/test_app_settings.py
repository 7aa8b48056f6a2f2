"""The application's own settings: every top-level key rqa-otel does not own,
layered, decrypted, validated and hot-reloaded like rqa-otel's."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from rqa_otel.config import ConfigVault, LiveSettings, SettingsError, load_settings
from rqa_otel.config.loader import load_layers


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def test_application_keys_live_beside_rqa_otels_and_layer_the_same_way(tmp_path):
    main = write(tmp_path / "settings.yaml", "logging: {level: INFO}\ndata: {source: tushare, retries: 3}\nuniverse: [600519.SH]\n")
    write(tmp_path / "settings.local.yaml", "data: {retries: 5}\nRiskLimits: {MaxGross: 2.0}\n")
    settings = load_settings(main, environ={"RQA_APP__DATA__TIMEOUT_S": "2.5", "RQA_APP__NEW__FLAG": "true"})
    app = settings.app
    assert settings.logging.level == "INFO"
    assert (app.data.source, app.data.retries, app.data.timeout_s) == ("tushare", 5, 2.5)
    assert app["universe"] == ("600519.SH",)
    assert app.RiskLimits.MaxGross == 2.0  # file keys keep their case
    assert app.new.flag is True  # variables are typed as TOML
    assert app.get("data.source") == "tushare" and app.get("data.missing", "x") == "x"
    assert settings.sources["data.retries"].endswith("settings.local.yaml'")
    assert settings.sources["data.timeout_s"] == "environment variable RQA_APP__DATA__TIMEOUT_S"
    with pytest.raises(AttributeError, match="read-only"):
        app.data.source = "wind"


def test_an_application_variable_that_shadows_an_rqa_otel_key_is_refused_naming_both(tmp_path):
    main = write(tmp_path / "settings.yaml", "data: {source: tushare}\n")
    with pytest.raises(SettingsError) as error:
        load_settings(main, environ={"RQA_APP__LOGGING__LEVEL": "DEBUG"})
    message = str(error.value)
    assert "RQA_APP__LOGGING__LEVEL" in message and "'logging.level'" in message and "RQA_LOGGING__LEVEL" in message


def test_encrypted_application_values_are_decrypted_and_registered_as_secrets(tmp_path):
    key = Fernet.generate_key()
    envelope = ConfigVault((key,)).encrypt("tushare-token-123")
    main = write(tmp_path / "settings.yaml", f"data: {{source: tushare, token: '{envelope}'}}\n")
    loaded = load_layers(main, environ={"RQA_VAULT_KEYS": key.decode()})
    assert loaded.settings.app.data.token == "tushare-token-123"
    assert "tushare-token-123" in loaded.plaintexts  # the scrubber learns it
    with pytest.raises(SettingsError, match="no vault key"):
        load_layers(main, environ={})


def test_user_validation_with_a_callable_or_dynaconf_validators(tmp_path):
    from dynaconf import Validator

    main = write(tmp_path / "settings.yaml", "data: {source: tushare, retries: 3}\n")

    def check(app):
        if app["data"]["source"] not in ("tushare", "wind"):
            raise ValueError(f"data.source {app['data']['source']!r} is not tushare or wind")

    assert load_layers(main, environ={}, app_validators=check).settings.app.data.retries == 3
    write(main, "data: {source: yahoo, retries: 3}\n")
    with pytest.raises(SettingsError, match="data.source 'yahoo' is not tushare or wind"):
        load_layers(main, environ={}, app_validators=check)
    with pytest.raises(SettingsError, match="(?i)data.source"):
        load_layers(main, environ={}, app_validators=[Validator("data.source", is_in=["tushare", "wind"])])
    with pytest.raises(TypeError, match="dynaconf Validators"):
        load_layers(main, environ={}, app_validators=["not a validator"])


def test_hot_reload_swaps_application_settings_whole_and_keeps_the_last_good(tmp_path, caplog):
    main = write(tmp_path / "settings.yaml", "data: {source: tushare, retries: 3}\n")
    live = LiveSettings.from_layers(main, environ={}, app_validators=lambda app: None if app["data"]["retries"] < 10 else ["too many retries"])
    seen = []
    live.on_change("data.retries", lambda key, old, new: seen.append((key, old, new)))
    section = []
    live.on_change("data", lambda key, old, new: section.append((old, new)))
    before = live.current
    write(main, "data: {source: tushare, retries: 4}\n")
    result = live.reload()
    assert result.outcome == "changed" and result.changed == ("data.retries",)
    assert result.restart_required == ()  # the application reads its own settings live
    assert seen == [("data.retries", 3, 4)]
    assert section == [({"data.source": "tushare", "data.retries": 3}, {"data.source": "tushare", "data.retries": 4})]
    assert before.app.data.retries == 3 and live.current.app.data.retries == 4  # a snapshot never changes
    write(main, "data: {source: wind, retries: 99}\n")  # fails the user's validation
    with caplog.at_level(logging.WARNING, logger="rqa_otel.config"):
        result = live.reload()
    assert result.outcome == "failed" and "too many retries" in result.error
    assert (live.current.app.data.source, live.current.app.data.retries) == ("tushare", 4)  # nothing half-applied
    assert len(seen) == 1


def test_a_config_dir_takes_every_yaml_file_and_a_new_one_is_a_change(tmp_path):
    write(tmp_path / "settings.yaml", "data: {source: tushare}\n")
    write(tmp_path / "model.yml", "model: {lr: 0.01}\n")
    live = LiveSettings.from_layers(environ={}, config_dir=tmp_path)
    assert live.current.app.model.lr == 0.01
    assert live.reload_if_changed("poll") is None
    write(tmp_path / "other.yaml", "features: {window: 20}\n")
    result = live.reload_if_changed("poll")
    assert result is not None and result.outcome == "changed" and live.current.app.features.window == 20
    with pytest.raises(SettingsError, match="config_dir .*missing.* does not exist"):
        LiveSettings.from_layers(environ={}, config_dir=tmp_path / "missing")


def test_an_application_key_inside_an_rqa_otel_section_is_refused_naming_both(tmp_path):
    main = write(tmp_path / "settings.yaml", "logging: {level: INFO, format: '%(stock)s'}\n")
    with pytest.raises(SettingsError) as error:
        load_settings(main, environ={})
    message = str(error.value)
    assert "unknown setting 'logging.format'" in message and "'logging' is rqa-otel's" in message
    assert "logging.level" in message and "a top-level key of its own" in message


def test_setup_validates_the_application_settings_and_exposes_them(tmp_path):
    import rqa_otel

    main = write(tmp_path / "settings.yaml", f"export: {{directory: {tmp_path}}}\ndata: {{source: yahoo}}\n")

    def check(app):
        return [] if app.get("data", {}).get("source") in ("tushare", "wind") else ["data.source must be tushare or wind"]

    with pytest.raises(SettingsError, match="data.source must be tushare or wind"):
        rqa_otel.setup(main, set_global=False, app_validators=check)
    write(main, f"export: {{directory: {tmp_path}}}\ndata: {{source: wind}}\n")
    handle = rqa_otel.setup(main, set_global=False, app_validators=check)
    try:
        assert handle.settings.app.data.source == "wind"
    finally:
        handle.shutdown()

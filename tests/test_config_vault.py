"""Settings files in layers, the ConfigVault and its CLI, permission checks.

Real files with real modes; the tests run as root, so ownership is tested
with a file chowned to another uid.
"""

from __future__ import annotations

import io
import logging
import os

import pytest
from cryptography.fernet import Fernet

import rqa_otel
from rqa_otel.cli import main
from rqa_otel.config.loader import load_layers, load_settings
from rqa_otel.config.model import SettingsError
from rqa_otel.config.vault import ConfigVault, key_id
from otlp_files import items


def write(path, text, mode=0o600):
    path.write_text(text)
    os.chmod(path, mode)
    return path


@pytest.fixture
def keys(monkeypatch):
    primary, older = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("RQA_VAULT_KEYS", f"{primary},{older}")
    return ConfigVault((primary.encode(), older.encode())), ConfigVault((older.encode(),))


def test_files_layer_in_documented_order_under_rqa_variables(tmp_path, monkeypatch):
    main_file = write(tmp_path / "settings.yaml", "strategy: main\nservice:\n  name: main\n  environment: prod\n"
                      "export:\n  directory: main\n  logs: console\n  traces: console\n")
    write(tmp_path / "settings.prod.yaml", "service:\n  name: prod\nexport:\n  directory: prod\n  logs: none\n")
    write(tmp_path / "settings.staging.yaml", "strategy: never-read\n")
    write(tmp_path / "settings.local.yaml", "export:\n  directory: local\n  logs: file\n")
    write(tmp_path / ".secrets.yaml", "export:\n  logs: otlp\n")
    monkeypatch.setenv("RQA_EXPORT__LOGS", "none")
    settings = load_settings(main_file)
    assert settings.strategy == "main"  # settings.yaml over the defaults
    assert settings.service.name == "prod"  # settings.{env}.yaml over settings.yaml
    assert settings.export.directory == "local"  # settings.local.yaml over settings.prod.yaml
    assert settings.export.traces == "console"
    assert settings.export.logs == "none"  # RQA_* over .secrets.yaml over the rest
    assert "settings.local.yaml" in settings.sources["export.directory"]


def test_a_bad_value_names_key_file_and_expected_type(tmp_path):
    main_file = write(tmp_path / "settings.yaml", "strategy: a\n")
    write(tmp_path / "settings.local.yaml", "logging:\n  queue_size: lots\n")
    with pytest.raises(SettingsError) as error:
        load_settings(main_file, environ={})
    message = str(error.value)
    assert "logging.queue_size = 'lots'" in message
    assert str(tmp_path / "settings.local.yaml") in message
    assert "expected an integer >= 1" in message


def test_malformed_yaml_and_emptied_sections_name_the_file(tmp_path):
    main_file = write(tmp_path / "settings.yaml", "strategy: [unclosed\n")
    with pytest.raises(SettingsError, match="settings.yaml"):
        load_settings(main_file, environ={})
    write(main_file, "logging:\n")
    with pytest.raises(SettingsError, match=r"section 'logging' in settings file .*settings.yaml.* is empty"):
        load_settings(main_file, environ={})


def test_encrypted_values_are_decrypted_once_at_load(tmp_path, keys):
    vault, _ = keys
    envelope = vault.encrypt("s3cret-api-key")
    assert envelope.startswith(f"ENC[v1:fernet:{vault.primary_id}:")
    main_file = write(tmp_path / "settings.yaml", "strategy: a\n")
    write(tmp_path / ".secrets.yaml", f"export:\n  otlp:\n    headers:\n      api-key: {envelope}\n")
    loaded = load_layers(main_file)
    assert loaded.settings.export.otlp.headers == {"api-key": "s3cret-api-key"}
    assert loaded.settings.secret_keys == {"export.otlp.headers"}
    assert loaded.plaintexts == ("s3cret-api-key",)


def test_undecryptable_values_fail_closed(tmp_path, keys, monkeypatch):
    vault, other = keys
    main_file = write(tmp_path / "settings.yaml", f"strategy: {other.encrypt('x')}\n")
    monkeypatch.setenv("RQA_VAULT_KEYS", Fernet.generate_key().decode())
    with pytest.raises(SettingsError) as error:
        load_settings(main_file)
    assert "setting strategy" in str(error.value) and "settings.yaml" in str(error.value)
    assert "not among the loaded keys" in str(error.value)
    monkeypatch.setenv("RQA_VAULT_KEYS", vault.keys[0].decode())
    tampered = vault.encrypt("x")[:-6] + "AAAA=]"
    write(main_file, f"strategy: {tampered}\n")
    with pytest.raises(SettingsError, match="cannot be decrypted"):
        load_settings(main_file)
    monkeypatch.delenv("RQA_VAULT_KEYS")
    with pytest.raises(SettingsError, match="no vault key is set"):
        load_settings(main_file)


def test_decrypted_values_never_reach_telemetry(tmp_path, keys):
    vault, _ = keys
    main_file = write(
        tmp_path / "settings.yaml",
        f"export:\n  directory: {tmp_path}\n  otlp:\n    headers:\n      api-key: {vault.encrypt('hunter2-broker')}\n",
    )
    telemetry = rqa_otel.setup(main_file, set_global=False)
    try:
        telemetry.get_logger("rqa.test").warning("logging in to the broker with hunter2-broker")
        telemetry.force_flush()
    finally:
        telemetry.shutdown()
    bodies = [record["body"]["stringValue"] for record in items(tmp_path / "logs.jsonl", "resourceLogs", "scopeLogs", "logRecords")]
    assert any("logging in to the broker with" in body for body in bodies)
    assert "hunter2-broker" not in (tmp_path / "logs.jsonl").read_text()


def test_secrets_and_key_files_others_can_read_are_refused(tmp_path, keys):
    main_file = write(tmp_path / "settings.yaml", "strategy: a\n")
    secrets = write(tmp_path / ".secrets.yaml", "strategy: b\n", mode=0o640)
    with pytest.raises(SettingsError) as error:
        load_settings(main_file, environ={})
    assert f"permissions 0640 for '{secrets}' are too open" in str(error.value)
    assert f"chmod 600 {secrets}" in str(error.value)
    os.chmod(secrets, 0o600)
    assert load_settings(main_file, environ={}).strategy == "b"

    key_file = write(tmp_path / "vault.key", Fernet.generate_key().decode() + "\n", mode=0o604)
    environ = {"RQA_VAULT_KEY_FILE": str(key_file)}
    with pytest.raises(Exception, match=r"permissions 0604 .* chmod 600"):
        ConfigVault.from_environment(environ)
    os.chmod(key_file, 0o600)
    assert ConfigVault.from_environment(environ) is not None


def test_a_secrets_file_owned_by_another_user_is_refused(tmp_path):
    main_file = write(tmp_path / "settings.yaml", "strategy: a\n")
    secrets = write(tmp_path / ".secrets.yaml", "strategy: b\n")
    os.chown(secrets, 12345, -1)
    with pytest.raises(SettingsError, match=rf"owned by uid 12345, not by uid {os.geteuid()}"):
        load_settings(main_file, environ={})


def test_the_check_is_on_the_file_opened_through_a_symlink(tmp_path):
    """Kubernetes mounts are symlinks: what counts is the file actually opened."""
    private = write(tmp_path / "private.yaml", "strategy: b\n")
    public = write(tmp_path / "public.yaml", "strategy: c\n", mode=0o644)
    main_file = write(tmp_path / "settings.yaml", "strategy: a\n")
    (tmp_path / ".secrets.yaml").symlink_to(private)
    assert load_settings(main_file, environ={}).strategy == "b"
    (tmp_path / ".secrets.yaml").unlink()
    (tmp_path / ".secrets.yaml").symlink_to(public)
    with pytest.raises(SettingsError, match=rf"0644 for '{tmp_path}/.secrets.yaml'"):
        load_settings(main_file, environ={})


def test_plain_settings_files_others_can_read_get_a_warning(tmp_path, caplog):
    main_file = write(tmp_path / "settings.yaml", "strategy: a\n", mode=0o664)
    with caplog.at_level(logging.WARNING, logger="rqa_otel.config"):
        assert load_settings(main_file, environ={}).strategy == "a"
    assert f"permissions 0664 for '{main_file}' are too open" in caplog.text


def vault_cli(monkeypatch, capsys, *argv, stdin=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["vault", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_vault_cli_round_trips_and_rotates_keys(tmp_path, monkeypatch, capsys):
    key_file = tmp_path / "vault.key"
    monkeypatch.setenv("RQA_VAULT_KEY_FILE", str(key_file))
    monkeypatch.delenv("RQA_VAULT_KEYS", raising=False)
    assert vault_cli(monkeypatch, capsys, "keygen", "--key-file", str(key_file))[0] == 0
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    first = key_file.read_text().split()[0]

    code, snippet, _ = vault_cli(monkeypatch, capsys, "encrypt", "--path", "export.otlp.headers.api-key", stdin="tok-123\n")
    assert code == 0 and "tok-123" not in snippet
    secrets = write(tmp_path / ".secrets.yaml", "# the collector's key\n" + snippet)
    code, out, _ = vault_cli(monkeypatch, capsys, "decrypt", str(secrets))
    assert (code, out) == (0, "export.otlp.headers.api-key: tok-123\n")

    assert vault_cli(monkeypatch, capsys, "keygen", "--key-file", str(key_file))[0] == 0
    second = key_file.read_text().split()[0]
    assert key_file.read_text().split() == [second, first]
    code, out, _ = vault_cli(monkeypatch, capsys, "verify", str(secrets))
    assert code == 0 and "1 under an older key" in out
    assert vault_cli(monkeypatch, capsys, "rotate", "--in-place", str(secrets))[0] == 0
    assert secrets.read_text().startswith("# the collector's key\n")  # comments kept
    assert f"ENC[v1:fernet:{key_id(second)}:" in secrets.read_text()
    assert oct(secrets.stat().st_mode & 0o777) == "0o600"

    key_file.write_text(second + "\n")  # the old key retired
    code, out, _ = vault_cli(monkeypatch, capsys, "verify", str(secrets))
    assert code == 0 and "older key" not in out
    main_file = write(tmp_path / "settings.yaml", "strategy: a\n")
    assert load_settings(main_file).export.otlp.headers == {"api-key": "tok-123"}


def test_vault_encrypt_never_takes_the_value_from_argv(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["vault", "encrypt", "--path", "a.b", "s3cret"])
    assert exit_.value.code == 2


def test_errors_about_a_secrets_file_never_quote_its_values(tmp_path):
    main_file = write(tmp_path / "settings.yaml", "strategy: a\n")
    secrets = write(tmp_path / ".secrets.yaml", "logging:\n  queue_size: pw-Zq81x\n")
    with pytest.raises(SettingsError) as error:
        load_settings(main_file, environ={})
    assert "logging.queue_size = [REDACTED]" in str(error.value) and "pw-Zq81x" not in str(error.value)
    write(secrets, "export:\n  otlp:\n    headers: {api-key: pw-Zq81x\n")
    with pytest.raises(SettingsError) as error:
        load_settings(main_file, environ={})
    assert "malformed YAML at line" in str(error.value) and "pw-Zq81x" not in str(error.value)

"""Every CLI error is one line and a non-zero exit, never a traceback; setup()
raises SettingsError for settings and permission problems (issue 14, item 8).

Before: ``rqa-otel vault verify`` with a 0644 key file, or a directory as the
key file, printed a 19-line traceback; setup() raised UnsafePermissions, a
PermissionError, where docs/settings.md promises SettingsError.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import rqa_otel
from rqa_otel.config import SettingsError, UnsafePermissions

REPO = Path(__file__).resolve().parent.parent
KEY = "x3Qd8cO3pXUQ9a6o8YpBqIh1sSgkQvD4m5u8vZ8N1yI="  # a valid Fernet key (32 bytes, url-safe base64)


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rqa_otel.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "key644").write_text(KEY + "\n")
    (tmp_path / "key644").chmod(0o644)
    (tmp_path / "keydir").mkdir()
    (tmp_path / "settings.yaml").write_text("service:\n  name: ENC[v1:fernet:abcd:efgh]\n")
    (tmp_path / "run777").mkdir()
    (tmp_path / "run777").chmod(0o777)
    return tmp_path


CASES = {
    "vault verify, key file 0644": (("vault", "verify", "settings.yaml"), {"RQA_VAULT_KEY_FILE": "key644"}, "chmod 600"),
    "vault verify, key file a directory": (("vault", "verify", "settings.yaml"), {"RQA_VAULT_KEY_FILE": "keydir"}, "Is a directory"),
    "vault decrypt, key file 0644": (("vault", "decrypt", "settings.yaml"), {"RQA_VAULT_KEY_FILE": "key644"}, "too open"),
    "vault keygen into a directory": (("vault", "keygen", "--key-file", "keydir"), {}, "Is a directory"),
    "vault keygen, no such directory": (("vault", "keygen", "--key-file", "missing/k"), {}, "No such file"),
    "agent, run directory 0777": (("agent", "--run-dir", "run777"), {}, "Fix: chmod 700"),
    "lp, a directory": (("lp", "keydir"), {}, "Is a directory"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cli_errors_are_one_clear_line_and_a_non_zero_exit(files, case):
    args, env, says = CASES[case]
    done = cli(*args, cwd=files, **env)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert says in done.stderr
    errors = [line for line in done.stderr.splitlines() if not line.startswith("rqa-otel lp: ")]
    assert len(errors) == 1, done.stderr


def test_setup_raises_a_settings_error_for_a_secrets_file_open_to_others(tmp_path):
    secrets = tmp_path / ".secrets.yaml"
    secrets.write_text("export:\n  influxdb:\n    token: t0ken\n")
    secrets.chmod(0o644)
    settings = tmp_path / "settings.yaml"
    settings.write_text("service:\n  name: svc\n")
    settings.chmod(0o600)
    with pytest.raises(SettingsError, match="chmod 600") as caught:
        rqa_otel.setup(settings, set_global=False, overrides={"export.directory": str(tmp_path)})
    assert isinstance(caught.value, UnsafePermissions) and isinstance(caught.value, PermissionError)


def test_setup_raises_a_settings_error_for_a_vault_key_file_open_to_others_or_a_directory(tmp_path, monkeypatch):
    settings = tmp_path / "settings.yaml"
    settings.write_text("service:\n  name: ENC[v1:fernet:abcd:efgh]\n")
    settings.chmod(0o600)
    for key_file, says in ((tmp_path / "key644", "too open"), (tmp_path / "keydir", "Is a directory")):
        if key_file.name == "keydir":
            key_file.mkdir()
        else:
            key_file.write_text(KEY + "\n")
            key_file.chmod(0o644)
        monkeypatch.setenv("RQA_VAULT_KEY_FILE", str(key_file))
        with pytest.raises(SettingsError, match=says):
            rqa_otel.setup(settings, set_global=False, overrides={"export.directory": str(tmp_path)})

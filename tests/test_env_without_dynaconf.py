"""RQA_* variables of the usual kind are read without importing dynaconf,
into the very tree dynaconf gives; anything unusual is still dynaconf's."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest

from rqa_otel.config.environment import _plain_tree, dynaconf_tree, rqa_environment

PLAIN = {
    "RQA_EXPORT__DIRECTORY": "/tmp/telemetry dir",
    "RQA_RUN__QUIET": "True",
    "RQA_LOGGING__LEVEL": "info",
    "RQA_EXPORT__SHUTDOWN_TIMEOUT_S": "2.5",
    "RQA_EXPORT__BATCH__MAX_SIZE": "512",
    "RQA_EXPORT__TRACES": "[\"file\", \"otlp\"]",
    "RQA_SERVICE": "{name = \"svc\", Version = \"1\"}",
    "RQA_TRADING__EMPTY": "",
    "RQA_TRADING__QUOTED": "'single'",
    "RQA_TRADING__DAY": "2024-01-02",
    "RQA_TRADING__HEX": "0x10",
    "RQA_TRADING__BROKEN": "[1, 2",
    "RQA_TRADING__FALSE": " False ",
    "RQA_TRADING__REL": " ./relative dir",
    "RQA_TRADING__TABBED": "\tword",
    "RQA_TRADING__INF": "-inf",
    "RQA_TRADING__INF_PLUS": "+inf",
    "RQA_TRADING__NOT_NAN": "n/a",
    "RQA_TRADING__NEGATIVE": "-3",
    "RQA_TRADING__TRUE_SPACED": "true ",
    "RQA_TRADING__WORD": "information",
    "RQA_HOME": "/opt/rqa2025",
    "RQA_SETTINGS_FILE": "/nonexistent/settings.toml",  # the loader's, in neither tree
}


@pytest.fixture
def environ(monkeypatch):
    for name in list(os.environ):
        if name.upper().startswith(("RQA_", "DYNACONF_")) or name.upper().endswith("_FOR_DYNACONF"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_plain_variables_give_dynaconfs_tree(environ):
    for name, value in PLAIN.items():
        environ.setenv(name, value)
    assert _plain_tree(os.environ) is not None
    ours = rqa_environment(os.environ)
    assert ours == dynaconf_tree()
    assert "settings_file" not in ours
    assert ours["run"]["QUIET"] is True and ours["trading"]["DAY"] == dt.date(2024, 1, 2)
    assert ours["trading"]["BROKEN"] == "[1, 2" and ours["trading"]["FALSE"] is False
    assert ours["trading"]["REL"] == " ./relative dir" and ours["trading"]["NEGATIVE"] == -3


@pytest.mark.parametrize("name, value", [
    ("RQA_EXPORT__RETRIES", "@int 3"),  # a dynaconf converter
    ("RQA_EXPORT__OTLP__HEADERS__X_Key", "v"),  # a name in mixed case
    ("RQA_RESOURCE_ATTRIBUTES", "{Team = \"A\"}"),  # keys keep their case
    ("ENVIRONMENTS_FOR_DYNACONF", "true"),  # dynaconf's own
])
def test_anything_unusual_is_left_to_dynaconf(environ, name, value):
    environ.setenv("RQA_EXPORT__DIRECTORY", "/tmp/x")
    environ.setenv(name, value)
    assert _plain_tree(os.environ) is None
    assert rqa_environment(os.environ) == dynaconf_tree()


def test_a_start_with_plain_variables_does_not_import_dynaconf(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RQA_", "OTEL_"))}
    env.update(RQA_EXPORT__DIRECTORY=str(tmp_path / "t"), RQA_RUN__QUIET="true")
    code = ("import sys; from rqa_otel.config import load_settings; s = load_settings();"
            "print(s.export.directory, any(m.startswith('dynaconf') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.split() == [str(tmp_path / "t"), "False"], out.stderr

"""rqa-otel's version, as the telemetry's scope version, is read without
importing importlib.metadata, and is what importlib.metadata says."""

from __future__ import annotations

import importlib.metadata
import sys
import zipfile

import pytest

from rqa_otel._util.version import installed_version


@pytest.mark.parametrize("name", ["rqa-otel", "opentelemetry-sdk", "opentelemetry_api", "Backtrader"])
def test_the_version_importlib_metadata_finds(name):
    assert installed_version(name) == importlib.metadata.version(name)


def test_the_first_on_sys_path_wins_as_for_importlib_metadata(tmp_path, monkeypatch):
    info = tmp_path / "first" / "rqa_otel.egg-info"  # a source checkout's, before site-packages
    info.mkdir(parents=True)
    (info / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: rqa-otel\nVersion: 9.8.7\n\nVersion: 1\n")
    other = tmp_path / "second" / "Rqa.Otel-1.0.dist-info"
    other.mkdir(parents=True)
    (other / "METADATA").write_text("Name: rqa-otel\nVersion: 1.0\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "missing"), str(info.parent), str(other.parent), *sys.path])
    assert installed_version("rqa-otel") == importlib.metadata.version("rqa-otel") == "9.8.7"
    monkeypatch.setattr(sys, "path", [str(other.parent), *sys.path])
    assert installed_version("rqa-otel") == importlib.metadata.version("rqa-otel") == "1.0"


def test_what_it_cannot_read_is_left_to_importlib_metadata(tmp_path, monkeypatch):
    archive = tmp_path / "packages.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("rqa_otel-5.0.dist-info/METADATA", "Name: rqa-otel\nVersion: 5.0\n")
    monkeypatch.setattr(sys, "path", [str(archive), *sys.path])
    assert installed_version("rqa-otel") is None
    assert importlib.metadata.version("rqa-otel") == "5.0"
    assert installed_version("no-such-distribution") is None

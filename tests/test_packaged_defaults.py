"""The packaged defaults are read at start from default_settings.json, the
build-time copy of default_settings.yaml's parsed tree (no YAML parser at
start-up): the copy must say exactly what the YAML says."""

import json

from rqa_otel.config import loader, packaged_defaults
from rqa_otel.config.model import DEFAULTS_FILE, DEFAULTS_TREE_FILE


def test_the_committed_json_is_the_yaml_parsed():
    # Fails after an edit of default_settings.yaml until the copy is regenerated.
    assert DEFAULTS_TREE_FILE.read_text(encoding="utf-8") == packaged_defaults.generated_text(), (
        f"{DEFAULTS_TREE_FILE.name} differs from {DEFAULTS_FILE.name}; regenerate it with: "
        f"{packaged_defaults.REGENERATE}"
    )


def test_settings_start_from_the_yaml_tree():
    assert loader._packaged_defaults() == packaged_defaults.parsed_yaml()
    assert json.loads(DEFAULTS_TREE_FILE.read_bytes())["export"]["traces"] == "file"


def test_without_the_json_the_yaml_is_read(monkeypatch, tmp_path):
    monkeypatch.setattr(loader, "DEFAULTS_TREE_FILE", tmp_path / "absent.json")
    loader._packaged_defaults_cached.cache_clear()
    try:
        assert loader._packaged_defaults() == packaged_defaults.parsed_yaml()
    finally:
        loader._packaged_defaults_cached.cache_clear()

"""The packaged defaults are read at start from default_settings.json, the
build-time copy of default_settings.yaml's parsed tree (no YAML parser at
start-up): the copy must say exactly what the YAML says, and a stale copy
is never used."""

import json
import subprocess
import sys

from rqa_otel.config import loader, packaged_defaults
from rqa_otel.config.model import DEFAULTS_FILE, DEFAULTS_TREE_FILE


def test_the_committed_json_is_the_yaml_parsed():
    # Fails after an edit of default_settings.yaml until the copy is regenerated.
    assert DEFAULTS_TREE_FILE.read_text(encoding="utf-8") == packaged_defaults.generated_text(), (
        f"{DEFAULTS_TREE_FILE.name} differs from {DEFAULTS_FILE.name}; regenerate it with: "
        f"{packaged_defaults.REGENERATE}"
    )


def test_settings_start_from_the_yaml_tree_without_a_yaml_parser(tmp_path):
    assert loader._packaged_defaults() == packaged_defaults.parsed_yaml()
    code = "import sys; from rqa_otel.config import load_settings; load_settings(); print(sorted(m for m in sys.modules if 'ruamel' in m or 'yaml' in m))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path, env={
        k: v for k, v in __import__("os").environ.items() if not k.startswith(("RQA_", "OTEL_"))
    })
    assert done.stdout.strip() == "[]", done.stderr


def _use(monkeypatch, tmp_path, yaml_text: str, json_text: str | None) -> dict:
    yaml_file, json_file = tmp_path / "default_settings.yaml", tmp_path / "default_settings.json"
    yaml_file.write_text(yaml_text)
    if json_text is not None:
        json_file.write_text(json_text)
    monkeypatch.setattr(loader, "DEFAULTS_FILE", yaml_file)
    monkeypatch.setattr(loader, "DEFAULTS_TREE_FILE", json_file)
    loader._packaged_defaults_cached.cache_clear()
    try:
        return loader._packaged_defaults()
    finally:
        loader._packaged_defaults_cached.cache_clear()


def test_a_copy_made_from_another_yaml_or_missing_is_not_used(monkeypatch, tmp_path):
    yaml_text = "export:\n  traces: otlp\n"
    made_from_this = {"yaml_sha256": loader.yaml_digest(yaml_text.encode()), "defaults": {"export": {"traces": "file"}}}
    assert _use(monkeypatch, tmp_path, yaml_text, json.dumps(made_from_this)) == {"export": {"traces": "file"}}
    # The YAML was edited (or merged) since the copy was made: the YAML counts.
    stale = dict(made_from_this, yaml_sha256=loader.yaml_digest(b"an older file"))
    assert _use(monkeypatch, tmp_path, yaml_text, json.dumps(stale)) == {"export": {"traces": "otlp"}}
    assert _use(monkeypatch, tmp_path, yaml_text, None) == {"export": {"traces": "otlp"}}
    assert _use(monkeypatch, tmp_path, yaml_text, "{torn") == {"export": {"traces": "otlp"}}

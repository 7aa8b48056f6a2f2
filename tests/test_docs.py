"""Every name that leaves the process and every setting is documented."""

from __future__ import annotations

from pathlib import Path

from rqa_otel import names
from rqa_otel.config.schema import SCHEMA

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_emitted_name_is_in_docs_telemetry():
    text = (DOCS / "telemetry.md").read_text()
    emitted = {
        value
        for key, value in vars(names).items()
        if key.isupper() and isinstance(value, str)
    } | set(names.ALERT_SEVERITIES)
    missing = sorted(name for name in emitted if f"`{name}`" not in text)
    assert not missing, f"docs/telemetry.md does not document: {missing}"


def test_every_setting_is_in_docs_settings():
    text = (DOCS / "settings.md").read_text()
    missing = sorted(key for key in SCHEMA if f"`{key}`" not in text)
    assert not missing, f"docs/settings.md does not document: {missing}"

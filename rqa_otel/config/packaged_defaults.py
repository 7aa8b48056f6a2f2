"""The packaged defaults, read at every start without a YAML parser.

``rqa_otel/default_settings.yaml`` is the documented, human-readable source.
Its parsed tree is kept beside it as ``rqa_otel/default_settings.json``,
generated at build time and committed: reading that costs a json.loads,
where parsing the YAML costs dynaconf's vendored ruamel (~70 ms of every
start-up, import included). After editing the YAML, regenerate it with

    python -m rqa_otel.config.packaged_defaults

(tests/test_packaged_defaults.py fails, naming that command, while the two
differ). The JSON names the SHA-256 of the YAML it was made from; a start
that finds another YAML parses the YAML instead, so a stale copy costs
time, never a wrong default.
"""

from __future__ import annotations

import json
import sys

from rqa_otel.config.loader import parse_file, yaml_digest
from rqa_otel.config.model import DEFAULTS_FILE, DEFAULTS_TREE_FILE

REGENERATE = "python -m rqa_otel.config.packaged_defaults"


def parsed_yaml() -> dict:
    """The tree of the YAML source, parsed as any settings file is."""
    return parse_file(DEFAULTS_FILE, DEFAULTS_FILE.read_bytes())


def generated_text() -> str:
    tree = {"yaml_sha256": yaml_digest(DEFAULTS_FILE.read_bytes()), "defaults": parsed_yaml()}
    return json.dumps(tree, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    DEFAULTS_TREE_FILE.write_text(generated_text(), encoding="utf-8")
    print(f"wrote {DEFAULTS_TREE_FILE} from {DEFAULTS_FILE.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

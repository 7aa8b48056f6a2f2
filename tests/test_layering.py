"""The package's shape, as docs/architecture.md states it: import-linter's
contracts hold (one-way layers, no circles), no module reaches into another
module's private names, and no module grows past 800 lines."""

import ast
import pathlib
import shutil
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "rqa_otel"
MAX_LINES = 800


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_import_linter_contracts_hold():
    lint_imports = shutil.which("lint-imports", path=str(pathlib.Path(sys.executable).parent))
    if lint_imports is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    completed = subprocess.run(
        [lint_imports, "--no-cache"], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=120
    )
    report = completed.stdout.partition("Broken contracts")[2] or completed.stdout[-3000:]
    assert completed.returncode == 0, report + completed.stderr[-2000:]
    assert "0 broken" in completed.stdout


def test_no_module_imports_another_modules_private_names():
    crossings = []
    for path, tree in modules():
        importer = module_name(path)
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("rqa_otel"):
                continue
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and node.module != importer:
                    crossings.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.module}.{alias.name}")
    assert crossings == []


def test_no_module_is_over_800_lines():
    sizes = {
        str(path.relative_to(PACKAGE.parent)): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert {path: lines for path, lines in sizes.items() if lines > MAX_LINES} == {}

"""The public API: every name the documentation shows, the imports users rely
on, and the entry points pyproject.toml declares still resolve.

Names, not file paths: a module may move or split as long as the name users
import keeps working (the old paths stay as re-export modules)."""

from __future__ import annotations

import importlib
import re
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGE = ROOT / "rqa_otel"

# Dotted names the documentation shows that are not Python names, and what
# they are; each must still occur as a string literal in the package.
NOT_PYTHON_NAMES = {
    "rqa_otel.sampling": "the logger of the log sampler's summary records",
}

# `from rqa_otel.x import a, b` and `from rqa_otel.x import (a,\n b)`
FROM_IMPORT = re.compile(r"^\s*from\s+(rqa_otel(?:\.\w+)*)\s+import\s+(\([^)]*\)|[^\n#]+)", re.MULTILINE)
# `import rqa_otel`, `import rqa_otel.x as y, rqa_otel.z`
PLAIN_IMPORT = re.compile(r"^\s*import\s+(rqa_otel[^\n#]*)", re.MULTILINE)
# `rqa_otel.x.Name` anywhere, in text or code (not `rqa_otel/x.py`, a path)
DOTTED = re.compile(r"(?<![\w./])rqa_otel(?:\.[A-Za-z_]\w*)+")
FENCE = re.compile(r"^(```|~~~)")


def resolve(dotted: str) -> Any:
    """The object a dotted name means: submodules are imported, anything else
    is an attribute of what comes before it."""
    parts = dotted.split(".")
    found = importlib.import_module(parts[0])
    for index, part in enumerate(parts[1:], start=1):
        if hasattr(found, part):
            found = getattr(found, part)
            continue
        submodule = ".".join(parts[: index + 1])
        try:
            found = importlib.import_module(submodule)
        except ModuleNotFoundError as error:
            if error.name != submodule:
                raise  # the submodule exists but one of its imports is missing
            raise AttributeError(f"{'.'.join(parts[:index])} has no attribute or submodule {part!r}") from None
    return found


def code_blocks(text: str) -> Iterator[tuple[int, str]]:
    """(line number of the block's first line, block text) of each fenced block."""
    block: list[str] | None = None
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line.lstrip()):
            if block is None:
                block, start = [], number + 1
            else:
                yield start, "\n".join(block)
                block = None
        elif block is not None:
            block.append(line)


def documented_names(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every rqa_otel name ``path`` imports or mentions."""
    text = path.read_text()
    for start, block in code_blocks(text):
        for match in FROM_IMPORT.finditer(block):
            line = start + block.count("\n", 0, match.start())
            for name in match[2].strip("()").replace("\n", ",").split(","):
                name = name.split(" as ")[0].strip()
                if name:
                    yield line, f"{match[1]}.{name}"
        for match in PLAIN_IMPORT.finditer(block):
            line = start + block.count("\n", 0, match.start())
            for module in match[1].split(","):
                yield line, module.split(" as ")[0].strip()
    for number, line_text in enumerate(text.splitlines(), start=1):
        for match in DOTTED.finditer(line_text):
            yield number, match[0]


def package_string_literals() -> str:
    return "\n".join(path.read_text() for path in PACKAGE.rglob("*.py"))


def test_the_documents_show_names_to_check():
    found = {name for path in DOCUMENTS for _, name in documented_names(path)}
    assert "rqa_otel.setup" in found and "rqa_otel.trading.BacktestMonitor" in found, found


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_name_the_documentation_shows_resolves(document):
    failures = []
    for line, name in sorted(set(documented_names(document))):
        if name in NOT_PYTHON_NAMES:
            continue
        try:
            resolve(name)
        except (ImportError, AttributeError) as error:
            failures.append(f"{document.relative_to(ROOT)}:{line}: {name}: {type(error).__name__}: {error}")
    assert not failures, "documented names that do not resolve:\n" + "\n".join(failures)


@pytest.mark.parametrize("name", sorted(NOT_PYTHON_NAMES))
def test_documented_names_that_are_not_python_names_still_exist(name):
    assert re.search(rf"""["']{re.escape(name)}["']""", package_string_literals()), (
        f"{name} ({NOT_PYTHON_NAMES[name]}) is no longer used by the package: update the documentation"
    )


PUBLIC_NAMES = [
    "rqa_otel.setup",
    "rqa_otel.current",
    "rqa_otel.quant_context",
    "rqa_otel.instrument_backtrader",
    "rqa_otel.Telemetry",
    "rqa_otel.Settings",
    "rqa_otel.SettingsError",
    "rqa_otel.load_settings",
    "rqa_otel.__version__",
    "rqa_otel.trading.BacktestMonitor",
    "rqa_otel.trading_errors.TradingErrorHandler",
    "rqa_otel.trading_errors.RetryPolicy",
    "rqa_otel.trading_errors.OrderRejected",
    "rqa_otel.resources.quota.ResourceManager",
    "rqa_otel.resources.quota.QuotaExceeded",
    "rqa_otel.resources.quota.Quota",
    "rqa_otel.resources.ResourceSampler",
    "rqa_otel.resources.aggregate_by_strategy",
    "rqa_otel.influx.exporter.InfluxV2Transport",
    "rqa_otel.influx.exporter.InfluxV1Transport",
    "rqa_otel.influx.exporter.sdk_exporter",
    "rqa_otel.circuit_breaker.CircuitBreaker",
]

# Modules whose every ``__all__`` name is public.
PUBLIC_MODULES = ["rqa_otel", "rqa_otel.trading_errors", "rqa_otel.config"]


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_public_name_resolves(name):
    resolve(name)


def test_from_imports_users_write_work():
    # the statement form, not only attribute access: a package's __init__
    # must re-export the name, an attribute set by a submodule import elsewhere
    # would not do
    namespace: dict[str, Any] = {}
    exec(
        "from rqa_otel import setup, current, quant_context, instrument_backtrader, Telemetry, Settings, "
        "SettingsError, load_settings, __version__\n"
        "from rqa_otel.trading import BacktestMonitor\n"
        "from rqa_otel.resources.quota import ResourceManager, QuotaExceeded, Quota\n"
        "from rqa_otel.resources import ResourceSampler, aggregate_by_strategy\n"
        "from rqa_otel.influx.exporter import InfluxV2Transport, InfluxV1Transport, sdk_exporter\n"
        "from rqa_otel.circuit_breaker import CircuitBreaker\n",
        namespace,
    )
    assert isinstance(namespace["__version__"], str) and namespace["__version__"]


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_name_in_all_resolves(module):
    imported = importlib.import_module(module)
    assert imported.__all__, f"{module}.__all__ is empty"
    missing = [name for name in imported.__all__ if not hasattr(imported, name)]
    assert not missing, f"{module}.__all__ names what it does not have: {missing}"


def declared_entry_points() -> list[EntryPoint]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"console_scripts": project.get("scripts", {}), **project.get("entry-points", {})}
    return [EntryPoint(name, value, group) for group, entries in groups.items() for name, value in entries.items()]


def test_pyproject_declares_entry_points():
    groups = {entry_point.group for entry_point in declared_entry_points()}
    assert {"console_scripts", "opentelemetry_distro", "opentelemetry_configurator"} <= groups, groups


@pytest.mark.parametrize("entry_point", declared_entry_points(), ids=lambda e: f"{e.group}:{e.name}")
def test_entry_point_target_loads(entry_point):
    # EntryPoint.load() is what the console script and opentelemetry-instrument
    # run: import the module, then getattr down the attribute path
    assert callable(entry_point.load()), f"{entry_point.value} is not callable"

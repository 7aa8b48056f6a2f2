"""Deprecated setting names that still work: ``files.*`` is now
``rotation.*`` (it always meant the rotation of every file rqa-otel writes).

Each layer is renamed on its own, before layers merge: an old key's value
applies to the new key, with one warning per old key and source (logged to
``rqa_otel.config``, as the loader's other warnings are); one layer giving
both the old and the new key is a SettingsError naming both. Across layers
the usual precedence holds (``RQA_ROTATION__MAX_BYTES`` overrides
``files.max_bytes`` in a settings file).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Mapping

from rqa_otel.config.environment import rqa_variable
from rqa_otel.config.model import SettingsError

DEPRECATED_SECTIONS = {"files": "rotation"}
"""Old section name -> its new name."""

_log = logging.getLogger("rqa_otel.config")
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def rename_in_tree(tree: dict[str, Any], source: str) -> dict[str, Any]:
    """One file's tree with its deprecated sections renamed (top-level keys,
    any case, as the merge lower-cases them)."""
    for old_key in [key for key in tree if str(key).lower() in DEPRECATED_SECTIONS]:
        old, new = str(old_key).lower(), DEPRECATED_SECTIONS[str(old_key).lower()]
        old_value = tree.pop(old_key)
        new_key = next((key for key in tree if str(key).lower() == new), new)
        if new_key not in tree:
            tree[new_key] = old_value
            for name in _leaf_names(old_value):
                _warn_once(f"{old}{name}", f"{new}{name}", source)
            continue
        new_value = tree[new_key]
        if not (isinstance(old_value, Mapping) and isinstance(new_value, Mapping)):
            raise _both(old, new, source, source)
        both = sorted({str(k).lower() for k in old_value} & {str(k).lower() for k in new_value})
        if both:
            raise _both(f"{old}.{both[0]}", f"{new}.{both[0]}", source, source)
        tree[new_key] = {**new_value, **old_value}
        for name in _leaf_names(old_value):
            _warn_once(f"{old}{name}", f"{new}{name}", source)
    return tree


def rename_in_flat(flat: dict[str, Any], sources: dict[str, str]) -> None:
    """Rename deprecated dotted keys in place, in ``flat`` and in ``sources``
    (where each of those keys came from)."""
    for key in [key for key in flat if key.split(".")[0] in DEPRECATED_SECTIONS]:
        section, dot, rest = key.partition(".")
        new_key = DEPRECATED_SECTIONS[section] + dot + rest
        if new_key in flat:
            raise _both(key, new_key, sources[key], sources[new_key])
        flat[new_key] = flat.pop(key)
        sources[new_key] = sources.pop(key)
        _warn_once(key, new_key, sources[new_key])


def _leaf_names(value: Any) -> list[str]:
    """``.max_bytes``… for a section's mapping; "" for anything else."""
    if isinstance(value, Mapping) and value:
        return [f".{str(key).lower()}" for key in value]
    return [""]


def _both(old: str, new: str, old_source: str, new_source: str) -> SettingsError:
    where = f"both in {old_source}" if old_source == new_source else f"from {old_source} and {new_source}"
    return SettingsError(
        f"settings {old} and {new} are both given ({where}); {old} is the deprecated name of {new}: keep only {new}"
    )


def _warn_once(old: str, new: str, source: str) -> None:
    with _warned_lock:
        if (old, source) in _warned:
            return
        _warned.add((old, source))
    hint = f" ({rqa_variable(new)})" if source.startswith("environment variable") else ""
    _log.warning("setting %s (from %s) is deprecated: use %s%s", old, source, new, hint)

"""A distribution's version without importing importlib.metadata, which
imports email, zipfile, csv and more: ~8 ms of every start-up, for one
line of one file."""

from __future__ import annotations

import os
import re
import sys
from importlib.machinery import PathFinder


_own: str | None = None


def rqa_otel_version() -> str:
    """rqa-otel's installed version (``0+unknown`` in a source tree that is not installed)."""
    global _own
    if _own is None:
        found = installed_version("rqa-otel")
        if found is None:
            try:
                from importlib.metadata import version

                found = version("rqa-otel")
            except Exception:  # running from a source tree that is not installed
                found = "0+unknown"
        _own = found
    return _own


def _normalized(name: str) -> str:
    # importlib.metadata's Prepared.normalize
    return re.sub(r"[-_.]+", "-", name).lower().replace("-", "_")


def installed_version(name: str) -> str | None:
    """``importlib.metadata.version(name)`` for a distribution installed as
    a .dist-info or .egg-info directory on sys.path: the first one found,
    searched as importlib.metadata searches. None whenever it might be
    found otherwise (another finder of distributions, a zip or an .egg on
    sys.path, no such directory, no Version): the caller then asks
    importlib.metadata."""
    if any(hasattr(finder, "find_distributions") for finder in sys.meta_path if finder is not PathFinder):
        return None
    wanted = _normalized(name)
    for entry in sys.path:
        directory = entry or "."
        try:
            children = os.listdir(directory)
        except OSError:
            if os.path.exists(directory):
                return None  # a zip file: importlib.metadata reads it
            continue
        for child in children:
            low = child.lower()
            if low.endswith(".egg") and _normalized(low.partition("-")[0]) == wanted:
                return None
            if not low.endswith((".dist-info", ".egg-info")):
                continue
            if _normalized(low.rpartition(".")[0].partition("-")[0]) != wanted:
                continue
            return _version_field(os.path.join(directory, child))
    return None


def _version_field(info_directory: str) -> str | None:
    for file_name in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(info_directory, file_name), encoding="utf-8") as metadata:
                for line in metadata:
                    if not line.strip():
                        return None  # the end of the headers
                    key, colon, value = line.partition(":")
                    if colon and key == "Version":
                        return value.strip()
        except (OSError, UnicodeDecodeError):
            continue
        return None
    return None

"""The three ways a settings file gets saved, on real files (tests and bench)."""

from __future__ import annotations

import os
from pathlib import Path


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def rename_save(path: Path, text: str) -> None:
    """vim's way: a temporary file renamed over the target (no modified event on it)."""
    temporary = write(path.with_name(f".{path.name}.swp"), text)
    os.replace(temporary, path)


def in_place_save(path: Path, text: str) -> None:
    """Truncate and rewrite the same inode (many editors, `echo >`)."""
    with open(path, "w") as handle:
        handle.write(text)


def kubernetes_save(directory: Path, text: str, generation: str) -> None:
    """A ConfigMap volume: settings.yaml -> ..data/settings.yaml, ..data ->
    ..<generation>; an update writes a new generation and swaps ..data with
    one rename of a symlink, as the kubelet's atomic writer does."""
    target = directory / f"..{generation}"
    target.mkdir()
    write(target / "settings.yaml", text)
    link = directory / "..data_tmp"
    link.symlink_to(target.name)
    os.replace(link, directory / "..data")
    if not (directory / "settings.yaml").is_symlink():
        (directory / "settings.yaml").symlink_to("..data/settings.yaml")


SAVES = {
    "rename": lambda directory, text, generation: rename_save(directory / "settings.yaml", text),
    "inplace": lambda directory, text, generation: in_place_save(directory / "settings.yaml", text),
    "symlink": kubernetes_save,
}

"""File permission checks, on the opened descriptor (no check-then-open race).

As OpenSSH does for private keys: a file holding secrets (a vault key file,
``.secrets.yaml``) that is group- or world-accessible, or owned by someone
other than the user (or root), is refused, and the message names the path,
the octal mode and the fix. A plain settings file with such a mode is read,
with one warning per path and mode.
"""

from __future__ import annotations

import logging
import os
import stat
import threading

from rqa_otel.config.model import SettingsError

_log = logging.getLogger("rqa_otel.config")
_warned: set[tuple[str, int, int]] = set()
_warned_lock = threading.Lock()


class UnsafePermissions(SettingsError, PermissionError):
    """A secrets file is readable or writable by others, or not the user's.
    A SettingsError (what ``setup()`` promises to raise for settings and
    their files), and still a PermissionError for code that catches that."""


def problem(path: str, st: os.stat_result) -> str | None:
    """What is wrong with a file holding secrets, or None."""
    mode = stat.S_IMODE(st.st_mode)
    user = os.geteuid()
    if st.st_uid not in (user, 0):
        return (
            f"{path!r} is owned by uid {st.st_uid}, not by uid {user} (the user running rqa-otel) or root; "
            f"fix: chown {user} {path} && chmod 600 {path}"
        )
    if mode & 0o077:
        return (
            f"permissions {mode:04o} for {path!r} are too open: it must not be accessible by group or others; "
            f"fix: chmod 600 {path}"
        )
    return None


def read_checked(path: str | os.PathLike[str], secret: bool) -> bytes:
    """Read the whole file through one descriptor after checking that same
    descriptor with fstat. ``secret``: refuse (UnsafePermissions) instead of
    warning. Symbolic links are followed (Kubernetes mounts are made of them);
    what is checked is the file actually opened."""
    path = os.fspath(path)
    with open(path, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(f"{path!r} is not a regular file")
        found = problem(path, st)
        if found is not None:
            if secret:
                raise UnsafePermissions(f"refusing to read secrets from {found}")
            _warn_once(path, st, found)
        return handle.read()


def _warn_once(path: str, st: os.stat_result, found: str) -> None:
    key = (path, stat.S_IMODE(st.st_mode), st.st_uid)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    _log.warning("%s; a plain settings file is still read, but keep secrets in .secrets.yaml or ENC[...] values", found)

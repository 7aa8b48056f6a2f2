"""Files that hold trades, logs or telemetry: created readable by their
owner only (0600 in 0700 directories) unless a wider mode is configured
(``export.file_mode``, docs/settings.md).

The spool already kept its copy of the same data 0600 / 0700; a journal or
a log file beside it at 0644 in a 0755 directory gave it away to every
local user. Directories that already exist are not changed (they may be
shared: the working directory, /tmp); files rqa-otel opens and owns are
narrowed to the mode if they are wider (a file left by an older version).
"""

from __future__ import annotations

import os
import stat

__all__ = ["DEFAULT_FILE_MODE", "directory_mode", "make_directories", "narrow", "parse_file_mode"]

DEFAULT_FILE_MODE = 0o600


def parse_file_mode(value: object) -> int:
    """An octal mode as text ("0600", "640", "0o640") or an int; only
    read/write bits (no execute, setuid or sticky bits), owner read+write."""
    if isinstance(value, bool):
        raise ValueError("expected an octal file mode such as 0600 or 0640")
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip().lower().removeprefix("0o")
        try:
            mode = int(text, 8)
        except ValueError:
            raise ValueError(f"{value!r}: expected an octal file mode such as 0600 or 0640") from None
    if mode & ~0o666 or mode & 0o600 != 0o600:
        raise ValueError(f"{value!r}: expected read/write bits only, owner rw at least (0600 .. 0666)")
    return mode


def directory_mode(file_mode: int) -> int:
    """The directory mode that goes with ``file_mode``: 0700, plus r-x for
    the group or others who may read the files (0640 -> 0750)."""
    mode = 0o700
    for read, both in ((0o040, 0o050), (0o004, 0o005)):
        if file_mode & read:
            mode |= both
    return mode


def make_directories(path: str | os.PathLike[str], file_mode: int = DEFAULT_FILE_MODE) -> None:
    """``os.makedirs(path, exist_ok=True)``, every directory it creates with
    :func:`directory_mode` (os.makedirs gives the mode to the last one only)."""
    path = os.path.abspath(os.fspath(path))
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    mode = directory_mode(file_mode)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            continue  # another process made it meanwhile
        os.chmod(directory, mode)  # the umask may have taken bits the setting asks for


def narrow(fd: int, file_mode: int = DEFAULT_FILE_MODE) -> None:
    """Take away the bits of an open file beyond ``file_mode`` (a file left
    by an older version, or created under another umask); only for a
    regular file this process owns. Never widens."""
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & ~file_mode:
        os.fchmod(fd, stat.S_IMODE(st.st_mode) & file_mode)

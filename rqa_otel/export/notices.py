"""What export failures say on stderr: made safe to print, and rate-limited.

A receiver's answer is text a stranger wrote: printed raw, it could move the
cursor, clear the strategy's terminal or forge a line that looks like
rqa-otel's own ("rqa-otel: INFO ..."). :func:`printable` shortens it and
escapes every character that is not printable. An endpoint may carry
credentials (``http://user:PW@host``); :func:`without_url_credentials`
takes them out of any text before it is printed or stored.

A receiver that refuses everything would otherwise cost one stderr line per
batch (logs at full rate send a hundred a second). :class:`Notices` prints
the first line of a kind, then at most one summary per
``interval_s`` (a minute) with the count of those it held back.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from typing import Hashable

_log = logging.getLogger("rqa_otel.export")

_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s?#]*@")
"""``scheme://userinfo@``; greedy up to the last ``@`` before the path, so
that a password holding a raw ``@`` goes too."""

BODY_LIMIT = 200
"""Characters of a receiver's answer kept in messages and alerts."""


def without_url_credentials(text: str) -> str:
    """``text`` with the user info of every URL in it replaced by ``***``."""
    if "@" not in text:
        return text
    return _URL_USERINFO.sub(r"\1***@", text)


def printable(text: str, limit: int = BODY_LIMIT) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis says so), every
    non-printable character (newlines, ESC, other controls, Unicode line
    separators) escaped as ``\\xNN``/``\\uNNNN``, and URL credentials
    removed: safe on one line of a terminal or in an alert attribute."""
    cut = len(text) > limit
    text = text[:limit]
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else _escape(ch) for ch in text)
    return without_url_credentials(text) + ("..." if cut else "")


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class Notices:
    """Rate-limited warnings, by kind (any hashable key: what failed, where,
    which signal): the first of a kind is printed at once; later ones of
    that kind are counted, and at most one line per ``interval_s`` says how
    many there were, with the latest one's text."""

    def __init__(self, interval_s: float = 60.0) -> None:
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._kinds: dict[Hashable, list[float]] = {}  # key -> [last printed, held back]

    def warn(self, key: Hashable, message: str) -> bool:
        """Print ``message`` (made printable) now, or count it; True when printed."""
        now = time.monotonic()
        with self._lock:
            state = self._kinds.get(key)
            if state is None:
                self._kinds[key] = [now, 0]
                held = -1
            else:
                state[1] += 1
                if now - state[0] < self.interval_s:
                    return False
                held, since = int(state[1]), now - state[0]
                state[0], state[1] = now, 0
        text = printable(message, 1000)
        if held < 0:
            _log.warning("%s (more like this are counted; one summary a minute)", text)
        else:
            _log.warning("%d more like this in the last %.0f s; the latest: %s", held, since, text)
        return True


    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # another thread may have held it at fork()


NOTICES = Notices()
"""The process's one set of export notices."""
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=NOTICES._after_fork)

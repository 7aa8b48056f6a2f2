"""What a forked child must renew before it uses objects its parent made."""

from __future__ import annotations

import os
import threading
import weakref


def renew_lock_after_fork(owner: object) -> None:
    """Give ``owner`` a fresh ``_lock`` in a forked child: a lock that the
    metric export thread held at fork() would stay locked there forever."""
    if hasattr(os, "register_at_fork"):
        reference = weakref.ref(owner)

        def renew() -> None:
            instance = reference()
            if instance is not None:
                instance._lock = threading.Lock()  # type: ignore[attr-defined]

        os.register_at_fork(after_in_child=renew)

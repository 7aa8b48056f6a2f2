"""What a forked child must renew before it uses objects its parent made."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Callable, TypeVar

T = TypeVar("T")


def in_forked_child(owner: T, renew: Callable[[T], object]) -> None:
    """Call ``renew(owner)`` in every child forked while ``owner`` lives.
    ``owner`` is held weakly: registering never keeps it alive, and
    os.register_at_fork has no way to unregister."""
    if not hasattr(os, "register_at_fork"):
        return
    reference = weakref.ref(owner)

    def after_in_child() -> None:
        instance = reference()
        if instance is not None:
            renew(instance)

    os.register_at_fork(after_in_child=after_in_child)


def renew_lock_after_fork(owner: object) -> None:
    """Give ``owner`` a fresh ``_lock`` in a forked child: a lock that the
    metric export thread held at fork() would stay locked there forever."""

    def renew(instance: object) -> None:
        instance._lock = threading.Lock()  # type: ignore[attr-defined]

    in_forked_child(owner, renew)

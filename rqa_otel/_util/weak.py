"""Callbacks that do not keep their owner alive.

A capability that registers bound methods with a longer-lived object (the
settings' ``on_change``, a meter's observable gauge, a readiness check)
would otherwise live as long as that object: every instance ever created,
and every one still called on each reload or collection.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable


def weak_callback(method: Callable[..., Any], default: Any = None) -> Callable[..., Any]:
    """Calls the bound ``method`` while its object lives; ``default`` after."""
    reference = weakref.WeakMethod(method)

    def call(*args: Any, **kwargs: Any) -> Any:
        target = reference()
        return default if target is None else target(*args, **kwargs)

    return call


def subscribe_while_alive(owner: object, subscribe: Callable[[Callable[..., Any]], Callable[[], None]],
                          method: Callable[..., Any]) -> None:
    """``subscribe(callback)`` (which returns an unsubscribe function) with a
    weak ``method`` of ``owner``; unsubscribed when ``owner`` is collected."""
    weakref.finalize(owner, subscribe(weak_callback(method)))

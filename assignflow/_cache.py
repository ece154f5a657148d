"""Reading a cached property of an attrs slotted class without computing it."""

from __future__ import annotations

from typing import Any


def peek_cached(obj: Any, name: str) -> Any:
    """The value of ``obj``'s cached property ``name`` if computed, else ``None``.

    attrs keeps the cached properties of slotted classes in slots; reading the slot's
    descriptor raises instead of falling back to the ``__getattr__`` that computes.
    """
    try:
        return getattr(type(obj), name).__get__(obj, type(obj))
    except AttributeError:
        return None

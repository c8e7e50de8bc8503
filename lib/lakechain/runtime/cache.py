"""The one per-process cache: build an expensive object (a model, an index, chains) once per
Python process and key, shared by threads.

Why: Spark reuses Python workers across tasks, so a module-level cache loads each model once
per worker instead of once per partition. Two threads asking for the same key wait for one
build instead of building twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

_VALUES: dict[tuple[str, Hashable], Any] = {}
_LOCKS: dict[tuple[str, Hashable], threading.Lock] = {}
_GUARD = threading.Lock()


def per_process(namespace: str, key: Hashable, build: Callable[[], T]) -> T:
    """The cached value for ``(namespace, key)``, built by ``build()`` on first use."""
    k = (namespace, key)
    value = _VALUES.get(k)
    if value is not None:
        return value  # type: ignore[no-any-return,unused-ignore]
    with _GUARD:
        lock = _LOCKS.setdefault(k, threading.Lock())
    with lock:
        if k not in _VALUES:
            _VALUES[k] = build()
        return _VALUES[k]  # type: ignore[no-any-return,unused-ignore]


def clear(namespace: str | None = None) -> None:
    """Drop cached values (all, or one namespace): tests, and a rebuilt index."""
    with _GUARD:
        for k in [k for k in _VALUES if namespace is None or k[0] == namespace]:
            del _VALUES[k]

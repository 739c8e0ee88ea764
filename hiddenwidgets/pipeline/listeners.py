"""A thread-safe list of callbacks: what a data object (recorded representations, a concept store) calls after it
changes, so the views showing it can follow."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Listeners:
    """``add(fn)`` returns the function that removes ``fn``; ``call(*args)`` calls each listener, outside the lock,
    in the order added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Callable[..., None]] = []

    def add(self, listener: Callable[..., None]) -> Callable[[], None]:
        with self._lock:
            self._items.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._items:
                    self._items.remove(listener)

        return remove

    def call(self, *args: Any) -> None:
        with self._lock:
            items = list(self._items)
        for listener in items:
            listener(*args)

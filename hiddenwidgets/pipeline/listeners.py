"""Callbacks: a thread-safe list of them (what a data object, recorded representations or a concept store, calls
after it changes, so the views showing it can follow), and weak references to them (what a hook or a thread holds,
so that it never keeps its owner alive)."""

from __future__ import annotations

import inspect
import threading
import weakref
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


def weak_callback(fn: Callable[..., Any] | None) -> Callable[[], Callable[..., Any] | None]:
    """A getter for ``fn`` that does not keep a bound method's object alive: it returns None once that object is
    gone. Plain functions and lambdas are kept as they are."""
    if fn is None:
        return lambda: None
    if inspect.ismethod(fn):
        return weakref.WeakMethod(fn)
    return lambda: fn

"""Interrupt-safe set-up and tear-down: Ctrl+C (SIGINT) in a notebook raises ``KeyboardInterrupt`` between any two
bytecodes, so a constructor that registers hooks and starts a thread can be left half-built, with hooks on the
user's model and nobody holding them. :func:`deferred_interrupts` holds a SIGINT back for the length of a block
and raises it at the end, once the block has finished (or undone) its work.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["deferred_interrupts"]


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Run the block without being interrupted by SIGINT; a SIGINT received meanwhile raises
    ``KeyboardInterrupt`` when the block ends. Outside the main thread (where Python delivers no signals) and where
    signal handlers cannot be set, the block simply runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: object) -> None:
        received.append(signum)

    try:
        previous = signal.signal(signal.SIGINT, hold)
    except (ValueError, OSError, TypeError):  # not the main interpreter, no signal support, interpreter exit
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(ValueError, OSError, TypeError):
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        if received:
            raise KeyboardInterrupt

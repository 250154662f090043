"""Items from a library's thread to the event loop, one wake-up per batch.

``call_soon_threadsafe`` per item costs a write to the loop's self-pipe (a syscall that also
gives up the GIL), a loop iteration and a Handle. While the loop is busy, items pile up here
instead and the next wake-up takes them all. Order is kept, also against the thread's other
``call_soon_threadsafe`` calls: a batch is scheduled before anything the thread schedules after
putting its item.

A producer that knows more items follow soon may also put without waking the loop (``wake``
False): they wait for the next item that wakes it, or for the loop to :meth:`take` them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[list[T]], None]) -> None:
        """``deliver`` runs on the loop with every item put since the last call, in order."""
        self._loop = loop
        self._deliver = deliver
        self._items: list[T] = []
        self._lock = threading.Lock()
        self._scheduled = False

    def put(self, item: T, wake: bool = True) -> None:
        """From any thread; never blocks on the loop."""
        with self._lock:
            self._items.append(item)
            if self._scheduled or not wake:
                return  # the loop takes it with the last batch not yet taken, or with the next
            self._scheduled = True
        # RuntimeError: the loop is already closed (a forced exit), nothing left to hand over to.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._drain)

    def take(self) -> None:
        """On the loop: deliver what waits now, woken for or not."""
        with self._lock:
            items, self._items = self._items, []
        if items:
            self._deliver(items)

    def _drain(self) -> None:
        with self._lock:
            items, self._items = self._items, []
            self._scheduled = False
        if items:  # none: take() had them
            self._deliver(items)

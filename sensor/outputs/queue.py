"""The bounded in-memory queue between the engine and a channel's worker (`outputs_queue.capacity`).

It has the same shape as the disk spool (`put`, `peek`, `commit`) so a channel's worker reads
either one the same way: `peek` the oldest items, deliver them, `commit` what was delivered. An
item stays in the queue until it is committed, so a delivery that fails is retried in order.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any


class MemoryQueue:
    """Up to `capacity` items, oldest first; `put` never blocks and answers False when full."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: deque[tuple[float, Any]] = deque()
        self._cond = threading.Condition()

    def put(self, item: Any) -> bool:
        with self._cond:
            if len(self._items) >= self.capacity:
                return False
            self._items.append((time.time(), item))
            self._cond.notify()
            return True

    def peek(self, n: int, timeout: float) -> list[Any]:
        """Up to `n` oldest items, waiting up to `timeout` seconds for the first one."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            count = min(n, len(self._items))
            return [self._items[i][1] for i in range(count)]

    def commit(self, n: int) -> None:
        """Remove the `n` oldest items (delivered, or dropped and counted by the caller)."""
        with self._cond:
            for _ in range(min(n, len(self._items))):
                self._items.popleft()
            self._cond.notify_all()

    def take_all(self) -> list[Any]:
        """Remove and return every item (at shutdown, to count what could not be delivered)."""
        with self._cond:
            items = [item for _, item in self._items]
            self._items.clear()
            self._cond.notify_all()
            return items

    def wake(self) -> None:
        """Wake a worker waiting in `peek` (to stop it)."""
        with self._cond:
            self._cond.notify_all()

    def depth(self) -> int:
        return len(self._items)

    def oldest_age(self) -> float:
        """Seconds the oldest item has waited, 0 when empty."""
        try:
            return max(0.0, time.time() - self._items[0][0])
        except IndexError:
            return 0.0

    def close(self) -> None:
        self.wake()

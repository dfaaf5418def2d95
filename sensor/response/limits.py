"""Cooldown per (action, target) and a per-action rate limit. Each action's own thread owns its
limits, so they need no lock. Times come from time.monotonic() unless a test passes a clock."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable


class Cooldown:
    """A target acted on less than `seconds` ago is in cooldown. 0 disables it."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._last: dict[Hashable, float] = {}

    def remaining(self, key: Hashable) -> float:
        """Seconds left before `key` may be acted on again (0 when it may)."""
        if self.seconds <= 0:
            return 0.0
        last = self._last.get(key)
        if last is None:
            return 0.0
        return max(0.0, last + self.seconds - self.clock())

    def note(self, key: Hashable) -> None:
        """`key` was acted on now."""
        if self.seconds <= 0:
            return
        now = self.clock()
        self._last[key] = now
        if len(self._last) > 10_000:
            # Forget the expired entries so a long run with many targets does not grow forever.
            self._last = {k: t for k, t in self._last.items() if t + self.seconds > now}


class RateLimit:
    """At most `per_minute` actions per key in any sliding 60-second window. 0 disables it.

    The key is the target's group (its cgroup, its namespace): decoys in one group cannot use up
    the budget that another group's target needs (issue 14, finding 10).
    """

    WINDOW = 60.0
    MAX_KEYS = 10_000

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._times: dict[Hashable, deque[float]] = {}

    def allows(self, key: Hashable = None) -> bool:
        """True when one more action on `key` fits in the window now."""
        if self.per_minute <= 0:
            return True
        times = self._times.get(key)
        if not times:
            return True
        cutoff = self.clock() - self.WINDOW
        while times and times[0] <= cutoff:
            times.popleft()
        return len(times) < self.per_minute

    def note(self, key: Hashable = None) -> None:
        """One action on `key` happened now."""
        if self.per_minute <= 0:
            return
        now = self.clock()
        self._times.setdefault(key, deque()).append(now)
        if len(self._times) > self.MAX_KEYS:
            # Forget the groups with nothing left in the window, so many targets do not grow it forever.
            cutoff = now - self.WINDOW
            self._times = {k: t for k, t in self._times.items() if t and t[-1] > cutoff}

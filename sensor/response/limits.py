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
    """At most `per_minute` actions in any sliding 60-second window. 0 disables it."""

    WINDOW = 60.0

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._times: deque[float] = deque()

    def allows(self) -> bool:
        """True when one more action fits in the window now."""
        if self.per_minute <= 0:
            return True
        cutoff = self.clock() - self.WINDOW
        while self._times and self._times[0] <= cutoff:
            self._times.popleft()
        return len(self._times) < self.per_minute

    def note(self) -> None:
        """One action happened now."""
        if self.per_minute > 0:
            self._times.append(self.clock())

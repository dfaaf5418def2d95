"""Cooldown per target and the sliding per-minute rate limit, on a clock the test moves."""

from __future__ import annotations

from sensor.response.limits import Cooldown, RateLimit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cooldown_is_per_target():
    clock = Clock()
    c = Cooldown(30, clock)
    c.note("a")
    clock.now += 10
    assert c.remaining("a") == 20
    assert c.remaining("b") == 0
    clock.now += 20
    assert c.remaining("a") == 0


def test_zero_cooldown_never_holds():
    c = Cooldown(0, Clock())
    c.note("a")
    assert c.remaining("a") == 0


def test_rate_limit_is_a_sliding_minute():
    clock = Clock()
    r = RateLimit(3, clock)
    for _ in range(3):
        assert r.allows()
        r.note()
        clock.now += 10
    assert not r.allows()          # three in the last 30 s
    clock.now += 30.5              # the first one is now more than 60 s old
    assert r.allows()
    r.note()
    assert not r.allows()


def test_zero_rate_limit_is_unlimited():
    r = RateLimit(0, Clock())
    for _ in range(1000):
        r.note()
    assert r.allows()

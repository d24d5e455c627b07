"""A token bucket: the one rate limit used for packets, bytes, audio time and client messages."""

from __future__ import annotations

import time


class TokenBucket:
    """`rate` tokens a second sustained, up to `burst` at once; `take(n)` spends n or refuses."""

    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, time.monotonic()

    def take(self, n: float = 1.0, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < n:
            return False
        self.tokens -= n
        return True

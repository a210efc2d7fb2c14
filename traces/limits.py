"""Per-token limits on the agent API: a request rate (token bucket) and concurrent waits.

Both are counted in this process, in memory, at a cost of a few microseconds a request: a
Redis round trip would add ~0.1 ms to the gateway's ~1.4 ms, and would make every agent
request fail or go unlimited whenever Redis is down. The price is that the figures are
per server process: with gunicorn's N workers a token may reach N times the request rate
(a client's keep-alive connection stays on one worker, so in practice it meets one
bucket), and the wait cap is divided between the workers (traces/server.py sets
`processes`), so a token never holds more waits than the cap in total.
"""

import math
import threading
import time
from dataclasses import dataclass

from django.conf import settings

from ladder.errors import TooManyRequests


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per agent token: `rate` requests a second, bursts up to `burst`."""

    def __init__(self) -> None:
        self._buckets: dict[int, _Bucket] = {}
        self._lock = threading.Lock()

    def check(self, token_id: int, *, rate: float, burst: int) -> None:
        """Take one request from the token's bucket, or raise TooManyRequests saying when
        the next one is allowed. rate <= 0 turns the limit off."""
        if rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(token_id)
            if bucket is None:
                if len(self._buckets) > 10_000:  # bounded memory: idle buckets are full anyway
                    self._buckets.clear()
                bucket = self._buckets[token_id] = _Bucket(tokens=float(burst), at=now)
            else:
                bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.at) * rate)
                bucket.at = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return
            retry_after = (1.0 - bucket.tokens) / rate
        raise TooManyRequests(
            f"over {rate:g} requests a second for this token; retry after {retry_after:.2f} s",
            code="rate_limited",
            retry_after=retry_after,
        )

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()


class WaitSlots:
    """How many `?wait=` polls each token has open in this process."""

    def __init__(self) -> None:
        self._open: dict[int, int] = {}
        self._lock = threading.Lock()
        self.processes = 1  # server processes sharing the cap (set by traces/server.py)

    def cap(self) -> int:
        total = settings.LADDER_MAX_WAITS_PER_TOKEN
        return max(1, math.ceil(total / self.processes)) if total > 0 else 0

    def acquire(self, token_id: int) -> None:
        """Open one wait for the token, or raise TooManyRequests. Every acquire is paired
        with exactly one release, whatever way the wait ends."""
        cap = self.cap()
        with self._lock:
            held = self._open.get(token_id, 0)
            if cap and held >= cap:
                raise TooManyRequests(
                    f"this token already has {held} waiting requests open "
                    f"(at most {settings.LADDER_MAX_WAITS_PER_TOKEN}); poll without ?wait "
                    "or retry later",
                    code="too_many_waits",
                    retry_after=1.0,
                )
            self._open[token_id] = held + 1

    def release(self, token_id: int) -> None:
        with self._lock:
            held = self._open.get(token_id, 0) - 1
            if held > 0:
                self._open[token_id] = held
            else:
                self._open.pop(token_id, None)

    def held(self, token_id: int) -> int:
        with self._lock:
            return self._open.get(token_id, 0)


RATE = RateLimiter()
WAITS = WaitSlots()


def rate_check(token_id: int) -> None:
    RATE.check(
        token_id,
        rate=settings.LADDER_RATE_LIMIT_PER_SECOND,
        burst=max(1, settings.LADDER_RATE_LIMIT_BURST),
    )

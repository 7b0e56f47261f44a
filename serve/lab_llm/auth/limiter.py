"""Throttles password guessing: failed logins per user and per client address in a sliding window."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable

_MAX_TRACKED = 10_000


class LoginLimiter:
    def __init__(
        self,
        *,
        per_user: int,
        per_client: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = {"user": per_user, "client": per_client}
        self._window_s = window_s
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        failures = self._failures[key]
        while failures and failures[0] <= now - self._window_s:
            failures.popleft()
        return failures

    def retry_after(self, username: str, client: str) -> float:
        """Seconds until a login may be tried again; 0 when it may be tried now."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for kind, value in (("user", username), ("client", client)):
                failures = self._recent((kind, value), now)
                if len(failures) >= self._limits[kind]:
                    wait = max(wait, failures[0] + self._window_s - now)
        return wait

    def record_failure(self, username: str, client: str) -> None:
        now = self._clock()
        with self._lock:
            for key in (("user", username), ("client", client)):
                self._recent(key, now).append(now)
            if len(self._failures) > _MAX_TRACKED:
                self._forget_expired(now)

    def _forget_expired(self, now: float) -> None:
        """Guessing from many names or addresses must not grow memory without bound."""
        for key in list(self._failures):
            if not self._recent(key, now):
                del self._failures[key]

    def record_success(self, username: str) -> None:
        with self._lock:
            self._failures.pop(("user", username), None)

"""Throttles password guessing: failed logins per user and per client address in a sliding window.

Memory stays bounded whatever callers send: names and addresses are kept as 16-byte digests, each keeps at most
as many failure times as its limit, looking a login up never adds an entry, and past `max_tracked` entries the
expired ones go first and then the oldest.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

_MAX_TRACKED = 10_000

_Key = tuple[str, bytes]


def _key(kind: str, value: str) -> _Key:
    return kind, hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class LoginLimiter:
    def __init__(
        self,
        *,
        per_user: int,
        per_client: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = _MAX_TRACKED,
    ) -> None:
        self._limits = {"user": per_user, "client": per_client}
        self._window_s = window_s
        self._clock = clock
        self._max_tracked = max_tracked
        self._failures: OrderedDict[_Key, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _prune(self, failures: deque[float], now: float) -> deque[float]:
        while failures and failures[0] <= now - self._window_s:
            failures.popleft()
        return failures

    def retry_after(self, username: str, client: str) -> float:
        """Seconds until a login may be tried again; 0 when it may be tried now. Records nothing."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for kind, value in (("user", username), ("client", client)):
                failures = self._failures.get(_key(kind, value))
                if failures is None:
                    continue
                if len(self._prune(failures, now)) >= self._limits[kind]:
                    wait = max(wait, failures[0] + self._window_s - now)
        return wait

    def record_failure(self, username: str, client: str) -> None:
        now = self._clock()
        with self._lock:
            for kind, value in (("user", username), ("client", client)):
                key = _key(kind, value)
                failures = self._failures.get(key)
                if failures is None:
                    failures = self._failures[key] = deque(maxlen=self._limits[kind])
                self._prune(failures, now).append(now)
                self._failures.move_to_end(key)
            if len(self._failures) > self._max_tracked:
                self._forget(now)

    def _forget(self, now: float) -> None:
        """Guessing from many names or addresses must not grow memory without bound."""
        for key in [key for key, failures in self._failures.items() if not self._prune(failures, now)]:
            del self._failures[key]
        while len(self._failures) > self._max_tracked:
            self._failures.popitem(last=False)

    def record_success(self, username: str) -> None:
        with self._lock:
            self._failures.pop(_key("user", username), None)

    def tracked(self) -> int:
        """How many names and addresses have failures on record (for tests and metrics)."""
        with self._lock:
            return len(self._failures)

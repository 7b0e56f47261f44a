"""Failed logins are throttled per user and per client address."""

from __future__ import annotations

from lab_llm.auth import LoginLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_user_is_throttled_after_the_limit_and_released_after_the_window() -> None:
    clock = FakeClock()
    limiter = LoginLimiter(per_user=3, per_client=100, window_s=60, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("alice", "10.0.0.1") == 0
        limiter.record_failure("alice", "10.0.0.1")
    assert limiter.retry_after("alice", "10.0.0.2") == 60
    assert limiter.retry_after("bob", "10.0.0.1") == 0
    clock.now += 61
    assert limiter.retry_after("alice", "10.0.0.1") == 0


def test_client_is_throttled_across_usernames() -> None:
    limiter = LoginLimiter(per_user=100, per_client=2, window_s=60, clock=FakeClock())
    limiter.record_failure("alice", "10.0.0.9")
    limiter.record_failure("bob", "10.0.0.9")
    assert limiter.retry_after("carol", "10.0.0.9") > 0
    assert limiter.retry_after("carol", "10.0.0.10") == 0


def test_success_clears_the_users_failures() -> None:
    limiter = LoginLimiter(per_user=2, per_client=100, window_s=60, clock=FakeClock())
    limiter.record_failure("alice", "a")
    limiter.record_success("alice")
    limiter.record_failure("alice", "a")
    assert limiter.retry_after("alice", "a") == 0

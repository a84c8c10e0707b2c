import pytest

from ingest_core.errors import StorageUnavailable
from worker.storage.retry import retry_storage


class FakeClock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def _failing(times: int):
    calls = {"n": 0}

    def call() -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            raise StorageUnavailable(detail="ENOSPC")
        return "ok"

    return call, calls


def test_write_is_retried_with_growing_jittered_pauses_until_storage_is_back():
    """Four refusals, then success: four pauses, each within [d/2, d] of a doubling delay, and the value."""
    clock = FakeClock()
    call, calls = _failing(4)
    out = retry_storage(
        call, max_wait=300, sleep=clock.sleep, clock=clock, jitter=lambda: 0.5, first=0.2, cap=10
    )
    assert out == "ok" and calls["n"] == 5
    assert clock.sleeps == pytest.approx([0.15, 0.3, 0.6, 1.2])


def test_pauses_are_capped_and_the_total_wait_is_bounded_then_the_error_is_raised():
    """Storage that never comes back: pauses stop growing at the cap, and past max_wait the error surfaces."""
    clock = FakeClock()
    call, _ = _failing(10_000)
    with pytest.raises(StorageUnavailable):
        retry_storage(
            call, max_wait=60, sleep=clock.sleep, clock=clock, jitter=lambda: 1.0, first=0.2, cap=10
        )
    assert max(clock.sleeps) == 10
    assert sum(clock.sleeps) == pytest.approx(60)


def test_other_errors_are_not_retried():
    """Only StorageUnavailable is retried: a bug or a bad record fails at once."""
    clock = FakeClock()

    def bad() -> None:
        raise ValueError("record has no fetched_at")

    with pytest.raises(ValueError):
        retry_storage(bad, max_wait=60, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == []

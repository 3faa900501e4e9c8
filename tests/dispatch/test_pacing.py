"""The provider gate and the send window: a 429 pauses and slows every caller, an outage stops a
run, and a contact is ``sending`` only while its own request is in flight."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestration.dispatch import pacing
from orchestration.dispatch.pacing import Gate, Judged, send_window


def test_a_429_pauses_every_caller_and_slows_the_pace_once_per_episode() -> None:
    provider = Gate("test")
    assert provider.reserve() == 0.0 and provider.reserve() == 0.0  # unpaced at first
    sent_at = time.monotonic()
    provider.rate_limited(sent_at, 2.0)
    assert provider.interval == pacing.MIN_INTERVAL
    assert 1.9 < provider.reserve() <= 2.0  # everybody waits for Retry-After
    provider.rate_limited(sent_at, 2.0)  # in flight before the slow-down: no second slow-down
    assert provider.interval == pacing.MIN_INTERVAL
    provider.rate_limited(time.monotonic(), 1.0)  # started after it: slower again
    assert provider.interval == 2 * pacing.MIN_INTERVAL
    assert provider.rejected == 3
    for _ in range(10):
        provider.succeeded()
    assert provider.interval == pytest.approx(2 * pacing.MIN_INTERVAL * pacing.SPEED_UP**10)


def test_paced_requests_keep_their_distance() -> None:
    provider = Gate("test")
    provider.interval = 0.05
    starts = [provider.acquire() for _ in range(5)]
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 0.049


def test_the_breaker_trips_after_refusals_in_a_row_and_a_new_run_probes_again() -> None:
    provider = Gate("test")
    for _ in range(pacing.BREAKER_AFTER - 1):
        assert provider.refused() is False
    provider.succeeded()  # a success in between: not in a row
    for _ in range(pacing.BREAKER_AFTER - 1):
        assert provider.refused() is False
    assert provider.refused() is True and provider.down
    provider.begin_run()
    assert not provider.down and provider.refused() is False


def test_gates_are_per_provider_and_endpoint() -> None:
    assert pacing.gate("sendgrid", "http://a") is pacing.gate("sendgrid", "http://a")
    assert pacing.gate("sendgrid", "http://a") is not pacing.gate("sendgrid", "http://b")
    assert pacing.gate("loyalty", "http://a") is not pacing.gate("sendgrid", "http://a")


def test_the_window_starts_a_job_only_when_it_leaves_and_records_it_when_it_returns() -> None:
    """The ledger's view: at any time, the started and unrecorded jobs are at most the
    workers, and each is recorded right after its call returns."""
    lock = threading.Lock()
    open_jobs: set[int] = set()
    most_open = 0
    recorded: list[int] = []

    def start(job: int) -> int:
        nonlocal most_open
        with lock:
            open_jobs.add(job)
            most_open = max(most_open, len(open_jobs))
        return job

    def call(job: int) -> int:
        time.sleep(0.01 * (job % 3))
        return job * 10

    def record(job: int, result: int) -> Judged:
        assert result == job * 10
        with lock:
            open_jobs.remove(job)
        recorded.append(job)
        return Judged("ok")

    with ThreadPoolExecutor(max_workers=3) as pool:
        stopped = send_window(
            range(20),
            start=start,
            call=call,
            record=record,
            provider=Gate("test"),
            pool=pool,
            workers=3,
        )
    assert stopped is None
    assert sorted(recorded) == list(range(20)) and not open_jobs
    assert most_open <= 3


def test_the_window_stops_starting_jobs_when_the_provider_is_down_or_refuses_our_key() -> None:
    started: list[int] = []

    def run(verdict: str) -> str | None:
        started.clear()
        with ThreadPoolExecutor(max_workers=2) as pool:
            return send_window(
                range(100),
                start=lambda job: started.append(job) or job,  # type: ignore[func-returns-value]
                call=lambda job: job,
                record=lambda job, result: Judged(verdict),  # type: ignore[arg-type]
                provider=Gate(verdict),
                pool=pool,
                workers=2,
            )

    assert run("failed") == "provider_down"
    assert pacing.BREAKER_AFTER <= len(started) <= pacing.BREAKER_AFTER + 2  # the rest waits
    assert run("stop") == "stopped"
    assert len(started) <= 2
    assert run("done") is None and len(started) == 100

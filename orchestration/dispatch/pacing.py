"""How fast a provider is called: one gate per provider, and the window of requests in flight.

:class:`Gate` (one per provider per process, :func:`gate`; every channel and thread calling
the same provider shares it)
    *Rate limit.* A 429 pauses every caller of the provider until its ``Retry-After`` and
    slows the pace (the gap between two request starts doubles, from ``MIN_INTERVAL``); each
    success shortens the gap a little (``SPEED_UP``). So a provider that limits us meets one
    rejected request per slow-down and then a pace just under its limit, instead of every
    worker hammering it (measured in ``orchestration/bench/dispatch.py``).
    *Outage breaker.* ``BREAKER_AFTER`` refusals in a row (5xx, unreachable) in one run stop the
    run: the contacts not tried stay due without using an attempt, and the next run (the
    scheduler's) probes again. An outage costs a few requests per run, not one per contact.

:func:`send_window`
    sends a sequence of jobs (one provider request each) with at most ``workers`` in flight.
    The calling thread does all the ledger work: it *starts* a job (its contacts go to
    ``sending``) only when the gate lets its request go and a worker is free, and records each
    outcome as soon as the request returns, so a contact is ``sending`` only while its own
    request is in flight and every outcome is in the ledger the moment it is known.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Literal, TypeVar

from orchestration.dispatch.states import Channel
from orchestration.settings import Settings

log = logging.getLogger(__name__)

MIN_INTERVAL = 0.01  # seconds between request starts after the first 429 (100 per second)
SLOW_DOWN = 2.0  # a 429 multiplies the gap between request starts by this
SPEED_UP = 0.99  # each accepted request multiplies it by this
BREAKER_AFTER = 10  # refusals in a row (5xx, unreachable) that stop a run

# The provider of each channel (the settings' service names: base_urls, tokens).
PROVIDERS: dict[Channel, str] = {
    Channel.EMAIL: "sendgrid",
    Channel.LOYALTY_CASHBACK: "loyalty",
    Channel.IN_STORE: "store",
}

Verdict = Literal["ok", "rate_limited", "failed", "done", "stop"]


class Gate:
    """The pace of one provider's calls (thread-safe). Times are ``time.monotonic()``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self.interval = 0.0  # seconds between request starts; 0 = unpaced (no 429 seen yet)
        self._next_at = 0.0
        self._paused_until = 0.0
        self._slowed_at = 0.0
        self._refusals = 0
        self.down = False  # the breaker tripped in the current run
        self.rejected = 0  # 429s met (for logs and benchmarks)

    def reserve(self) -> float:
        """0 when a request may start now (its slot is taken), else the seconds to wait."""
        with self._lock:
            now = time.monotonic()
            ready = max(self._next_at, self._paused_until)
            if now < ready:
                return ready - now
            self._next_at = now + self.interval
            return 0.0

    def acquire(self) -> float:
        """Wait for a slot; returns when the request may start (its start time)."""
        while (pause := self.reserve()) > 0:
            time.sleep(pause)
        return time.monotonic()

    def rate_limited(self, started_at: float, retry_after_s: float) -> None:
        """A request started at ``started_at`` met a 429: everybody waits ``retry_after_s``;
        the pace slows once per episode (requests started before the last slow-down, already
        in flight, do not slow it again)."""
        with self._lock:
            now = time.monotonic()
            self.rejected += 1
            self._paused_until = max(self._paused_until, now + max(retry_after_s, 0.0))
            if started_at >= self._slowed_at:
                self.interval = max(self.interval * SLOW_DOWN, MIN_INTERVAL)
                self._slowed_at = now
                log.info(
                    "%s: rate limited; waiting %.1f s, then one request every %.3f s",
                    self.name,
                    retry_after_s,
                    self.interval,
                )

    def succeeded(self) -> None:
        with self._lock:
            self.interval *= SPEED_UP
            self._refusals = 0

    def refused(self) -> bool:
        """A retryable refusal (5xx, unreachable); True when the breaker trips (stop)."""
        with self._lock:
            self._refusals += 1
            if self._refusals >= BREAKER_AFTER and not self.down:
                self.down = True
                log.warning(
                    "%s: %d refusals in a row, the provider looks down: this run stops; the "
                    "contacts not tried wait for the next run",
                    self.name,
                    self._refusals,
                )
            return self.down

    def begin_run(self) -> None:
        """A new run probes the provider again (the breaker closes; the pace is kept)."""
        with self._lock:
            self._refusals = 0
            self.down = False


_GATES: dict[str, Gate] = {}
_GATES_LOCK = threading.Lock()


def gate(provider: str, base_url: str = "") -> Gate:
    """The process's gate of ``provider`` at ``base_url`` (created on first use): a rate limit
    belongs to an endpoint and its account, so two sandboxes on two ports have two gates."""
    key = f"{provider} {base_url}".strip()
    with _GATES_LOCK:
        found = _GATES.get(key)
        if found is None:
            found = _GATES[key] = Gate(key)
        return found


def channel_gate(channel: Channel | str, cfg: Settings) -> Gate:
    """The gate of a channel's provider, at the configured URL."""
    provider = PROVIDERS[Channel(channel)]
    return gate(provider, cfg.base_urls.get(provider, ""))


Job = TypeVar("Job")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Judged:
    """What a recorded outcome means for the provider's gate: ``ok`` (accepted), ``rate_limited``
    (with the seconds to wait), ``failed`` (a retryable refusal: counts toward the breaker),
    ``done`` (anything else: a permanent refusal, an unknown outcome), ``stop`` (stop sending:
    our credentials were refused)."""

    verdict: Verdict
    retry_after_s: float = 0.0


def send_window(
    jobs: Iterable[Job],
    *,
    start: Callable[[Job], Job | None],
    call: Callable[[Job], Result],
    record: Callable[[Job, Result], Judged],
    provider: Gate,
    pool: ThreadPoolExecutor,
    workers: int,
) -> str | None:
    """Send ``jobs`` in order, at most ``workers`` in flight (see the module). ``start`` takes a
    job's contacts in the ledger (None: none was still due, skip it); ``call`` runs in a worker
    thread and must only talk to the provider; ``record`` writes the outcome (calling thread).
    Returns None when every job was sent, else why it stopped: ``"provider_down"`` or
    ``"stopped"`` (a ``stop`` verdict); jobs not started stay as they were."""
    in_flight: dict[Future[Result], tuple[Job, float]] = {}
    queue = iter(jobs)
    head: Job | None = next(queue, None)
    stopped: str | None = None

    def settle(timeout: float | None) -> None:
        nonlocal stopped
        if not in_flight:
            if timeout:
                time.sleep(timeout)
            return
        done, _ = wait(list(in_flight), timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            job, started_at = in_flight.pop(future)
            judged = record(job, future.result())
            if judged.verdict == "ok":
                provider.succeeded()
            elif judged.verdict == "rate_limited":
                provider.rate_limited(started_at, judged.retry_after_s)
            elif judged.verdict == "failed":
                if provider.refused() and stopped is None:
                    stopped = "provider_down"
            elif judged.verdict == "stop" and stopped is None:
                stopped = "stopped"

    while head is not None or in_flight:
        if head is not None and stopped is None and len(in_flight) < workers:
            pause = provider.reserve()
            if pause > 0:
                settle(pause)
                continue
            started = start(head)
            head = next(queue, None)
            if started is not None:
                in_flight[pool.submit(call, started)] = (started, time.monotonic())
            continue
        if stopped is not None and not in_flight:
            break
        settle(None)
    return stopped


__all__ = [
    "BREAKER_AFTER",
    "MIN_INTERVAL",
    "PROVIDERS",
    "Gate",
    "Judged",
    "channel_gate",
    "gate",
    "send_window",
]

"""A 5-minute outage of every provider while a scheduler keeps running dispatch: everything
waits, nothing is given up, and after the recovery every intended contact is delivered once.

40 customers of ``abandoned_cart_nearby_store`` (120 contacts; the offer check blocks the
25th customer's three) are handed off; the sandbox SendGrid, loyalty and store APIs answer
every API request with 503 for ``OUTAGE_S`` seconds of real time while a whole dispatch run
starts every ``EVERY_S`` seconds, as a scheduler would. Backoff is capped at ``MAX_BACKOFF_S``
(the settings' ``dispatch_max_backoff_seconds``; production keeps 300 s) so the recovery does
not wait long; the retry horizon is the default 24 hours.

During the outage: no contact is dead-lettered or delivered, and each run stops each channel
after a few refusals (the breaker), so the outage costs a few requests per run and channel,
not one per contact and retry. After it: every email is accepted once by SendGrid, every
credit and offer exists once, the ledger says ``sent`` (``suppressed`` for the blocked
customer) and the staff sheets list every offer.

Duration: the outage itself (300 s) plus about a minute of recovery runs.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from dispatch_world import (
    SERVICES,
    Sandbox,
    check_every_contact_delivered_once,
    hand_off,
    sandbox_home,
)

from orchestration import settings
from orchestration.dispatch import Ledger, pacing
from orchestration.dispatch.run import dispatch

CUSTOMERS = 40
OUTAGE_S = 300.0
EVERY_S = 20.0
MAX_BACKOFF_S = 30
RECOVERY_RUNS = 12


def refused(sandbox: Sandbox) -> Counter[str]:
    """503s answered per service."""
    return Counter(
        {
            service: int(
                requests.get(f"{sandbox.urls[service]}/_sandbox/stats", timeout=10)
                .json()["by_status"]
                .get("503", 0)
            )
            for service in SERVICES
        }
    )


def open_contacts(ledger: Ledger) -> int:
    counts = ledger.counts()
    return sum(counts[state] for state in ("pending", "sending", "failed", "unknown"))


@pytest.mark.slow
def test_a_five_minute_outage_waits_and_then_everything_is_delivered_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNI_DISPATCH_MAX_BACKOFF_SECONDS", str(MAX_BACKOFF_S))
    monkeypatch.setenv("OMNI_DISPATCH_UNKNOWN_SETTLE_SECONDS", "1")
    started = time.monotonic()
    with sandbox_home(tmp_path / "home", monkeypatch, CUSTOMERS) as (sandbox, cfg):
        hand_off(cfg, CUSTOMERS)
        for service in SERVICES:
            sandbox.faults(service, error_rate=1.0, error_status=503)
        outage_ends = time.monotonic() + OUTAGE_S
        runs_during = 0
        with Ledger.from_settings(settings.load()) as ledger:
            while time.monotonic() < outage_ends:
                tick = time.monotonic()
                dispatch(settings.load())
                runs_during += 1
                counts = ledger.counts()
                assert counts["sent"] == counts["dead_lettered"] == 0, counts
                time.sleep(
                    max(
                        0.0,
                        min(EVERY_S - (time.monotonic() - tick), outage_ends - time.monotonic()),
                    )
                )
            during = refused(sandbox)
            waiting = ledger.counts()
            assert waiting["dead_lettered"] == 0 and waiting["sent"] == 0
            assert waiting["failed"] > 0  # tried, refused, waiting with backoff
            sandbox.clear_faults()

            runs_after = 0
            while open_contacts(ledger) and runs_after < RECOVERY_RUNS:
                tick = time.monotonic()
                dispatch(settings.load())
                runs_after += 1
                time.sleep(max(0.0, min(EVERY_S, 5.0) - (time.monotonic() - tick)))
            outcome = check_every_contact_delivered_once(sandbox, ledger, cfg, CUSTOMERS)
    seconds = time.monotonic() - started
    # each run tried each provider until its breaker tripped: a few requests, not one per contact
    budget = runs_during * (pacing.BREAKER_AFTER + 8)
    print(
        f"outage {OUTAGE_S:.0f} s: {runs_during} runs, 503s answered {dict(during)} "
        f"(at most {budget} per service); {runs_after} runs after it; {seconds:.0f} s in all; "
        f"final {dict(outcome)}"
    )
    assert runs_during >= OUTAGE_S // EVERY_S - 1
    assert all(count <= budget for count in during.values()), during
    assert all(count > 0 for count in during.values())

"""SendGrid events into the ledger database, once each, and the reconciliation of unknowns.

Uses the world of ``test_email_channel`` (OMNI_HOME, campaigns, warehouse marts, ledger and a
sandbox SendGrid on a free port); the events are those the sandbox made for what it accepted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import requests
from sqlalchemy import delete, func, select
from test_email_channel import EmailWorld, email_world, wait_for

from orchestration.dispatch import Channel, State
from orchestration.dispatch.email import send_due
from orchestration.dispatch.email_events import (
    COLUMNS,
    email_events,
    export_email_events,
    poll_email_events,
    provider_cursors,
    reconcile_with_activity,
)

__all__ = ["email_world"]  # the fixture, imported for pytest


def sandbox_events(world: EmailWorld) -> list[dict[str, object]]:
    answer = requests.get(f"{world.sendgrid}/_sandbox/events", timeout=10)
    answer.raise_for_status()
    return list(answer.json()["events"])


def stored_count(world: EmailWorld) -> int:
    with world.ledger.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(email_events)) or 0)


def test_events_are_stored_once_however_often_they_are_polled(email_world: EmailWorld) -> None:
    ids = email_world.add_contacts(4, emails={1: "bounce.me@example.test"})
    send_due(email_world.ledger, email_world.cfg)
    produced = sandbox_events(email_world)
    assert len(produced) >= 8  # processed + delivered/bounce per recipient, at least

    first = poll_email_events(email_world.ledger, email_world.cfg, page_size=3)
    assert first["fetched"] == first["inserted"] == len(produced)
    second = poll_email_events(email_world.ledger, email_world.cfg)
    assert second["fetched"] == 0 and second["inserted"] == 0
    assert stored_count(email_world) == len(produced)

    # a lost cursor reads the whole feed again: nothing is inserted twice
    with email_world.ledger.engine.begin() as conn:
        conn.execute(delete(provider_cursors))
    replay = poll_email_events(email_world.ledger, email_world.cfg)
    assert replay["fetched"] == len(produced) and replay["inserted"] == 0

    # new sends: only their events are new
    email_world.add_contacts(2, start=10)
    send_due(email_world.ledger, email_world.cfg)
    more = poll_email_events(email_world.ledger, email_world.cfg)
    assert more["inserted"] == len(sandbox_events(email_world)) - len(produced) > 0

    exported = export_email_events(email_world.ledger)
    assert len(exported) == stored_count(email_world)
    assert len({row["sg_event_id"] for row in exported}) == len(exported)
    assert set(exported[0]) == set(COLUMNS)
    bounced = [row for row in exported if row["event"] == "bounce"]
    assert any(row["email"] == "bounce.me@example.test" for row in bounced)
    bounce = next(row for row in bounced if row["email"] == "bounce.me@example.test")
    assert bounce["dispatch_id"] in ids and bounce["campaign_id"] == "abandoned_cart_nearby_store"
    assert bounce["reason"] and "5.1.1" in bounce["reason"]
    contact = email_world.ledger.get(bounce["dispatch_id"])
    assert bounce["customer_id"] == contact.customer_id
    assert bounce["sg_message_id"].startswith(contact.provider_message_id or "?")
    assert isinstance(bounce["occurred_at"], datetime)


def test_an_unknown_email_is_reconciled_to_sent_from_its_events(email_world: EmailWorld) -> None:
    (slow,) = email_world.add_contacts(1)
    email_world.faults(latency_ms=1500)
    assert send_due(email_world.ledger, email_world.cfg, timeout=0.5)["unknown"] == 1
    email_world.clear_faults()
    wait_for(lambda: len(email_world.messages(dispatch_id=slow)) == 1)
    (message,) = email_world.messages(dispatch_id=slow)

    counts = poll_email_events(email_world.ledger, email_world.cfg)
    assert counts["reconciled_sent"] == 1 and counts["still_unknown"] == 0
    contact = email_world.ledger.get(slow)
    assert contact.state is State.SENT
    assert contact.provider_message_id == message["message_id"]
    assert len(email_world.messages(dispatch_id=slow)) == 1


def test_an_unknown_email_sendgrid_never_saw_is_sent_again_once(email_world: EmailWorld) -> None:
    """A dispatcher that died while its request was in flight leaves an unknown contact; here
    SendGrid never saw it: after the settle time, its Email Activity says so, and it is sent."""
    (lost,) = email_world.add_contacts(1)
    start = datetime.now(UTC)
    (claimed,) = email_world.ledger.claim(Channel.EMAIL, 10, start)
    email_world.ledger.mark_unknown(claimed.contact_id, "crashed mid-call", now=start)
    settle = timedelta(seconds=email_world.cfg.dispatch_unknown_settle_seconds)

    soon = reconcile_with_activity(email_world.ledger, email_world.cfg, now=start)
    assert soon == {"activity_sent": 0, "activity_resend": 0, "activity_waiting": 1}
    assert email_world.ledger.get(lost).state is State.UNKNOWN
    assert send_due(email_world.ledger, email_world.cfg, now=start)["claimed"] == 0

    later = start + settle
    counts = reconcile_with_activity(email_world.ledger, email_world.cfg, now=later)
    assert counts["activity_resend"] == 1
    assert email_world.ledger.get(lost).state is State.PENDING
    assert send_due(email_world.ledger, email_world.cfg, now=later)["sent"] == 1
    assert len(email_world.messages(dispatch_id=lost)) == 1
    assert email_world.ledger.get(lost).attempts == 2  # the lost attempt and the one that went


def test_an_unknown_email_sendgrid_accepted_is_never_sent_again(email_world: EmailWorld) -> None:
    """No event was polled, but the Email Activity shows the message: ``sent``, not resent."""
    (slow,) = email_world.add_contacts(1)
    email_world.faults(latency_ms=1500)
    assert send_due(email_world.ledger, email_world.cfg, timeout=0.5)["unknown"] == 1
    email_world.clear_faults()
    wait_for(lambda: len(email_world.messages(dispatch_id=slow)) == 1)
    (message,) = email_world.messages(dispatch_id=slow)
    later = datetime.now(UTC) + timedelta(hours=1)
    counts = reconcile_with_activity(email_world.ledger, email_world.cfg, now=later)
    assert counts["activity_sent"] == 1 and counts["activity_resend"] == 0
    contact = email_world.ledger.get(slow)
    assert contact.state is State.SENT
    assert contact.provider_message_id == message["message_id"]
    assert send_due(email_world.ledger, email_world.cfg, now=later)["claimed"] == 0
    assert len(email_world.messages(dispatch_id=slow)) == 1


def test_an_activity_lookup_that_fails_leaves_the_email_unknown(email_world: EmailWorld) -> None:
    (lost,) = email_world.add_contacts(1)
    start = datetime.now(UTC)
    (claimed,) = email_world.ledger.claim(Channel.EMAIL, 10, start)
    email_world.ledger.mark_unknown(claimed.contact_id, "crashed mid-call", now=start)
    email_world.faults(error_rate=1.0, error_status=503)
    later = start + timedelta(days=2)
    counts = reconcile_with_activity(email_world.ledger, email_world.cfg, now=later)
    assert counts == {"activity_sent": 0, "activity_resend": 0, "activity_waiting": 1}
    assert email_world.ledger.get(lost).state is State.UNKNOWN  # never resent blindly
    email_world.clear_faults()
    assert (
        reconcile_with_activity(email_world.ledger, email_world.cfg, now=later)["activity_resend"]
        == 1
    )

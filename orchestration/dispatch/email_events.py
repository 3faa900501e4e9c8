"""SendGrid's events back into the ledger database, and the reconciliation of unknown emails.

SendGrid reports what happened to each recipient (processed, delivered, open, click, bounce,
dropped, deferred, unsubscribe / group_unsubscribe, spamreport) through its Event Webhook. The
sandbox keeps those records for a poller (``GET /_sandbox/events?after=<position>``);
:func:`poll_email_events` reads the feed from the last position it stored (table
``provider_cursors``) and inserts each event once (table ``email_events``, primary key
``sg_event_id``: a replayed page or a lost cursor inserts nothing twice). The page and the new
cursor position commit together.

Then it settles the email contacts whose send has an unknown outcome (a timeout after the
request left): an event carrying their ``dispatch_id`` proves SendGrid accepted them
(``sent``, with the message id); one unknown for more than 24 hours with no event is flagged
``dead_lettered`` (never resent: an email is never sent twice).

The events load into the warehouse (``dispatch.email_events``) through
:func:`export_email_events`; the marts read ``unsubscribe`` and ``group_unsubscribe`` alike.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, insert, select
from sqlalchemy.engine import Connection

from orchestration.dispatch.ledger import Ledger
from orchestration.dispatch.states import Channel, State
from orchestration.settings import Settings

log = logging.getLogger(__name__)

CURSOR_NAME = "sendgrid_events"
PAGE_SIZE = 5000
UNKNOWN_GIVE_UP = timedelta(hours=24)
TIMEOUT = (5, 30)  # connect, read (seconds)
_CHUNK = 500

metadata = MetaData()

email_events = Table(
    "email_events",
    metadata,
    Column("sg_event_id", String(100), primary_key=True),
    Column("event", String(32), nullable=False),
    Column("email", Text),
    Column("occurred_at", DateTime),  # naive UTC, from the event's unix `timestamp`
    Column("sg_message_id", String(200)),
    Column("dispatch_id", String(32), index=True),  # the ledger's contact_id (custom arg)
    Column("campaign_id", String(200)),
    Column("customer_id", String(200)),
    Column("reason", Text),  # bounce / dropped / deferred reason
    Column("url", Text),  # click
    Column("received_at", DateTime, nullable=False),
)

provider_cursors = Table(
    "provider_cursors",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("position", Integer, nullable=False),
)

COLUMNS: tuple[str, ...] = tuple(column.name for column in email_events.columns)


class EventFeedError(RuntimeError):
    """The event feed answered something unusable; nothing of that page was stored."""


def ensure_tables(ledger: Ledger) -> None:
    """Create ``email_events`` and ``provider_cursors`` in the ledger database if missing."""
    metadata.create_all(ledger.engine)


def _naive_utc(stamp: datetime | None) -> datetime:
    value = stamp or datetime.now(UTC)
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def event_row(record: Mapping[str, Any], received_at: datetime) -> dict[str, Any]:
    """One ``email_events`` row from an Event Webhook record (custom args are top-level)."""
    event_id = _text(record.get("sg_event_id"))
    if event_id is None or not record.get("event"):
        raise EventFeedError(f"an event without sg_event_id or event: {dict(record)!r}")
    timestamp = record.get("timestamp")
    occurred = (
        datetime.fromtimestamp(int(timestamp), UTC).replace(tzinfo=None)
        if isinstance(timestamp, int | float) and not isinstance(timestamp, bool)
        else None
    )
    return {
        "sg_event_id": event_id,
        "event": str(record["event"]),
        "email": _text(record.get("email")),
        "occurred_at": occurred,
        "sg_message_id": _text(record.get("sg_message_id")),
        "dispatch_id": _text(record.get("dispatch_id")),
        "campaign_id": _text(record.get("campaign_id")),
        "customer_id": _text(record.get("customer_id")),
        "reason": _text(record.get("reason") or record.get("response")),
        "url": _text(record.get("url")),
        "received_at": received_at,
    }


def _cursor(conn: Connection, name: str) -> int:
    found = conn.scalar(select(provider_cursors.c.position).where(provider_cursors.c.name == name))
    return int(found) if found is not None else 0


def _store_page(ledger: Ledger, rows: Sequence[dict[str, Any]], position: int) -> int:
    """Insert the page's new events and move the cursor forward, in one transaction; returns
    the number inserted (a page another poller stored first inserts nothing)."""
    with ledger.engine.begin() as conn:
        inserted = _insert_absent(conn, rows)
        current = conn.scalar(
            select(provider_cursors.c.position).where(provider_cursors.c.name == CURSOR_NAME)
        )
        if current is None:
            conn.execute(insert(provider_cursors).values(name=CURSOR_NAME, position=position))
        elif int(current) < position:
            conn.execute(
                provider_cursors.update()
                .where(provider_cursors.c.name == CURSOR_NAME)
                .values(position=position)
            )
    return inserted


def _insert_absent(conn: Connection, rows: Iterable[dict[str, Any]]) -> int:
    unique = {row["sg_event_id"]: row for row in rows}
    ids = list(unique)
    inserted = 0
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        existing: set[str] = set(
            conn.scalars(
                select(email_events.c.sg_event_id).where(email_events.c.sg_event_id.in_(chunk))
            )
        )
        new = [unique[event_id] for event_id in chunk if event_id not in existing]
        if new:
            conn.execute(insert(email_events), new)
            inserted += len(new)
    return inserted


def _fetch(base_url: str, after: int, page_size: int) -> tuple[list[dict[str, Any]], int]:
    response = requests.get(
        f"{base_url.rstrip('/')}/_sandbox/events",
        params={"after": after, "limit": page_size},
        timeout=TIMEOUT,
    )
    response.raise_for_status()
    body = response.json()
    events, next_after = body.get("events"), body.get("next_after")
    if not isinstance(events, list) or not isinstance(next_after, int) or next_after < after:
        raise EventFeedError(f"unexpected event feed page after {after}: {str(body)[:300]}")
    return events, next_after


def reconcile_unknown(ledger: Ledger, *, now: datetime | None = None) -> dict[str, int]:
    """Settle ``unknown`` email contacts from the stored events (see the module)."""
    stamp = _naive_utc(now)
    counts = {"reconciled_sent": 0, "reconciled_dead": 0, "still_unknown": 0}
    unknown = ledger.list_contacts(state=State.UNKNOWN, channel=Channel.EMAIL)
    if not unknown:
        return counts
    ids = [contact.contact_id for contact in unknown]
    message_ids: dict[str, str | None] = {}
    with ledger.engine.connect() as conn:
        for start in range(0, len(ids), _CHUNK):
            query = (
                select(email_events.c.dispatch_id, email_events.c.sg_message_id)
                .where(email_events.c.dispatch_id.in_(ids[start : start + _CHUNK]))
                .order_by(email_events.c.occurred_at)
            )
            for dispatch_id, sg_message_id in conn.execute(query).tuples():
                if message_ids.get(str(dispatch_id)) is None:
                    message_ids[str(dispatch_id)] = _text(sg_message_id)
    for contact in unknown:
        if contact.contact_id in message_ids:
            found = message_ids[contact.contact_id]
            # sg_message_id is "<X-Message-Id>.filter…": keep what a 202 would have recorded
            message_id = found.split(".", 1)[0] if found else None
            ledger.reconcile(contact.contact_id, True, message_id, now=stamp)
            counts["reconciled_sent"] += 1
        elif _naive_utc(contact.state_changed_at) < stamp - UNKNOWN_GIVE_UP:
            ledger.reconcile(contact.contact_id, False, now=stamp)
            counts["reconciled_dead"] += 1
        else:
            counts["still_unknown"] += 1
    return counts


def poll_email_events(
    ledger: Ledger,
    cfg: Settings,
    *,
    now: datetime | None = None,
    page_size: int = PAGE_SIZE,
) -> dict[str, int]:
    """Read SendGrid's new events into ``email_events``, then reconcile unknown contacts.

    Returns ``{"fetched", "inserted", "reconciled_sent", "reconciled_dead", "still_unknown"}``.
    ``now`` stamps ``received_at`` and decides which unknown contacts are old enough to flag.
    """
    ensure_tables(ledger)
    received_at = _naive_utc(now)
    counts = {"fetched": 0, "inserted": 0}
    base_url = cfg.base_urls["sendgrid"]
    with ledger.engine.connect() as conn:
        after = _cursor(conn, CURSOR_NAME)
    while True:
        events, next_after = _fetch(base_url, after, page_size)
        if not events and next_after == after:
            break
        rows = [event_row(event, received_at) for event in events]
        counts["fetched"] += len(rows)
        counts["inserted"] += _store_page(ledger, rows, next_after)
        after = next_after
        if not events:
            break
    result = {**counts, **reconcile_unknown(ledger, now=now)}
    log.info("SendGrid events: %s", result)
    return result


def export_email_events(ledger: Ledger) -> list[dict[str, Any]]:
    """Every stored event (``COLUMNS``), oldest first: the warehouse's ``dispatch.email_events``."""
    ensure_tables(ledger)
    query = select(email_events).order_by(email_events.c.occurred_at, email_events.c.sg_event_id)
    with ledger.engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


__all__ = [
    "COLUMNS",
    "CURSOR_NAME",
    "EventFeedError",
    "email_events",
    "ensure_tables",
    "event_row",
    "export_email_events",
    "poll_email_events",
    "provider_cursors",
    "reconcile_unknown",
]

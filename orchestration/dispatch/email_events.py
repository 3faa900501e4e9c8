"""SendGrid's events back into the ledger database, and the reconciliation of unknown emails.

SendGrid reports what happened to each recipient (processed, delivered, open, click, bounce,
dropped, deferred, unsubscribe / group_unsubscribe, spamreport) through its Event Webhook. The
sandbox keeps those records for a poller (``GET /_sandbox/events?after=<position>``);
:func:`poll_email_events` reads the feed from the last position it stored (table
``provider_cursors``) and inserts each event once (table ``email_events``, primary key
``sg_event_id``: a replayed page or a lost cursor inserts nothing twice). The page and the new
cursor position commit together.

Then it settles the email contacts whose send has an unknown outcome (a timeout after the
request left, a dispatcher killed while its request was in flight): an event carrying their
``dispatch_id`` proves SendGrid accepted them (``sent``, with the message id).
:func:`reconcile_with_activity` settles the others once they have been unknown for longer
than any request can still be in flight (settings ``dispatch_unknown_settle_seconds``): it asks
SendGrid's Email Activity API for the message by its ``dispatch_id`` custom arg
(``GET /v3/messages?query=unique_args['dispatch_id']="<id>"``). Found: ``sent``. Not found:
SendGrid never saw it, so it goes back to ``pending`` and is sent again. When the lookup fails
the contact stays ``unknown`` (never resent blindly: an email is never sent twice).

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
from orchestration.dispatch.states import Channel, IllegalTransition, State
from orchestration.settings import Settings

log = logging.getLogger(__name__)

CURSOR_NAME = "sendgrid_events"
PAGE_SIZE = 5000
TIMEOUT = (5, 30)  # connect, read (seconds)
ACTIVITY_LIMIT = 10  # messages asked for per lookup (one email has one recipient)
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
    """Settle ``unknown`` email contacts that the stored events prove SendGrid accepted (see
    the module); the others wait for :func:`reconcile_with_activity`."""
    stamp = _naive_utc(now)
    counts = {"reconciled_sent": 0, "still_unknown": 0}
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
            try:
                ledger.reconcile(contact.contact_id, True, message_id, now=stamp)
            except IllegalTransition:  # settled meanwhile by another dispatcher
                continue
            counts["reconciled_sent"] += 1
        else:
            counts["still_unknown"] += 1
    return counts


def activity_query(dispatch_id: str) -> str:
    """The Email Activity query for the messages carrying this ``dispatch_id`` custom arg."""
    return f"unique_args['dispatch_id']=\"{dispatch_id}\""


def find_in_activity(
    client: requests.Session, base_url: str, dispatch_id: str
) -> list[dict[str, Any]]:
    """The Email Activity messages of one ``dispatch_id`` (raises for an HTTP error)."""
    response = client.get(
        f"{base_url.rstrip('/')}/v3/messages",
        params={"query": activity_query(dispatch_id), "limit": str(ACTIVITY_LIMIT)},
        timeout=TIMEOUT,
    )
    response.raise_for_status()
    messages = response.json().get("messages")
    if not isinstance(messages, list):
        raise EventFeedError(f"unexpected Email Activity answer: {response.text[:300]}")
    return [message for message in messages if isinstance(message, dict)]


def reconcile_with_activity(
    ledger: Ledger,
    cfg: Settings,
    *,
    now: datetime | None = None,
    settle: timedelta | None = None,
) -> dict[str, int]:
    """Settle each ``unknown`` email that has waited ``settle`` (default: settings
    ``dispatch_unknown_settle_seconds``) from SendGrid's Email Activity (see the module).
    Returns ``{"activity_sent", "activity_resend", "activity_waiting"}``. A lookup that fails
    (SendGrid down, rate limited) leaves the rest unknown for the next run."""
    from orchestration.dispatch import pacing

    stamp = _naive_utc(now)
    wait = settle if settle is not None else timedelta(seconds=cfg.dispatch_unknown_settle_seconds)
    counts = {"activity_sent": 0, "activity_resend": 0, "activity_waiting": 0}
    unknown = ledger.list_contacts(state=State.UNKNOWN, channel=Channel.EMAIL)
    ready = [c for c in unknown if _naive_utc(c.state_changed_at) <= stamp - wait]
    counts["activity_waiting"] = len(unknown) - len(ready)
    if not ready:
        return counts
    provider = pacing.channel_gate(Channel.EMAIL, cfg)
    base_url = cfg.base_urls["sendgrid"]
    with requests.Session() as client:
        client.headers["Authorization"] = f"Bearer {cfg.tokens['sendgrid']}"
        for number, contact in enumerate(ready):
            started = provider.acquire()
            try:
                messages = find_in_activity(client, base_url, contact.contact_id)
            except (requests.RequestException, ValueError) as error:
                response = getattr(error, "response", None)
                if response is not None and response.status_code == 429:
                    provider.rate_limited(started, float(response.headers.get("Retry-After", 1)))
                log.warning(
                    "Email Activity lookup failed (%s): %d unknown emails wait for the next run",
                    error,
                    len(ready) - number,
                )
                counts["activity_waiting"] += len(ready) - number
                break
            message_id = str(messages[0].get("msg_id") or "").split(".", 1)[0] if messages else ""
            try:
                ledger.reconcile(contact.contact_id, bool(messages), message_id or None, now=stamp)
            except IllegalTransition:  # settled meanwhile (its events, another dispatcher)
                continue
            counts["activity_sent" if messages else "activity_resend"] += 1
    log.info("Unknown emails settled from SendGrid's Email Activity: %s", counts)
    return counts


def poll_email_events(
    ledger: Ledger,
    cfg: Settings,
    *,
    now: datetime | None = None,
    page_size: int = PAGE_SIZE,
) -> dict[str, int]:
    """Read SendGrid's new events into ``email_events``, then settle the unknown contacts
    they prove accepted (the others wait for :func:`reconcile_with_activity`).

    Returns ``{"fetched", "inserted", "reconciled_sent", "still_unknown"}``.
    ``now`` stamps ``received_at`` and the reconciliations.
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
    "reconcile_with_activity",
]

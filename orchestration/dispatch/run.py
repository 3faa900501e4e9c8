"""One dispatch run: from the outbox to the providers, safe to kill and run again at any point.

:func:`dispatch` ties the channels together, in this order:

1. open the ledger;
2. settle contacts a crashed dispatcher left in ``sending`` for longer than ``stale_after``
   (:meth:`Ledger.recover_stale`: email -> ``unknown``, cashback and in-store -> ``pending``);
3. read SendGrid's event feed and reconcile ``unknown`` emails
   (:func:`email_events.poll_email_events`); ask SendGrid's Email Activity about those still
   unknown after the settle time (:func:`email_events.reconcile_with_activity`): found ->
   ``sent``, never seen -> ``pending`` (sent again in this run);
4. record every hand-off file of ``OMNI_HOME/outbox/**.parquet`` not recorded yet
   (:meth:`Ledger.record_handoff` is idempotent; the table ``handoff_files`` in the ledger
   database remembers the files already recorded, so a run does not re-read them all);
5. check the offer of every contact about to be sent (:func:`offer_check.check_pending`);
6. each channel's ``send_due`` (email, loyalty cashback, in-store);
7. the staff sheets (:func:`staff_sheets.write_staff_sheets`);
8. the ledger's counts per channel and state, logged, ending with one line
   ``sent N, suppressed N, failed N, dead letters N, unknown N``.

Every step is idempotent and every outcome is in the ledger the moment it is known, so a run
killed anywhere is finished by the next one: every intended contact is delivered once. A
provider that refuses everything (an outage) stops its channel for this run after a few
requests (:mod:`.pacing`); its contacts wait, with backoff, for the next runs until the retry
horizon (settings ``dispatch_retry_horizon_hours``). :func:`requeue` (``omni dispatch
retry``) brings dead letters back. Airflow runs the same steps as separate tasks:
:func:`prepare` (1-5), one mapped :func:`dispatch_channel` per channel (6), then
:func:`summarize` (7-8).
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import requests
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
)
from sqlalchemy.exc import DatabaseError

from orchestration.dispatch import offer_check, pacing
from orchestration.dispatch.ledger import Ledger, contacts
from orchestration.dispatch.states import Channel, State
from orchestration.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_STALE_AFTER = timedelta(minutes=10)
# How long a run waits for contacts whose retry time is near (a 429's Retry-After, a backoff).
DEFAULT_RETRY_WAIT = timedelta(minutes=2)
CHANNELS: tuple[Channel, ...] = (Channel.EMAIL, Channel.LOYALTY_CASHBACK, Channel.IN_STORE)
# The sender module of each channel (each exposes the contract's ``send_due``).
SENDER_MODULES: dict[Channel, str] = {
    Channel.EMAIL: "orchestration.dispatch.email",
    Channel.LOYALTY_CASHBACK: "orchestration.dispatch.cashback",
    Channel.IN_STORE: "orchestration.dispatch.in_store",
}
# The order of the closing line (label, ledger state).
SUMMARY_STATES: tuple[tuple[str, State], ...] = (
    ("sent", State.SENT),
    ("suppressed", State.SUPPRESSED),
    ("failed", State.FAILED),
    ("dead letters", State.DEAD_LETTERED),
    ("unknown", State.UNKNOWN),
)

SendDue = Callable[..., dict[str, int]]

handoff_metadata = MetaData()

# The hand-off files already recorded in the ledger (one row per file, by outbox-relative path).
handoff_files = Table(
    "handoff_files",
    handoff_metadata,
    Column("path", String(500), primary_key=True),
    Column("size_bytes", Integer, nullable=False),
    Column("recorded", Integer, nullable=False),
    Column("already_recorded", Integer, nullable=False),
    Column("recorded_at", DateTime, nullable=False),
)


def _channels(channels: Iterable[Channel | str] | None) -> list[Channel]:
    if channels is None:
        return list(CHANNELS)
    return [Channel(channel) for channel in channels]


def sender(channel: Channel | str) -> SendDue:
    """The ``send_due`` of a channel's module (imported when first needed)."""
    module = importlib.import_module(SENDER_MODULES[Channel(channel)])
    return cast(SendDue, module.send_due)


def outbox_root(cfg: Settings) -> Path:
    return cfg.omni_home / "outbox"


def handoff_candidates(cfg: Settings, campaign_id: str | None = None) -> list[Path]:
    """The hand-off files in the outbox (of one campaign, or all), sorted by path; temporary
    files (``.name.pid.tmp``) and hidden files are not hand-offs."""
    root = outbox_root(cfg)
    base = root / campaign_id if campaign_id is not None else root
    if not base.is_dir():
        return []
    return sorted(
        path
        for path in base.rglob("*.parquet")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def _create_handoff_table(ledger: Ledger) -> None:
    """Create ``handoff_files`` when missing (a concurrent creator may win the race)."""
    try:
        handoff_metadata.create_all(ledger.engine)
    except DatabaseError:
        handoff_metadata.create_all(ledger.engine)  # now it exists: nothing to do


def record_outbox(
    ledger: Ledger, cfg: Settings, *, campaign_id: str | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Record the contacts of every hand-off file not recorded yet; remember each file.

    A file is remembered only after its contacts are recorded (a crash in between records it
    again next time, which changes nothing). A file that cannot be read or recorded is logged
    with its error, left unremembered (retried next run) and listed under ``errors``; the other
    files are recorded. Returns ``{"files", "recorded", "already_recorded", "errors"}``.
    """
    root = outbox_root(cfg)
    _create_handoff_table(ledger)
    with ledger.engine.connect() as conn:
        known: set[str] = set(conn.scalars(select(handoff_files.c.path)))
    result: dict[str, Any] = {"files": 0, "recorded": 0, "already_recorded": 0, "errors": []}
    for path in handoff_candidates(cfg, campaign_id):
        name = path.relative_to(root).as_posix()
        if name in known:
            continue
        try:
            counts = ledger.record_handoff(path, now=now)
        except Exception as error:  # noqa: BLE001 - one bad file must not stop the others
            log.error("Dispatch: hand-off %s not recorded: %s", path, error)
            result["errors"].append(f"{name}: {error}")
            continue
        with ledger.engine.begin() as conn:
            exists = conn.scalar(select(func.count()).where(handoff_files.c.path == name))
            if not exists:
                conn.execute(
                    insert(handoff_files).values(
                        path=name,
                        size_bytes=path.stat().st_size,
                        recorded=int(counts.get("recorded", 0)),
                        already_recorded=int(counts.get("already_recorded", 0)),
                        recorded_at=datetime.now(UTC).replace(tzinfo=None),
                    )
                )
        result["files"] += 1
        result["recorded"] += int(counts.get("recorded", 0))
        result["already_recorded"] += int(counts.get("already_recorded", 0))
    return result


def _poll_events(ledger: Ledger, cfg: Settings, now: datetime | None) -> dict[str, Any]:
    from orchestration.dispatch import email_events

    polled: dict[str, Any]
    try:
        polled = dict(email_events.poll_email_events(ledger, cfg, now=now))
    except requests.RequestException as error:  # SendGrid's feed is down: reconcile next run
        log.warning("Dispatch: email events not polled (%s); unknown emails wait", error)
        polled = {"error": str(error)}
    polled.update(email_events.reconcile_with_activity(ledger, cfg, now=now))
    return polled


def _prepare(
    ledger: Ledger,
    cfg: Settings,
    *,
    campaign_id: str | None,
    channels: Sequence[Channel],
    now: datetime | None,
    stale_after: timedelta,
) -> dict[str, Any]:
    recovered = {
        channel.value: ledger.recover_stale(channel, stale_after, now) for channel in channels
    }
    events = _poll_events(ledger, cfg, now) if Channel.EMAIL in channels else {}
    handoffs = record_outbox(ledger, cfg, campaign_id=campaign_id, now=now)
    checked = offer_check.check_pending(ledger, cfg, campaign_id=campaign_id)
    return {
        "recovered": recovered,
        "email_events": events,
        "handoffs": handoffs,
        "offer_check": checked,
    }


def prepare(
    cfg: Settings,
    *,
    campaign_id: str | None = None,
    channels: Iterable[Channel | str] | None = None,
    now: datetime | None = None,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
) -> dict[str, Any]:
    """The steps before sending (stale recovery, email events, outbox, offer check)."""
    with Ledger.from_settings(cfg) as ledger:
        return _prepare(
            ledger,
            cfg,
            campaign_id=campaign_id,
            channels=_channels(channels),
            now=now,
            stale_after=stale_after,
        )


def _send(
    ledger: Ledger,
    cfg: Settings,
    channel: Channel,
    *,
    campaign_id: str | None,
    now: datetime | None,
    limit: int | None,
    wait_for_retries: timedelta = DEFAULT_RETRY_WAIT,
) -> dict[str, int]:
    """Send the channel's due contacts; then, on the real clock, wait for contacts whose retry
    time (a 429's Retry-After, a 5xx backoff) comes within ``wait_for_retries`` and send them
    too, so a short rate limit does not leave them for the next run."""
    started = time.monotonic()
    send = sender(channel)
    log.info("Dispatch %s: sending", channel.value)
    counts = dict(send(ledger, cfg, now=now, limit=limit, campaign_id=campaign_id))
    deadline = started + wait_for_retries.total_seconds()
    provider = pacing.channel_gate(channel, cfg)
    while now is None and (limit is None or counts.get("claimed", 0) < limit):
        if provider.down:
            log.info("Dispatch %s: the provider looks down; retries wait for the next run", channel)
            break
        retry_at = ledger.next_retry_at(channel, campaign_id=campaign_id)
        if retry_at is None:
            break
        pause = max((retry_at - datetime.now(UTC)).total_seconds(), 0.0) + 0.05
        if time.monotonic() + pause > deadline:
            log.info("Dispatch %s: retries from %s are left for the next run", channel, retry_at)
            break
        time.sleep(pause)
        more = send(ledger, cfg, now=None, limit=limit, campaign_id=campaign_id)
        for key, value in more.items():
            counts[key] = counts.get(key, 0) + int(value)
    seconds = time.monotonic() - started
    handled = int(counts.get("claimed", 0))
    rate = f", {handled / seconds:.0f} contacts/s" if handled and seconds > 0 else ""
    log.info("Dispatch %s: %s in %.1f s%s", channel.value, counts, seconds, rate)
    return counts


def dispatch_channel(
    cfg: Settings,
    channel: Channel | str,
    *,
    campaign_id: str | None = None,
    now: datetime | None = None,
    limit: int | None = None,
) -> dict[str, int]:
    """Send the due contacts of one channel (one Airflow mapped task per channel)."""
    with Ledger.from_settings(cfg) as ledger:
        return _send(ledger, cfg, Channel(channel), campaign_id=campaign_id, now=now, limit=limit)


def summary_line(totals: dict[str, int]) -> str:
    """``sent N, suppressed N, failed N, dead letters N, unknown N`` from state counts."""
    return ", ".join(f"{label} {totals.get(state.value, 0)}" for label, state in SUMMARY_STATES)


def _summarize(
    ledger: Ledger,
    cfg: Settings,
    *,
    campaign_id: str | None,
    channels: Sequence[Channel],
    write_sheets: bool,
) -> dict[str, Any]:
    sheets: list[str] = []
    sheets_error: str | None = None
    if write_sheets and Channel.IN_STORE in channels:
        from orchestration.dispatch.staff_sheets import write_staff_sheets

        log.info("Dispatch: writing the staff sheets")
        try:
            sheets = [str(path) for path in write_staff_sheets(ledger, cfg)]
        except Exception as error:  # noqa: BLE001 - every send is recorded: report, then count
            log.exception("Dispatch: staff sheets not written")
            sheets_error = f"{type(error).__name__}: {error}"
    by_channel = {
        channel.value: ledger.counts(campaign_id=campaign_id, channel=channel)
        for channel in channels
    }
    totals = {
        state.value: sum(counts[state.value] for counts in by_channel.values()) for state in State
    }
    for channel, counts in by_channel.items():
        log.info("Dispatch %s: %s", channel, summary_line(counts))
    waiting = totals[State.PENDING.value] + totals[State.SENDING.value]
    if waiting:
        log.info("Dispatch: %s contacts wait (send time not reached, or in flight)", waiting)
    line = summary_line(totals)
    log.info("%s", line)
    return {
        "by_channel": by_channel,
        "totals": totals,
        "staff_sheets": sheets,
        "staff_sheets_error": sheets_error,
        "summary": line,
    }


def summarize(
    cfg: Settings,
    *,
    campaign_id: str | None = None,
    channels: Iterable[Channel | str] | None = None,
    write_sheets: bool = True,
) -> dict[str, Any]:
    """Write the staff sheets and log the ledger's counts per channel and state; the last
    line logged (and ``summary``) is ``sent N, suppressed N, failed N, dead letters N,
    unknown N``. A staff sheet failure is logged and returned as ``staff_sheets_error`` (every
    send is already recorded; the counts are still logged)."""
    with Ledger.from_settings(cfg) as ledger:
        return _summarize(
            ledger,
            cfg,
            campaign_id=campaign_id,
            channels=_channels(channels),
            write_sheets=write_sheets,
        )


def dispatch(
    cfg: Settings,
    *,
    campaign_id: str | None = None,
    channels: Iterable[Channel | str] | None = None,
    now: datetime | None = None,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    limit: int | None = None,
) -> dict[str, Any]:
    """One whole dispatch run (see the module docstring); returns what each step did and the
    final counts: ``{"prepare", "sent_by_channel", "by_channel", "totals", "staff_sheets",
    "summary"}``."""
    chosen = _channels(channels)
    with Ledger.from_settings(cfg) as ledger:
        prepared = _prepare(
            ledger, cfg, campaign_id=campaign_id, channels=chosen, now=now, stale_after=stale_after
        )
        sent = {
            channel.value: _send(
                ledger, cfg, channel, campaign_id=campaign_id, now=now, limit=limit
            )
            for channel in chosen
        }
        summary = _summarize(
            ledger, cfg, campaign_id=campaign_id, channels=chosen, write_sheets=True
        )
    return {"prepare": prepared, "sent_by_channel": sent, **summary}


def requeue(
    cfg: Settings,
    *,
    campaign_id: str | None = None,
    channel: Channel | str | None = None,
    reason: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Bring dead letters back to ``pending`` (``omni dispatch retry``): those of a campaign, a
    channel, and/or whose reason contains ``reason`` (any case); the next run sends them.
    Returns ``{"dead_letters": N matching, "requeued": N, "by_reason": {reason: N}}`` (nothing
    changes with ``dry_run``)."""
    with Ledger.from_settings(cfg) as ledger:
        chosen = ledger.dead_letters(campaign_id=campaign_id, channel=channel, reason=reason)
        by_reason: dict[str, int] = {}
        for contact in chosen:
            text = (contact.last_error or "no reason")[:120]
            by_reason[text] = by_reason.get(text, 0) + 1
        requeued = 0
        if not dry_run:
            requeued = len(ledger.requeue(campaign_id=campaign_id, channel=channel, reason=reason))
    return {"dead_letters": len(chosen), "requeued": requeued, "by_reason": by_reason}


def status(cfg: Settings, *, campaign_id: str | None = None) -> list[dict[str, Any]]:
    """Ledger rows per campaign, channel and state (``omni dispatch status``)."""
    query = (
        select(contacts.c.campaign_id, contacts.c.channel, contacts.c.state, func.count())
        .group_by(contacts.c.campaign_id, contacts.c.channel, contacts.c.state)
        .order_by(contacts.c.campaign_id, contacts.c.channel, contacts.c.state)
    )
    if campaign_id is not None:
        query = query.where(contacts.c.campaign_id == campaign_id)
    with Ledger.from_settings(cfg) as ledger, ledger.engine.connect() as conn:
        return [
            {"campaign_id": row[0], "channel": row[1], "state": row[2], "contacts": int(row[3])}
            for row in conn.execute(query).tuples()
        ]


__all__ = [
    "CHANNELS",
    "DEFAULT_STALE_AFTER",
    "dispatch",
    "dispatch_channel",
    "handoff_candidates",
    "handoff_files",
    "prepare",
    "record_outbox",
    "requeue",
    "sender",
    "status",
    "summarize",
    "summary_line",
]

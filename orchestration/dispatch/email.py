"""The email channel: due ledger contacts rendered from their campaign and sent through SendGrid.

:func:`send_due` reads due ``email`` contacts from the ledger, renders each one with the
renderer of ``omni campaigns preview`` (:func:`~orchestration.campaigns.preview.contact_context`
+ :func:`~orchestration.campaigns.templating.render_contact`), sends them with the SendGrid SDK
(v3 Mail Send) and records every outcome in the ledger the moment it arrives. A request's
contacts go to ``sending`` only when it leaves (:func:`~orchestration.dispatch.pacing.
send_window`), so a crash leaves at most the requests in flight, never contacts that were only
read or rendered. The outcomes:

- 202: ``sent`` with the ``X-Message-Id``;
- 429: ``failed``, due again at ``Retry-After`` / ``X-RateLimit-Reset`` without using up an
  attempt; every request to SendGrid waits until then and goes slower (the provider's gate);
- 5xx, or the connection failed before the request was complete (refused, reset while
  writing): ``failed``, retried with exponential backoff (nothing was accepted) until the retry
  horizon; many in a row stop the run (an outage: the rest waits for the next run);
- 401/403 (a wrong API key): ``failed`` and :class:`EmailAuthError` (the whole audience must
  not be dead-lettered because of a configuration mistake);
- other 4xx: ``dead_lettered`` with SendGrid's error messages. When a request carrying several
  personalizations fails only because of some of them (a bad address), those are
  dead-lettered and the others are sent again without them: a 400 accepts nothing;
- the request left but no answer came (read timeout, connection lost): ``unknown``. Such a
  contact is never sent as it is; :mod:`.email_events` settles it from SendGrid's events or,
  after the settle time, its Email Activity: ``sent`` when SendGrid has it, sent again when
  SendGrid never saw it.

A contact that cannot be rendered (campaign file missing or broken, template error, no
address, an offer that differs from the campaign's) is dead-lettered with the reason; the rest
goes on. Every request meets SendGrid's documented limits (unique categories: a campaign whose
id is its trigger type names it once; a non-empty subject and bodies, text before HTML;
``send_at`` within 72 hours; the configured unsubscribe group): the sandbox refuses anything
else, as SendGrid does.

Batching: the rendered content of a contact is personal (first name, store, cart), and a v3
request carries one content for all its personalizations, so contacts share a request only
when their rendered subject, HTML and text are identical (up to ``batch_size``, at most 1,000
personalizations); each personalization has its own ``custom_args``, ``send_at`` and
List-Unsubscribe headers. See docs/decisions.md.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
import urllib.error
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from orchestration.campaigns import Campaign, load_all, render_contact
from orchestration.campaigns.preview import PreviewError, contact_context
from orchestration.dispatch import pacing
from orchestration.dispatch.ledger import Contact, Ledger
from orchestration.dispatch.states import DISPATCH_LOOKAHEAD, Channel, IllegalTransition, State
from orchestration.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
MAX_PERSONALIZATIONS = 1000  # SendGrid's limit per request
MAX_CATEGORIES = 10  # per request, each unique and at most 255 characters
MAX_CATEGORY_LENGTH = 255
DEFAULT_WORKERS = 4  # requests in flight at once
# Contacts read and rendered at a time (one warehouse snapshot each). Identical messages share
# a request only within one read. A crash leaves only the requests in flight `sending`.
DEFAULT_CLAIM_SIZE = 32
DEFAULT_TIMEOUT_SECONDS = 30.0  # urllib's one socket timeout: connect, write and read
MAX_BACKOFF_SECONDS = 300.0  # default of settings.dispatch_max_backoff_seconds
SCHEDULE_HORIZON = timedelta(hours=72)  # SendGrid refuses send_at further ahead
UNSUBSCRIBE_POST = "List-Unsubscribe=One-Click"
COUNT_KEYS = ("claimed", "sent", "failed", "dead_lettered", "unknown")


class EmailDispatchError(RuntimeError):
    """The email channel cannot run (no warehouse to render from); nothing was claimed."""


class EmailAuthError(EmailDispatchError):
    """SendGrid refused the API key (401/403); the claimed contacts were put back as failed."""


class RenderProblem(ValueError):
    """One contact cannot be rendered: it is dead-lettered with this reason."""


@dataclass(frozen=True)
class Outgoing:
    """One contact rendered and ready for a personalization."""

    contact: Contact
    campaign: Campaign
    email: str
    subject: str
    html: str
    text: str
    send_at: int | None  # unix seconds, or None to send at once

    @property
    def content_key(self) -> tuple[str, str, str, str]:
        """Contacts with the same key can share one request (same content)."""
        return (self.campaign.id, self.subject, self.html, self.text)


# -- rendering -------------------------------------------------------------------------------


def _warehouse_snapshot(cfg: Settings, customer_ids: Sequence[str]) -> Any:
    """An in-memory DuckDB with what :func:`contact_context` reads for these customers
    (``marts.dim_customers`` rows, every ``marts.dim_stores`` row). The warehouse is attached
    read-only only while copying, so dispatch never holds its lock while it talks to SendGrid.
    """
    import duckdb

    if not cfg.warehouse_path.exists():
        raise EmailDispatchError(f"no warehouse at {cfg.warehouse_path}: run the pipeline first")
    memory = duckdb.connect()
    try:
        path = str(cfg.warehouse_path).replace("'", "''")
        memory.execute(f"attach '{path}' as warehouse (read_only)")
        memory.execute("create schema marts")
        memory.execute(
            """
            create table marts.dim_customers as
            select customer_id, first_name, last_name, email, city, nearest_store_id,
                nearest_store_distance_km
            from warehouse.marts.dim_customers
            where customer_id in (select unnest(?::varchar[]))
            """,
            [list(customer_ids)],
        )
        memory.execute(
            """
            create table marts.dim_stores as
            select store_id, store_name, city, postal_code, opens_local, closes_local
            from warehouse.marts.dim_stores
            """
        )
        memory.execute("detach warehouse")
    except duckdb.Error as error:
        memory.close()
        raise EmailDispatchError(
            f"cannot read the warehouse {cfg.warehouse_path}: {error}"
        ) from error
    return memory


def _offer_day(contact: Contact, campaign: Campaign, send_day: date) -> date:
    """The day the offer's validity counts from: the hand-off's ``offer_valid_until`` minus
    the campaign's validity, so the email shows the expiry every other channel uses."""
    until = contact.payload.get("offer_valid_until")
    if isinstance(until, str) and until:
        try:
            return date.fromisoformat(until[:10]) - timedelta(days=campaign.offer.validity_days)
        except ValueError:
            pass
    return send_day


def _send_at(contact: Contact) -> int | None:
    """``send_at`` (unix seconds) when the contact's send time is ahead of the real clock and
    within SendGrid's 72 h; else None (send at once)."""
    scheduled = contact.scheduled_send_at
    if scheduled is None:
        return None
    real_now = datetime.now(UTC)
    if real_now < scheduled <= real_now + SCHEDULE_HORIZON - timedelta(minutes=5):
        return int(scheduled.timestamp())
    return None


def render(contact: Contact, campaign: Campaign | None, con: Any, now: datetime) -> Outgoing:
    """Render one contact's email (raises :class:`RenderProblem` with the reason)."""
    if campaign is None:
        raise RenderProblem(f"campaign {contact.campaign_id!r} has no valid campaign file")
    channel = campaign.channels.email
    if channel is None or not channel.enabled:
        raise RenderProblem(f"campaign {campaign.id!r} has no enabled email channel")
    payload = contact.payload
    email = payload.get("email")
    if not isinstance(email, str) or not email.strip():
        raise RenderProblem("the contact has no email address")
    send_at = _send_at(contact)
    send_day = datetime.fromtimestamp(send_at, UTC).date() if send_at else now.date()
    row = {
        "payload_json": payload.get("payload_json"),
        "store_id": payload.get("store_id"),
        "distance_km": payload.get("distance_km"),
    }
    try:
        customer, extra = contact_context(con, campaign, contact.customer_id, row)
        rendered = render_contact(
            campaign, customer, extra, today=_offer_day(contact, campaign, send_day)
        )
    except PreviewError as error:
        raise RenderProblem(str(error)) from error
    except Exception as error:  # a template or data error: this contact only
        raise RenderProblem(f"rendering failed: {type(error).__name__}: {error}") from error
    if contact.offer_id is not None and contact.offer_id != rendered.offer_id:
        raise RenderProblem(
            f"offer mismatch: the contact carries {contact.offer_id}, the campaign "
            f"{rendered.offer_id}"
        )
    if (contact.offer_code or None) != (rendered.offer_code or None):
        raise RenderProblem(
            f"offer code mismatch: the contact carries {contact.offer_code!r}, the campaign "
            f"{rendered.offer_code!r}"
        )
    if (
        not rendered.subject
        or not rendered.subject.strip()
        or not rendered.html
        or not rendered.text
    ):
        # SendGrid refuses an empty subject or content value: say so here, for this contact
        raise RenderProblem("the email rendered without a subject, an HTML or a text body")
    return Outgoing(
        contact=contact,
        campaign=campaign,
        email=email.strip(),
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        send_at=send_at,
    )


# -- the request -----------------------------------------------------------------------------


def _unsubscribe_headers(sender: str, dispatch_id: str) -> dict[str, str]:
    domain = sender.rsplit("@", 1)[-1]
    mailto = f"mailto:unsubscribe@{domain}?subject={quote(f'unsubscribe {dispatch_id}')}"
    url = f"https://{domain}/unsubscribe/{dispatch_id}"
    return {"List-Unsubscribe": f"<{mailto}>, <{url}>", "List-Unsubscribe-Post": UNSUBSCRIBE_POST}


def _personalization(item: Outgoing) -> dict[str, Any]:
    contact = item.contact
    sender = item.campaign.channels.email.sender  # type: ignore[union-attr]
    person: dict[str, Any] = {
        "to": [{"email": item.email}],
        "subject": item.subject,
        "custom_args": {
            "dispatch_id": contact.contact_id,
            "campaign_id": contact.campaign_id,
            "customer_id": contact.customer_id,
            "offer_id": contact.offer_id or item.campaign.offer.id,
        },
        "headers": _unsubscribe_headers(sender, contact.contact_id),
    }
    if item.send_at is not None:
        person["send_at"] = item.send_at
    return person


def categories(*names: str) -> list[str]:
    """SendGrid categories: unique (SendGrid refuses a repeated one: a campaign whose id is its
    trigger type names it once), non-empty, at most 255 characters, at most 10."""
    unique = dict.fromkeys(name.strip()[:MAX_CATEGORY_LENGTH] for name in names if name.strip())
    return list(unique)[:MAX_CATEGORIES]


def build_message(items: Sequence[Outgoing], asm_group_id: int) -> dict[str, Any]:
    """The v3 Mail Send body of contacts sharing one content (``items`` non-empty)."""
    first = items[0]
    channel = first.campaign.channels.email
    assert channel is not None
    trigger_type = str(first.contact.payload.get("trigger_type") or first.campaign.trigger.type)
    return {
        "from": {"email": channel.sender, "name": channel.sender_name},
        "subject": first.subject,
        "personalizations": [_personalization(item) for item in items],
        "content": [
            {"type": "text/plain", "value": first.text},
            {"type": "text/html", "value": first.html},
        ],
        "categories": categories("omni", first.campaign.id, trigger_type),
        "asm": {"group_id": asm_group_id},
    }


def make_client(cfg: Settings, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> SendGridAPIClient:
    """The SDK client for the configured SendGrid (key and host from settings), with a timeout
    (the SDK's default is none: a hung connection would hold a claim forever)."""
    client = SendGridAPIClient(api_key=cfg.tokens["sendgrid"], host=cfg.base_urls["sendgrid"])
    client.client.timeout = timeout  # python_http_client passes it to every request it builds
    return client


# -- outcomes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What SendGrid answered to one request."""

    kind: str  # sent | rate_limited | retry | auth | rejected | unknown
    message_id: str | None = None
    error: str = ""
    retry_after_s: float | None = None
    errors: tuple[dict[str, Any], ...] = ()


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    return None if value is None else str(value)


def _sendgrid_errors(body: Any) -> tuple[dict[str, Any], ...]:
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else str(body or "")
        found = json.loads(text).get("errors") or []
    except (ValueError, AttributeError):
        return ()
    return tuple(item for item in found if isinstance(item, dict))


def _error_text(status: int, errors: Sequence[dict[str, Any]], body: Any) -> str:
    if errors:
        parts = [
            f"{item['field']}: {item.get('message')}"
            if item.get("field")
            else str(item.get("message"))
            for item in errors
        ]
        return f"SendGrid {status}: " + "; ".join(parts)
    raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    return f"SendGrid {status}: {raw[:500]}".rstrip(": ")


def _rate_limit_wait(headers: Any) -> float:
    """Seconds to wait after a 429: Retry-After, else X-RateLimit-Reset (unix), else 1."""
    retry_after = _header(headers, "Retry-After")
    if retry_after and retry_after.strip().isdigit():
        return max(1.0, float(retry_after))
    reset = _header(headers, "X-RateLimit-Reset")
    if reset and reset.strip().isdigit():
        return max(1.0, float(reset) - time.time())
    return 1.0


def send_request(client: SendGridAPIClient, message: dict[str, Any]) -> Outcome:
    """Send one v3 request and classify the answer (never raises for a provider problem)."""
    try:
        response = client.send(message)
    except HTTPError as error:
        status = int(error.status_code)
        errors = _sendgrid_errors(error.body)
        text = _error_text(status, errors, error.body)
        if status == 429:
            return Outcome(
                "rate_limited", error=text, retry_after_s=_rate_limit_wait(error.headers)
            )
        if status >= 500:
            return Outcome("retry", error=text)
        if status in (401, 403):
            return Outcome("auth", error=text)
        return Outcome("rejected", error=text, errors=errors)
    except urllib.error.URLError as error:
        # Raised while connecting or writing the request: SendGrid never had a whole request,
        # so it accepted nothing and a retry cannot deliver twice.
        return Outcome("retry", error=f"SendGrid unreachable: {error.reason}")
    except (OSError, http.client.HTTPException) as error:
        # The request left, the answer did not come (read timeout, connection lost): SendGrid
        # may have accepted it. Never resend blindly.
        return Outcome("unknown", error=f"no answer from SendGrid: {type(error).__name__}: {error}")
    if response.status_code == 202:
        return Outcome("sent", message_id=_header(response.headers, "X-Message-Id"))
    return Outcome("rejected", error=f"SendGrid answered {response.status_code} (expected 202)")


def _bad_personalizations(
    errors: Sequence[dict[str, Any]], size: int
) -> dict[int, list[str]] | None:
    """Error messages per personalization index when *every* error names a personalization
    (``personalizations.N.…``); None when some error concerns the whole request."""
    found: dict[int, list[str]] = {}
    for item in errors:
        parts = str(item.get("field") or "").split(".")
        if len(parts) < 3 or parts[0] != "personalizations" or not parts[1].isdigit():
            return None
        index = int(parts[1])
        if index >= size:
            return None
        found.setdefault(index, []).append(f"{item.get('field')}: {item.get('message')}")
    return found or None


# -- the loop --------------------------------------------------------------------------------


class _Batch:
    """Writes the outcomes of one run to the ledger the moment they are known (the calling
    thread only). ``stamp`` is the run's clock (backoff times); ``now`` stamps the ledger
    (None: the time of each write)."""

    def __init__(
        self,
        ledger: Ledger,
        stamp: datetime,
        counts: dict[str, int],
        now: datetime | None = None,
        max_backoff: float = MAX_BACKOFF_SECONDS,
    ) -> None:
        self.ledger = ledger
        self.stamp = stamp
        self.counts = counts
        self.now = now
        self.max_backoff = max_backoff

    def dead_letter(self, contact: Contact, reason: str) -> None:
        """A contact that cannot be sent (not rendered, refused by SendGrid)."""
        try:
            self.ledger.dead_letter(contact.contact_id, reason, now=self.now)
        except IllegalTransition as problem:  # another dispatcher settled it meanwhile
            log.info("%s: %s", contact.contact_id, problem)
            return
        self.counts["dead_lettered"] += 1
        if contact.state is not State.SENDING:  # settled without a request: still handled
            self.counts["claimed"] += 1

    def sent(self, items: Sequence[Outgoing], message_id: str | None) -> None:
        sent = {item.contact.contact_id: message_id for item in items}
        try:
            self.counts["sent"] += self.ledger.mark_sent_many(sent, now=self.now)
            return
        except IllegalTransition:  # some row left `sending` (stale recovery): one by one
            pass
        for contact_id in sent:
            try:
                self.ledger.mark_sent(contact_id, message_id, now=self.now)
                self.counts["sent"] += 1
            except IllegalTransition as problem:  # its events or activity will settle it
                log.warning("could not mark %s sent: %s", contact_id, problem)

    def fail(
        self, contact: Contact, error: str, retry_at: datetime, *, counts_as_attempt: bool = True
    ) -> None:
        try:
            after = self.ledger.mark_failed(
                contact.contact_id,
                error,
                True,
                retry_at=retry_at,
                now=self.now,
                counts_as_attempt=counts_as_attempt,
            )
        except IllegalTransition as problem:
            log.warning("could not record the outcome of %s: %s", contact.contact_id, problem)
            return
        self.counts["failed" if after.state == "failed" else "dead_lettered"] += 1

    def unknown(self, contact: Contact, error: str) -> None:
        try:
            self.ledger.mark_unknown(contact.contact_id, error, now=self.now)
        except IllegalTransition as problem:
            log.warning("could not record the outcome of %s: %s", contact.contact_id, problem)
            return
        self.counts["unknown"] += 1

    def backoff(self, items: Sequence[Outgoing]) -> datetime:
        attempts = max(item.contact.attempts for item in items)
        return self.stamp + timedelta(seconds=min(2 ** min(attempts, 30), self.max_backoff))


def _groups(items: Sequence[Outgoing], size: int) -> Iterator[list[Outgoing]]:
    by_content: dict[tuple[str, str, str, str], list[Outgoing]] = {}
    for item in items:
        by_content.setdefault(item.content_key, []).append(item)
    for group in by_content.values():
        for start in range(0, len(group), size):
            yield group[start : start + size]


@dataclass(frozen=True)
class Delivery:
    """The outcome of some contacts of one group (the ledger is written by the caller)."""

    items: list[Outgoing]
    outcome: Outcome


def deliver(
    client: SendGridAPIClient,
    group: list[Outgoing],
    asm_group_id: int,
    provider: pacing.Gate | None = None,
) -> list[Delivery]:
    """Send one group (HTTP only: safe in a worker thread). A 400 caused by some
    personalizations (a bad address) rejects those with their own error messages and sends
    the others again without them (through ``provider``'s gate): a 400 accepted nothing."""
    deliveries: list[Delivery] = []
    while True:
        outcome = send_request(client, build_message(group, asm_group_id))
        if outcome.kind == "rejected" and len(group) > 1:
            bad = _bad_personalizations(outcome.errors, len(group))
            if bad is not None and len(bad) < len(group):
                for index, messages in sorted(bad.items()):
                    error = "SendGrid 400: " + "; ".join(messages)
                    deliveries.append(Delivery([group[index]], Outcome("rejected", error=error)))
                group = [item for index, item in enumerate(group) if index not in bad]
                if provider is not None:
                    provider.acquire()
                continue
        deliveries.append(Delivery(group, outcome))
        return deliveries


# How much one delivery's outcome weighs for the provider's gate (the worst of a job wins).
_WEIGHT = {"done": 0, "ok": 1, "failed": 2, "rate_limited": 3, "stop": 4}


def _record(delivery: Delivery, batch: _Batch) -> pacing.Judged:
    """Write a delivery's outcome to the ledger; what it means for the provider's gate."""
    outcome, items = delivery.outcome, delivery.items
    if outcome.kind == "sent":
        batch.sent(items, outcome.message_id)
        return pacing.Judged("ok")
    if outcome.kind == "rate_limited":  # a wait, not a failure: the attempt is given back
        wait = outcome.retry_after_s or 1.0
        for item in items:
            batch.fail(
                item.contact,
                outcome.error,
                batch.stamp + timedelta(seconds=wait),
                counts_as_attempt=False,
            )
        return pacing.Judged("rate_limited", wait)
    if outcome.kind == "auth":  # our key is wrong: back in a minute, and the run stops
        for item in items:
            batch.fail(item.contact, outcome.error, batch.stamp + timedelta(minutes=1))
        return pacing.Judged("stop")
    if outcome.kind == "retry":
        retry_at = batch.backoff(items)
        for item in items:
            batch.fail(item.contact, outcome.error, retry_at)
        return pacing.Judged("failed")
    if outcome.kind == "unknown":
        for item in items:
            batch.unknown(item.contact, outcome.error)
        return pacing.Judged("done")
    for item in items:  # rejected
        batch.dead_letter(item.contact, outcome.error)
    return pacing.Judged("done")


class _Clients:
    """One SDK client per worker thread (the SDK client keeps per-call state)."""

    def __init__(self, cfg: Settings, timeout: float) -> None:
        self.cfg, self.timeout = cfg, timeout
        self.local = threading.local()

    def get(self) -> SendGridAPIClient:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = make_client(self.cfg, self.timeout)
        return client


def send_due(
    ledger: Ledger,
    cfg: Settings,
    *,
    now: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    limit: int | None = None,
    campaign_id: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    workers: int = DEFAULT_WORKERS,
    claim_size: int = DEFAULT_CLAIM_SIZE,
) -> dict[str, int]:
    """Send the due email contacts of the ledger (all, or ``campaign_id``'s); see the module.

    ``now``: the clock that decides what is due and stamps the ledger (default: the real
    one). ``batch_size``: most personalizations per request. ``claim_size``: contacts read and
    rendered at a time (one warehouse snapshot each); each request's contacts go to ``sending``
    only when it leaves. ``limit``: stop after this many contacts. ``timeout``: seconds to
    wait for SendGrid. ``workers``: requests in flight at once (the ledger is written by the
    calling thread). Returns ``{"claimed", "sent", "failed", "dead_lettered", "unknown"}``.
    """
    if batch_size < 1 or workers < 1 or claim_size < 1:
        raise ValueError("batch_size, workers and claim_size must be at least 1")
    stamp = now or datetime.now(UTC)
    stamp = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
    counts = dict.fromkeys(COUNT_KEYS, 0)
    if not cfg.warehouse_path.exists():
        raise EmailDispatchError(f"no warehouse at {cfg.warehouse_path}: run the pipeline first")
    campaigns, errors = load_all(cfg.campaigns_dir)
    for error in errors:
        log.warning("Campaign file problem (its contacts are dead-lettered): %s", error)
    by_id = {campaign.id: campaign for campaign in campaigns}
    clients = _Clients(cfg, timeout)
    provider = pacing.channel_gate(Channel.EMAIL, cfg)
    provider.begin_run()
    per_request = min(batch_size, MAX_PERSONALIZATIONS)
    batch = _Batch(ledger, stamp, counts, now, cfg.dispatch_max_backoff_seconds)
    asm_group_id = cfg.sendgrid_asm_group_id
    stopped: str | None = None
    auth_error: list[str] = []

    def start(group: list[Outgoing]) -> list[Outgoing] | None:
        taken = {
            contact.contact_id: contact
            for contact in ledger.start([item.contact.contact_id for item in group], now)
        }
        kept = [
            replace(item, contact=taken[item.contact.contact_id])
            for item in group
            if item.contact.contact_id in taken
        ]
        counts["claimed"] += len(kept)
        return kept or None

    def call(group: list[Outgoing]) -> list[Delivery]:
        return deliver(clients.get(), group, asm_group_id, provider)

    def record(group: list[Outgoing], deliveries: list[Delivery]) -> pacing.Judged:
        judged = pacing.Judged("done")
        for delivery in deliveries:
            found = _record(delivery, batch)
            if found.verdict == "stop":
                auth_error.append(delivery.outcome.error)
            if _WEIGHT[found.verdict] > _WEIGHT[judged.verdict]:
                judged = found
        return judged

    seen: set[str] = set()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sendgrid") as pool:
        while stopped is None and (limit is None or counts["claimed"] < limit):
            wanted = claim_size if limit is None else min(claim_size, limit - counts["claimed"])
            due = ledger.due(
                Channel.EMAIL,
                wanted,
                stamp,
                campaign_id=campaign_id,
                due_by=stamp + DISPATCH_LOOKAHEAD,
            )
            fresh = [contact for contact in due if contact.contact_id not in seen]
            if not fresh:
                break
            seen.update(contact.contact_id for contact in fresh)
            with _snapshot(cfg, fresh) as con:
                ready = _render_all(fresh, by_id, con, batch)
            stopped = pacing.send_window(
                _groups(ready, per_request),
                start=start,
                call=call,
                record=record,
                provider=provider,
                pool=pool,
                workers=workers,
            )
    if auth_error:
        raise EmailAuthError(auth_error[0])
    log.info("Email dispatch: %s", counts)
    return counts


def _render_all(
    claimed: Sequence[Contact], by_id: Mapping[str, Campaign], con: Any, batch: _Batch
) -> list[Outgoing]:
    ready = []
    for contact in claimed:
        try:
            ready.append(render(contact, by_id.get(contact.campaign_id), con, batch.stamp))
        except RenderProblem as problem:
            batch.dead_letter(contact, str(problem))
    return ready


@contextmanager
def _snapshot(cfg: Settings, contacts: Sequence[Contact]) -> Iterator[Any]:
    """The warehouse snapshot of these contacts' customers (raises
    :class:`EmailDispatchError` when it cannot be read: nothing was started, all stay due)."""
    con = _warehouse_snapshot(cfg, sorted({contact.customer_id for contact in contacts}))
    try:
        yield con
    finally:
        con.close()


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "EmailAuthError",
    "EmailDispatchError",
    "Outgoing",
    "Delivery",
    "build_message",
    "categories",
    "deliver",
    "make_client",
    "render",
    "send_due",
    "send_request",
]

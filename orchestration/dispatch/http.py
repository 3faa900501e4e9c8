"""HTTP for the REST channels (loyalty cashback, in-store offers): sessions and outcomes.

Two things every REST channel needs and must get the same way:

:func:`session`
    a ``requests.Session`` with bearer auth and JSON headers, and :data:`TIMEOUT` (connect 5 s,
    read 30 s) applied to every request it sends, so no call can hang a dispatcher.
:func:`classify`
    what one attempt means for the ledger: ``ok`` (2xx), ``retryable`` with the moment to try
    again (429: ``Retry-After`` or ``X-RateLimit-Reset``; 5xx and connection failures:
    exponential backoff ``2**attempts`` s, at most 300 s), ``permanent`` with the provider's
    own error text (other 4xx: dead letter), or ``unknown`` (the request may have reached the
    provider, and retrying is not idempotent: email). For the idempotent channels
    (``idempotent=True``: a cashback credit keyed by the contact id, an offer upsert) a read
    timeout or a connection lost after sending is ``retryable``: the retry carries the same
    key, so the provider applies it at most once.

401/403 are not the contact's fault but ours (a wrong token): they are ``retryable`` and
flagged ``is_auth_error`` so a sender can stop at once instead of dead-lettering a whole
audience because of a configuration mistake.

:func:`send_rest_channel`
    the loop both channels share: read due contacts, build each one's request (or the reason it
    cannot be sent), then send them through the provider's gate a few at a time, each contact
    ``sending`` only while its own request is in flight and its outcome recorded the moment it
    is known, until nothing is due or ``limit``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import requests
from requests.adapters import HTTPAdapter

from orchestration.dispatch import pacing
from orchestration.dispatch.ledger import Contact, Ledger
from orchestration.dispatch.states import DISPATCH_LOOKAHEAD, Channel, IllegalTransition, State

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
TIMEOUT: tuple[float, float] = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
MAX_BACKOFF_S = 300
MAX_ERROR_TEXT = 500  # characters of a provider's error kept in the ledger

Kind = Literal["ok", "retryable", "permanent", "unknown"]


@dataclass(frozen=True)
class Outcome:
    """What one attempt means: ``kind``, the HTTP status (None without a response), the error
    text for the ledger, when to retry, and the parsed JSON body of a 2xx answer."""

    kind: Kind
    status: int | None = None
    error: str | None = None
    retry_at: datetime | None = None
    body: Any = None
    is_auth_error: bool = False

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


class _TimeoutSession(requests.Session):
    """A session whose requests default to ``timeout`` (requests has no session timeout)."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__()
        self.timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


def session(
    token: str, *, timeout: tuple[float, float] | None = None, pool_size: int = 10
) -> requests.Session:
    """A session sending ``Authorization: Bearer <token>`` and JSON, with timeouts on every
    request (default :data:`TIMEOUT`, read when the session is made) and no automatic retries
    (the ledger decides about retries, not urllib3)."""
    made = _TimeoutSession(timeout or TIMEOUT)
    made.headers.update(
        {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
    )
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    made.mount("http://", adapter)
    made.mount("https://", adapter)
    return made


def backoff_seconds(attempts: int, cap: float = MAX_BACKOFF_S) -> int:
    """Exponential backoff after ``attempts`` tries: 2, 4, 8... seconds, at most ``cap``
    (settings: dispatch_max_backoff_seconds)."""
    return int(min(cap, 2 ** min(max(1, attempts), 30)))


def provider_error(response: requests.Response) -> str:
    """The provider's error text: ``HTTP <status>: <message>`` from the usual JSON shapes
    (``{"error": {"message"}}``, ``{"error": "..."}``, SendGrid's ``{"errors": [{"message"}]}``),
    else the body's text, shortened."""
    message: str | None = None
    try:
        document = response.json()
    except ValueError:
        document = None
    if isinstance(document, dict):
        error = document.get("error")
        errors = document.get("errors")
        if isinstance(error, dict):
            found = error.get("message") or error.get("code")
            message = str(found) if found else json.dumps(error)
        elif isinstance(error, str):
            message = error
        elif isinstance(errors, list) and errors:
            parts = []
            for item in errors:
                if isinstance(item, dict):
                    field = item.get("field")
                    text = str(item.get("message"))
                    parts.append(f"{field}: {text}" if field else text)
                else:
                    parts.append(str(item))
            message = "; ".join(parts)
    if message is None:
        message = (response.text or response.reason or "").strip() or "no error text"
    return f"HTTP {response.status_code}: {message}"[:MAX_ERROR_TEXT]


def _retry_after(response: requests.Response, now: datetime) -> datetime | None:
    """When a 429 says to come back: ``Retry-After`` (seconds or an HTTP date), else
    ``X-RateLimit-Reset`` (unix seconds), as a moment relative to ``now``."""
    header = response.headers.get("Retry-After")
    if header:
        text = header.strip()
        if text.isdigit():
            return now + timedelta(seconds=max(1, int(text)))
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            moment = None
        if moment is not None:
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            wait = (moment - datetime.now(UTC)).total_seconds()
            return now + timedelta(seconds=max(1.0, wait))
    reset = response.headers.get("X-RateLimit-Reset")
    if reset:
        try:
            wait = float(reset) - time.time()
        except ValueError:
            return None
        return now + timedelta(seconds=max(1.0, min(wait, 3600.0)))
    return None


def _is_refused(error: requests.ConnectionError) -> bool:
    """True when no connection was made, so the request never left (refused, DNS, connect
    timeout); False when an established connection broke (the request may have arrived)."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    text = repr(error)
    return "NewConnectionError" in text or "Failed to establish a new connection" in text


def classify(
    result: requests.Response | BaseException,
    attempts: int,
    *,
    idempotent: bool = True,
    now: datetime | None = None,
    max_backoff: float = MAX_BACKOFF_S,
) -> Outcome:
    """The :class:`Outcome` of one attempt (a response, or the exception the call raised).

    ``attempts`` is how many tries this contact has had, this one included (the ledger's
    ``attempts`` after the claim): it sets the backoff. ``now`` is the dispatcher's clock
    (default: the current time); ``retry_at`` is relative to it.
    """
    moment = now if now is not None else datetime.now(UTC)
    backoff = moment + timedelta(seconds=backoff_seconds(attempts, max_backoff))
    if isinstance(result, requests.Response):
        status = result.status_code
        if 200 <= status < 300:
            try:
                body = result.json() if result.content else None
            except ValueError:
                body = None
            return Outcome("ok", status, body=body)
        error = provider_error(result)
        if status == 429:
            return Outcome("retryable", status, error, _retry_after(result, moment) or backoff)
        if status >= 500 or status == 408:
            return Outcome("retryable", status, error, backoff)
        if status in (401, 403):
            return Outcome("retryable", status, error, backoff, is_auth_error=True)
        return Outcome("permanent", status, error)
    name = type(result).__name__
    text = f"{name}: {result}"[:MAX_ERROR_TEXT]
    if isinstance(result, requests.ConnectionError) and _is_refused(result):
        return Outcome("retryable", None, text, backoff)
    broken = (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError)
    if isinstance(result, broken):
        # The request left and no answer came back: it may have been applied.
        if idempotent:
            return Outcome("retryable", None, text, backoff)
        return Outcome("unknown", None, text)
    if isinstance(result, requests.RequestException):
        # Anything else requests raises (a broken URL, a bad header) is ours, not the contact's:
        # retry later (the attempt limit dead-letters it if it never gets better).
        return Outcome("retryable", None, text, backoff)
    raise TypeError(f"cannot classify {result!r}")


# -- the send loop of a REST channel --------------------------------------------------------


@dataclass(frozen=True)
class PreparedRequest:
    """One provider call for one contact (built before anything is sent)."""

    method: str
    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class ProviderAuthError(RuntimeError):
    """The provider refused our credentials (401/403): a configuration problem, not the
    contacts'. They are left ``failed`` (retryable) and the run stops."""


# Builds a contact's request, or returns the reason it cannot be sent (it is dead-lettered).
Builder = Callable[[Contact], "PreparedRequest | str"]
# The provider's id of what an accepted request created (credit id, offer version...).
MessageId = Callable[[Contact, Outcome], "str | None"]

COUNT_KEYS = ("claimed", "sent", "failed", "dead_lettered", "unknown")


@dataclass(frozen=True)
class _Job:
    contact: Contact
    request: PreparedRequest


def send_rest_channel(
    ledger: Ledger,
    channel: Channel,
    http: requests.Session,
    build: Builder,
    message_id: MessageId,
    *,
    now: datetime | None = None,
    batch_size: int = 200,
    limit: int | None = None,
    campaign_id: str | None = None,
    workers: int = 8,
    max_backoff: float = MAX_BACKOFF_S,
    provider: pacing.Gate | None = None,
) -> dict[str, int]:
    """Send the due contacts of ``channel``, one request each, ``workers`` in flight, and record
    every outcome in the ledger the moment it is known; returns the counts of the contract
    (claimed, sent, failed, dead_lettered, unknown).

    Contacts are read ``batch_size`` at a time and their requests built first; a contact whose
    request cannot be built (no loyalty account, no store...) is dead-lettered with the reason,
    without a call. Each contact goes to ``sending`` only when its own request leaves
    (:func:`~orchestration.dispatch.pacing.send_window`): a crash leaves at most the requests in
    flight, and never uses up an attempt of a contact that was not tried. The provider's gate
    (``provider``, default the channel's provider's) paces the calls after a 429 and stops
    the run when the provider looks down.

    The clock is fixed at the start (``now``, default the current time), so a contact that
    failed in this run (its retry time is later) is not tried again in the same run.
    """
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    clock = now if now is not None else datetime.now(UTC)
    counts = dict.fromkeys(COUNT_KEYS, 0)
    provider = provider or pacing.gate(pacing.PROVIDERS[channel])
    provider.begin_run()
    auth_errors: list[str] = []

    def prepare(contact: Contact) -> _Job | None:
        try:
            prepared = build(contact)
        except Exception as error:  # a bug or bad data: account for the contact, say why
            log.exception("%s %s: could not build the request", channel, contact.contact_id)
            prepared = f"could not build the request: {error!r}"
        if isinstance(prepared, str):
            try:
                ledger.dead_letter(contact.contact_id, prepared, now=now)
                counts["dead_lettered"] += 1
                counts["claimed"] += 1
            except IllegalTransition as problem:  # another dispatcher settled it meanwhile
                log.info("%s: %s", contact.contact_id, problem)
            return None
        return _Job(contact, prepared)

    def start(job: _Job) -> _Job | None:
        taken = ledger.start([job.contact.contact_id], now)
        if not taken:
            return None
        counts["claimed"] += 1
        return _Job(taken[0], job.request)

    def call(job: _Job) -> requests.Response | requests.RequestException:
        prepared = job.request
        try:
            return http.request(
                prepared.method, prepared.url, json=prepared.body, headers=prepared.headers
            )
        except requests.RequestException as error:
            return error

    def record(job: _Job, answer: requests.Response | requests.RequestException) -> pacing.Judged:
        outcome = classify(answer, job.contact.attempts, now=clock, max_backoff=max_backoff)
        _record(ledger, job.contact, outcome, message_id, counts, now)
        if outcome.ok:
            return pacing.Judged("ok")
        if outcome.status == 429:
            wait = (outcome.retry_at - clock).total_seconds() if outcome.retry_at else 1.0
            return pacing.Judged("rate_limited", max(wait, 1.0))
        if outcome.is_auth_error:
            auth_errors.append(outcome.error or "auth error")
            return pacing.Judged("stop")
        if outcome.kind == "retryable":
            return pacing.Judged("failed")
        return pacing.Judged("done")

    seen: set[str] = set()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        while True:
            wanted = batch_size if limit is None else min(batch_size, limit - counts["claimed"])
            if wanted <= 0:
                break
            due = ledger.due(
                channel, wanted, clock, campaign_id=campaign_id, due_by=clock + DISPATCH_LOOKAHEAD
            )
            fresh = [contact for contact in due if contact.contact_id not in seen]
            if not fresh:
                break
            seen.update(contact.contact_id for contact in fresh)
            jobs = [job for job in map(prepare, fresh) if job is not None]
            stopped = pacing.send_window(
                jobs,
                start=start,
                call=call,
                record=record,
                provider=provider,
                pool=pool,
                workers=workers,
            )
            if auth_errors:
                raise ProviderAuthError(
                    f"{channel}: the provider refused our credentials ({auth_errors[0]}); "
                    f"nothing more is sent. Counts so far: {counts}"
                )
            if stopped is not None:
                break
    log.info("%s dispatch: %s", channel, counts)
    return counts


def _record(
    ledger: Ledger,
    contact: Contact,
    outcome: Outcome,
    message_id: MessageId,
    counts: dict[str, int],
    now: datetime | None,
) -> None:
    """Write one contact's outcome to the ledger."""
    try:
        if outcome.ok:
            ledger.mark_sent(contact.contact_id, message_id(contact, outcome), now=now)
            counts["sent"] += 1
            return
        reason = outcome.error or outcome.kind
        if outcome.kind == "unknown":
            ledger.mark_unknown(contact.contact_id, reason, now=now)
            counts["unknown"] += 1
            return
        recorded = ledger.mark_failed(
            contact.contact_id,
            reason,
            outcome.kind == "retryable",
            retry_at=outcome.retry_at,
            now=now,
            counts_as_attempt=outcome.status != 429,  # "wait", not a failure
        )
    except IllegalTransition as problem:  # the row left `sending` meanwhile (stale recovery)
        log.warning("could not record the outcome of %s: %s", contact.contact_id, problem)
        return
    counts["failed" if recorded.state is State.FAILED else "dead_lettered"] += 1


__all__ = [
    "COUNT_KEYS",
    "CONNECT_TIMEOUT_S",
    "MAX_BACKOFF_S",
    "READ_TIMEOUT_S",
    "TIMEOUT",
    "Outcome",
    "PreparedRequest",
    "ProviderAuthError",
    "backoff_seconds",
    "classify",
    "provider_error",
    "send_rest_channel",
    "session",
]

"""SendGrid: a v3 Mail Send look-alike that keeps what it accepted and makes up its events.

``POST /v3/mail/send`` (``Authorization: Bearer <key>``) checks the payload as SendGrid v3
does and answers 400 with ``{"errors": [{"message", "field", "help"}]}`` (every problem found,
like SendGrid), or 202 with an empty body and ``X-Message-Id``. Rate limits and injected
faults come from the shared framework (429 carries ``Retry-After`` and ``X-RateLimit-Reset``).

Every accepted message is kept (memory plus ``sendgrid_messages.jsonl``, see ``journal``)
with the Event Webhook records of its recipients, generated at once and deterministically:
the outcome of a recipient depends only on ``(fault seed, email, custom_args, subject)``, so a
re-run of the same dispatch meets the same bounces. A real SendGrid pushes events to a
webhook; the sandbox lets a poller fetch them (``GET /_sandbox/events``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import uuid
from typing import Any

from orchestration.sandbox.services.base import (
    Request,
    Response,
    Route,
    Service,
    json_response,
)
from orchestration.sandbox.services.faults import unit_hash
from orchestration.sandbox.services.journal import Journal, state_dir_for
from orchestration.sandbox.services.paging import BadRequest
from orchestration.sandbox.services.world_db import World

HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
MAX_PERSONALIZATIONS = 1000
MAX_CATEGORIES = 10
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_SCHEDULE_SECONDS = 72 * 3600
EMAIL = re.compile(
    r"[^@\s<>(),;:\"\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)
RESERVED_HEADERS = {
    "x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
    "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc",
}  # fmt: skip
# Shares of delivered recipients that open / click (of openers) / unsubscribe / complain.
OPEN_RATE, CLICK_RATE, UNSUBSCRIBE_RATE, SPAM_RATE = 0.35, 0.25, 0.01, 0.003
BOUNCE_RATE = 0.02  # of all recipients; plus every address containing "bounce"
SENTINELS = (("bounce", "bounce"), ("unsub", "unsubscribe"), ("spam", "spamreport"))


def _short_id(*parts: object) -> str:
    """A 22-character id like SendGrid's (url-safe base64 of 16 hash bytes)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=16).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class Problems:
    """The SendGrid error objects of one request."""

    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []

    def add(self, field: str | None, message: str, anchor: str) -> None:
        self.errors.append({"message": message, "field": field, "help": f"{HELP}#{anchor}"})


def _valid_email(value: object) -> bool:
    return isinstance(value, str) and EMAIL.fullmatch(value) is not None


def _check_address(problems: Problems, address: object, field: str, anchor: str) -> None:
    email = address.get("email") if isinstance(address, dict) else None
    if not _valid_email(email):
        problems.add(f"{field}.email", "Does not contain a valid address.", anchor)


def validate(payload: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """SendGrid's checks of a v3 Mail Send body; the error objects (empty when valid)."""
    problems = Problems()
    sender = payload.get("from")
    if not isinstance(sender, dict) or not sender.get("email"):
        problems.add(
            "from.email",
            "The from object must be provided for every email send. It is an object that "
            "requires the email parameter, but may also contain a name parameter.",
            "message.from",
        )
    elif not _valid_email(sender.get("email")):
        problems.add(
            "from.email", "The from email does not contain a valid address.", "message.from"
        )
    if "reply_to" in payload:
        _check_address(problems, payload["reply_to"], "reply_to", "message.reply_to")
    personalizations = payload.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        problems.add(
            "personalizations",
            "The personalizations field is required and must have at least one personalization.",
            "-Personalizations-Errors",
        )
        personalizations = []
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        problems.add(
            "personalizations",
            f"You may not have more than {MAX_PERSONALIZATIONS} personalizations per API "
            "request. You may need to deliver your message in multiple requests.",
            "-Personalizations-Errors",
        )
    templated = bool(payload.get("template_id"))
    every_has_subject = bool(personalizations)
    for index, item in enumerate(personalizations[:MAX_PERSONALIZATIONS]):
        where = f"personalizations.{index}"
        if not isinstance(item, dict):
            problems.add(where, "A personalization must be an object.", "-Personalizations-Errors")
            every_has_subject = False
            continue
        every_has_subject = every_has_subject and bool(item.get("subject"))
        to = item.get("to")
        if not isinstance(to, list) or not to:
            problems.add(
                f"{where}.to",
                "The to array is required for all personalization objects, and must have at "
                "least one email object with a valid email address.",
                "message.personalizations.to",
            )
            to = []
        for kind, addresses in (
            ("to", to),
            ("cc", item.get("cc", [])),
            ("bcc", item.get("bcc", [])),
        ):
            if not isinstance(addresses, list):
                problems.add(f"{where}.{kind}", f"The {kind} field must be an array.", anchor="")
                continue
            for number, address in enumerate(addresses):
                _check_address(
                    problems,
                    address,
                    f"{where}.{kind}.{number}",
                    f"message.personalizations.{kind}",
                )
        _check_custom_args(problems, item.get("custom_args"), f"{where}.custom_args")
        _check_send_at(problems, item.get("send_at"), f"{where}.send_at", now)
    if not templated and not payload.get("subject") and not every_has_subject:
        problems.add(
            "subject",
            "The subject is required. You can get around this requirement if you use a template "
            "with a subject defined or if every personalization has a subject defined.",
            "message.subject",
        )
    _check_content(problems, payload.get("content"), templated)
    _check_custom_args(problems, payload.get("custom_args"), "custom_args")
    _check_send_at(problems, payload.get("send_at"), "send_at", now)
    _check_extras(problems, payload)
    return problems.errors


def _check_content(problems: Problems, content: object, templated: bool) -> None:
    if content is None and templated:
        return
    if not isinstance(content, list) or not content:
        problems.add(
            "content",
            "Unless a valid template_id is provided, the content parameter is required. There "
            "must be at least one defined content block.",
            "message.content",
        )
        return
    for index, block in enumerate(content):
        if not isinstance(block, dict) or not block.get("type"):
            problems.add(
                f"content.{index}.type", "The content type is required.", "message.content"
            )
        elif not isinstance(block.get("value"), str) or not block["value"]:
            problems.add(
                f"content.{index}.value",
                "The content value must be a string at least one character in length.",
                "message.content.value",
            )


def _check_custom_args(problems: Problems, custom_args: object, field: str) -> None:
    if custom_args is None:
        return
    if not isinstance(custom_args, dict) or not all(
        isinstance(value, str) for value in custom_args.values()
    ):
        problems.add(
            field, "Custom args must be an object of string values.", "message.custom_args"
        )
    elif len(json.dumps(custom_args).encode()) > MAX_CUSTOM_ARGS_BYTES:
        problems.add(field, "The custom_args may not exceed 10,000 bytes.", "message.custom_args")


def _check_send_at(problems: Problems, send_at: object, field: str, now: float) -> None:
    if send_at is None:
        return
    if isinstance(send_at, bool) or not isinstance(send_at, int) or send_at < 0:
        problems.add(field, "The send_at parameter must be a unix timestamp.", "message.send_at")
    elif send_at > now + MAX_SCHEDULE_SECONDS:
        problems.add(
            field,
            "The send_at parameter cannot be scheduled more than 72 hours in advance.",
            "message.send_at",
        )


def _check_extras(problems: Problems, payload: dict[str, Any]) -> None:
    categories = payload.get("categories")
    if categories is not None:
        if not isinstance(categories, list) or not all(
            isinstance(name, str) and 0 < len(name) <= 255 for name in categories
        ):
            problems.add(
                "categories",
                "Categories must be strings of 1-255 characters.",
                "message.categories",
            )
        elif len(categories) > MAX_CATEGORIES:
            problems.add(
                "categories",
                f"You cannot have more than {MAX_CATEGORIES} categories per request.",
                "message.categories",
            )
    asm = payload.get("asm")
    if asm is not None:
        group = asm.get("group_id") if isinstance(asm, dict) else None
        if isinstance(group, bool) or not isinstance(group, int):
            problems.add(
                "asm.group_id", "The asm group_id must be an integer.", "message.asm.group_id"
            )
    headers = payload.get("headers")
    if headers is not None:
        if not isinstance(headers, dict) or not all(
            isinstance(value, str) for value in headers.values()
        ):
            problems.add(
                "headers", "Headers must be an object of string values.", "message.headers"
            )
        else:
            for name in headers:
                if name.lower() in RESERVED_HEADERS:
                    problems.add(
                        f"headers.{name}",
                        f"The header {name} is reserved and cannot be set.",
                        "message.headers",
                    )


def _recipients(payload: dict[str, Any], message_id: str) -> list[dict[str, Any]]:
    """One entry per address of every personalization, with its effective settings."""
    recipients = []
    top_args = payload.get("custom_args") or {}
    for index, item in enumerate(payload["personalizations"]):
        custom_args = {**top_args, **(item.get("custom_args") or {})}
        send_at = item.get("send_at", payload.get("send_at"))
        addresses = [
            (kind, address["email"])
            for kind in ("to", "cc", "bcc")
            for address in item.get(kind, [])
        ]
        for number, (kind, email) in enumerate(addresses):
            recipients.append(
                {
                    "email": email,
                    "kind": kind,
                    "personalization": index,
                    "sg_message_id": f"{message_id}.filterdrecv-{index}-{number}.0",
                    "subject": item.get("subject", payload.get("subject")),
                    "send_at": send_at,
                    "custom_args": custom_args,
                }
            )
    return recipients


def _events(
    recipient: dict[str, Any], payload: dict[str, Any], accepted_at: int, seed: int
) -> list[dict[str, Any]]:
    """The Event Webhook records of one recipient (deterministic given seed and content)."""
    email = recipient["email"]
    args = json.dumps(recipient["custom_args"], sort_keys=True)

    def draw(what: str) -> float:
        return unit_hash(seed, what, email.lower(), args, recipient["subject"])

    base = max(accepted_at, recipient["send_at"] or 0)
    delivered_at = base + 1 + int(draw("delay") * 30)
    sentinel = next((event for word, event in SENTINELS if word in email.lower()), None)
    outcomes: list[tuple[str, int, dict[str, Any]]] = [("processed", accepted_at, {})]
    if sentinel == "bounce" or draw("bounce") < BOUNCE_RATE:
        reason = "550 5.1.1 The email account that you tried to reach does not exist."
        extra = {"type": "bounce", "status": "5.1.1", "reason": reason}
        extra["bounce_classification"] = "Invalid Address"
        outcomes.append(("bounce", delivered_at, extra))
    else:
        outcomes.append(("delivered", delivered_at, {"response": "250 OK"}))
        opened = sentinel is not None or draw("open") < OPEN_RATE
        opened_at = delivered_at + 60 + int(draw("open_at") * 6 * 3600)
        if opened:
            outcomes.append(("open", opened_at, {"sg_machine_open": False}))
            if draw("click") < CLICK_RATE:
                url = "https://shop.example.com/"
                click = {"url": url, "url_offset": {"index": 0, "type": "html"}}
                outcomes.append(("click", opened_at + 5 + int(draw("click_at") * 600), click))
        after_open = opened_at + 30
        if sentinel == "unsubscribe" or (opened and draw("unsubscribe") < UNSUBSCRIBE_RATE):
            asm = payload.get("asm") or {}
            extra = {"asm_group_id": asm["group_id"]} if "group_id" in asm else {}
            outcomes.append(("unsubscribe", after_open, extra))
        if sentinel == "spamreport" or (opened and draw("spam") < SPAM_RATE):
            outcomes.append(("spamreport", after_open + 60, {}))
    events = []
    for event, timestamp, extra in outcomes:
        record: dict[str, Any] = {
            **recipient["custom_args"],  # custom args sit at the top level, as SendGrid's
            "email": email,
            "timestamp": timestamp,
            "event": event,
            "sg_event_id": _short_id("event", recipient["sg_message_id"], email, event),
            "sg_message_id": recipient["sg_message_id"],
            "smtp-id": f"<{recipient['sg_message_id']}@sandbox.sendgrid>",
            **extra,
        }
        if payload.get("categories"):
            record["category"] = list(payload["categories"])
        events.append(record)
    return events


class SendGridService(Service):
    """The sandbox SendGrid (v3 Mail Send + a poller's view of the Event Webhook)."""

    name = "sendgrid"

    def __init__(self, world: World, token: str) -> None:
        super().__init__(world, token)
        state_dir = state_dir_for(world)
        self.journal = Journal(state_dir / "sendgrid_messages.jsonl" if state_dir else None)
        self._lock = threading.Lock()
        self.messages: list[dict[str, Any]] = self.journal.replay()
        self.events: list[dict[str, Any]] = [
            event for message in self.messages for event in message.get("events", [])
        ]

    def routes(self) -> list[Route]:
        return [
            Route("POST", r"/v3/mail/send", self._send),
            Route("GET", r"/_sandbox/messages", self._messages, api=False),
            Route("GET", r"/_sandbox/events", self._events, api=False),
            Route("DELETE", r"/_sandbox/state", self._clear, api=False),
        ]

    def error_payload(self, status: int, message: str) -> Any:
        if status == 401:
            message = "The provided authorization grant is invalid, expired, or revoked"
        elif status == 429:
            message = "too many requests"
        return {"errors": [{"field": None, "message": message, "help": None}]}

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        headers = dict(headers or {})
        if status == 429:  # SendGrid's own rate-limit headers, besides Retry-After
            wait = int(headers.get("Retry-After", "1"))
            headers["X-RateLimit-Limit"] = str(self.faults.config.rate_limit_per_second)
            headers["X-RateLimit-Remaining"] = "0"
            headers["X-RateLimit-Reset"] = str(int(time.time()) + wait)
        return json_response(status, self.error_payload(status, message), headers)

    # -- the API ----------------------------------------------------------------------------
    def _send(self, request: Request) -> Response:
        try:
            payload = request.json()
        except BadRequest as error:
            return json_response(
                400, {"errors": [{"message": str(error), "field": None, "help": None}]}
            )
        now = time.time()
        errors = validate(payload, now)
        if errors:
            return json_response(400, {"errors": errors})
        if ((payload.get("mail_settings") or {}).get("sandbox_mode") or {}).get("enable"):
            return Response(200, b"")  # SendGrid's own sandbox mode: valid, not delivered
        message_id = _short_id("message", uuid.uuid4().hex)
        accepted_at = int(now)
        recipients = _recipients(payload, message_id)
        seed = self.faults.config.seed
        events = [
            event for item in recipients for event in _events(item, payload, accepted_at, seed)
        ]
        message = {
            "message_id": message_id,
            "accepted_at": accepted_at,
            "request": payload,
            "recipients": recipients,
            "events": events,
        }
        with self._lock:
            self.journal.append(message)
            self.messages.append(message)
            self.events.extend(events)
        return Response(202, b"", {"X-Message-Id": message_id})

    # -- the sandbox's read side ----------------------------------------------------------------
    def _messages(self, request: Request) -> Response:
        """Accepted messages; every query parameter but ``to`` filters on a custom arg."""
        filters = {key: value for key, value in request.query.items() if key != "to"}
        to = request.query.get("to", "").lower()
        with self._lock:
            messages = list(self.messages)
        selected = []
        for message in messages:
            matching = [
                recipient
                for recipient in message["recipients"]
                if all(recipient["custom_args"].get(k) == v for k, v in filters.items())
                and (not to or recipient["email"].lower() == to)
            ]
            if matching:
                shown = {key: value for key, value in message.items() if key != "events"}
                selected.append({**shown, "matching_recipients": matching})
        return json_response(200, {"messages": selected, "count": len(selected)})

    def _events(self, request: Request) -> Response:
        """Events in generation order: ``after`` (position), ``since``/``until`` (unix), filters."""
        query = dict(request.query)
        try:
            after = int(query.pop("after", "0") or 0)
            since = int(query.pop("since", "0") or 0)
            until_text = query.pop("until", "")
            until = int(until_text) if until_text else None
            limit = int(query.pop("limit", "0") or 0)
        except ValueError as error:
            raise BadRequest(f"after, since, until and limit must be integers: {error}") from error
        kind = query.pop("event", None)
        with self._lock:
            events = self.events[after:]
        selected = []
        position = after
        for event in events:
            position += 1
            if event["timestamp"] < since or (until is not None and event["timestamp"] > until):
                continue
            if kind and event["event"] != kind:
                continue
            if any(event.get(key) != value for key, value in query.items()):
                continue
            selected.append(event)
            if limit and len(selected) >= limit:
                break
        return json_response(
            200, {"events": selected, "count": len(selected), "next_after": position}
        )

    def _clear(self, request: Request) -> Response:
        with self._lock:
            self.journal.clear()
            self.messages.clear()
            self.events.clear()
        return json_response(200, {"messages": 0, "events": 0})

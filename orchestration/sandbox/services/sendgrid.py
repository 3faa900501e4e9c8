"""SendGrid: a v3 Mail Send look-alike that keeps what it accepted and makes up its events.

``POST /v3/mail/send`` (``Authorization: Bearer <key>``) checks the payload against every
documented limit of SendGrid's v3 Mail Send (:func:`validate`) and answers 400 with
``{"errors": [{"message", "field", "help"}]}`` (every problem found, like SendGrid), or 202 with
an empty body and ``X-Message-Id``. Rate limits and injected faults come from the shared
framework (429 carries ``Retry-After`` and ``X-RateLimit-Reset``). Every request body that
reaches the handler is remembered with its answer (``GET /_sandbox/requests``, and
``sendgrid_requests.jsonl``), so a test can replay it through the same validator.

Every accepted message is kept (memory plus ``sendgrid_messages.jsonl``, see ``journal``)
with the Event Webhook records of its recipients, generated at once and deterministically:
the outcome of a recipient depends only on ``(fault seed, email, custom_args, subject)``, so a
re-run of the same dispatch meets the same bounces. A real SendGrid pushes events to a
webhook; the sandbox lets a poller fetch them (``GET /_sandbox/events``). The Email Activity
API (``GET /v3/messages?query=...``) lists the accepted messages per recipient, so a dispatcher
can ask whether SendGrid ever saw an email (by its ``dispatch_id`` custom arg).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

from orchestration import settings as settings_module
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
MAX_RECIPIENTS = 1000  # to + cc + bcc over every personalization of a request
MAX_CATEGORIES = 10
MAX_CATEGORY_LENGTH = 255
MAX_CUSTOM_ARGS_BYTES = 10_000  # one email's custom args (request + personalization): less
MAX_SCHEDULE_SECONDS = 72 * 3600
MAX_GROUPS_TO_DISPLAY = 25
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
# Email Activity (GET /v3/messages): the fields a query may name, terms, joins, page size.
ACTIVITY_FIELDS = ("msg_id", "from_email", "to_email", "subject", "status")
ACTIVITY_TERM = re.compile(
    r"""\(?\s*(?:(?P<field>[a-z_]+)|unique_args\[['"](?P<arg>[^'"\]]+)['"]\])"""
    r"""\s*(?P<op>!?=)\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*\)?"""
)
ACTIVITY_JOIN = re.compile(r"\s+(AND|OR)\s+", re.IGNORECASE)
MAX_ACTIVITY_LIMIT = 1000


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
    name = address.get("name") if isinstance(address, dict) else None
    if isinstance(name, str) and (";" in name or "," in name):
        problems.add(
            f"{field}.name",
            "The name of a recipient cannot include either the ; or , characters.",
            anchor,
        )


def validate(
    payload: dict[str, Any], now: float, asm_groups: Collection[int] | None = None
) -> list[dict[str, Any]]:
    """SendGrid's checks of a v3 Mail Send body; the error objects (empty when valid).

    Every documented limit of the endpoint (docs/sandbox-api.md lists them): the sender,
    1 to 1,000 personalizations, at most 1,000 recipients (to + cc + bcc) per request, no
    address twice in one personalization, valid addresses and names, the subject (unless every
    personalization or a template has one), the content blocks (a type without ``;`` or line
    breaks, a non-empty value, text/plain first then text/html, each at most once), custom args
    (string values, less than 10,000 bytes per email), ``send_at`` (unix seconds, at most 72 h
    ahead), categories (unique strings of 1-255 characters, at most 10), headers (strings, no
    reserved names) and the unsubscribe group (one of ``asm_groups``, the account's groups;
    None: any integer). The sandbox service answers 400 with these errors; the tests replay
    every request a dispatch made through this same function.
    """
    problems = Problems()
    _check_sender(problems, payload.get("from"))
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
            f"The personalization block is limited to {MAX_PERSONALIZATIONS} personalizations "
            f"per API request. You have provided {len(personalizations)} personalizations. "
            "Please consider splitting this into multiple requests and resending your request.",
            "-Personalizations-Errors",
        )
    templated = bool(payload.get("template_id"))
    top_args = payload.get("custom_args")
    every_has_subject = bool(personalizations)
    recipients = 0
    for index, item in enumerate(personalizations[:MAX_PERSONALIZATIONS]):
        where = f"personalizations.{index}"
        if not isinstance(item, dict):
            problems.add(where, "A personalization must be an object.", "-Personalizations-Errors")
            every_has_subject = False
            continue
        if "subject" in item:
            _check_subject(problems, item["subject"], f"{where}.subject")
        every_has_subject = every_has_subject and bool(item.get("subject"))
        recipients += _check_recipients(problems, item, where)
        _check_custom_args(problems, item.get("custom_args"), f"{where}.custom_args", top_args)
        _check_send_at(problems, item.get("send_at"), f"{where}.send_at", now)
        _check_headers(problems, item.get("headers"), f"{where}.headers")
    if recipients > MAX_RECIPIENTS:
        problems.add(
            "personalizations",
            f"There is a limit of {MAX_RECIPIENTS} total recipients (to + cc + bcc) per "
            f"request. You have provided {recipients}.",
            "-Personalizations-Errors",
        )
    if "subject" in payload:
        _check_subject(problems, payload["subject"], "subject")
    if not templated and not payload.get("subject") and not every_has_subject:
        problems.add(
            "subject",
            "The subject is required. You can get around this requirement if you use a template "
            "with a subject defined or if every personalization has a subject defined.",
            "message.subject",
        )
    if "template_id" in payload and not isinstance(payload["template_id"], str):
        problems.add("template_id", "The template_id must be a string.", "message.template_id")
    _check_content(problems, payload.get("content"), templated)
    _check_custom_args(problems, top_args, "custom_args", None)
    _check_send_at(problems, payload.get("send_at"), "send_at", now)
    _check_categories(problems, payload.get("categories"))
    _check_asm(problems, payload.get("asm"), asm_groups)
    _check_headers(problems, payload.get("headers"), "headers")
    return problems.errors


def _check_sender(problems: Problems, sender: object) -> None:
    if not isinstance(sender, dict) or not sender.get("email"):
        problems.add(
            "from.email",
            "The from object must be provided for every email send. It is an object that "
            "requires the email parameter, but may also contain a name parameter.",
            "message.from",
        )
    elif not _valid_email(sender.get("email")) or not str(sender["email"]).isascii():
        problems.add(
            "from.email", "The from email does not contain a valid address.", "message.from"
        )


def _check_subject(problems: Problems, subject: object, field: str) -> None:
    if not isinstance(subject, str) or not subject.strip():
        problems.add(
            field,
            "The subject of your email must be a string at least one character in length.",
            "message.subject",
        )


def _check_recipients(problems: Problems, item: dict[str, Any], where: str) -> int:
    """Check the to / cc / bcc of one personalization; returns how many recipients it has."""
    to = item.get("to")
    if not isinstance(to, list) or not to:
        problems.add(
            f"{where}.to",
            "The to array is required for all personalization objects, and must have at "
            "least one email object with a valid email address.",
            "message.personalizations.to",
        )
    seen: set[str] = set()
    duplicate: tuple[str, str] | None = None
    count = 0
    for kind in ("to", "cc", "bcc"):
        addresses = item.get(kind, [])
        if not isinstance(addresses, list):
            problems.add(
                f"{where}.{kind}",
                f"The {kind} field must be an array.",
                f"message.personalizations.{kind}",
            )
            continue
        if kind != "to" and kind in item and not addresses:
            problems.add(
                f"{where}.{kind}",
                f"The {kind} array, when used, must at least have an email parameter with a "
                "valid email address.",
                f"message.personalizations.{kind}",
            )
        for number, address in enumerate(addresses):
            count += 1
            _check_address(
                problems, address, f"{where}.{kind}.{number}", f"message.personalizations.{kind}"
            )
            email = address.get("email") if isinstance(address, dict) else None
            if isinstance(email, str):
                key = email.strip().lower()
                if key in seen and duplicate is None:
                    duplicate = (email, f"{where}.{kind}")
                seen.add(key)
    if duplicate is not None:
        problems.add(
            where,
            "Each email address in the personalization block should be unique between to, cc, "
            f"and bcc. We found the first duplicate instance of [{duplicate[0]}] in the "
            f"{duplicate[1]} field.",
            "-Personalizations-Errors",
        )
    return count


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
    types: list[str] = []
    for index, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if not isinstance(kind, str) or not kind:
            problems.add(
                f"content.{index}.type", "The content type is required.", "message.content"
            )
        elif ";" in kind or "\r" in kind or "\n" in kind:
            problems.add(
                f"content.{index}.type",
                "The content type cannot contain ';', or CRLF characters.",
                "message.content.type",
            )
        else:
            types.append(kind.lower())
        value = block.get("value") if isinstance(block, dict) else None
        if not isinstance(value, str) or not value:
            problems.add(
                f"content.{index}.value",
                "The content value must be a string at least one character in length.",
                "message.content.value",
            )
    if types.count("text/plain") > 1 or types.count("text/html") > 1:
        problems.add(
            "content",
            "If present, text/plain and text/html may only be provided once.",
            "message.content",
        )
    expected = [kind for kind in ("text/plain", "text/html") if kind in types]
    if types[: len(expected)] != expected:
        problems.add(
            "content",
            "If present, text/plain must be first, followed by text/html, followed by any "
            "other content.",
            "message.content",
        )


def _args_bytes(args: dict[str, Any]) -> int:
    return len(json.dumps(args, ensure_ascii=False, separators=(",", ":")).encode())


def _check_custom_args(problems: Problems, custom_args: object, field: str, top: object) -> None:
    """String values; the custom args one email carries (the request's merged with the
    personalization's) less than 10,000 bytes."""
    if custom_args is None:
        return
    if not isinstance(custom_args, dict) or not all(
        isinstance(value, str) for value in custom_args.values()
    ):
        problems.add(
            field, "Custom args must be an object of string values.", "message.custom_args"
        )
        return
    merged = {**(top if isinstance(top, dict) else {}), **custom_args}
    if _args_bytes(merged) >= MAX_CUSTOM_ARGS_BYTES:
        problems.add(
            field,
            f"The total length of custom arguments must be less than {MAX_CUSTOM_ARGS_BYTES} "
            "bytes.",
            "message.custom_args",
        )


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


def _check_categories(problems: Problems, categories: object) -> None:
    if categories is None:
        return
    if not isinstance(categories, list) or not all(
        isinstance(name, str) and 0 < len(name) <= MAX_CATEGORY_LENGTH for name in categories
    ):
        problems.add(
            "categories",
            f"Categories must be strings of 1-{MAX_CATEGORY_LENGTH} characters.",
            "message.categories",
        )
        return
    if len(categories) > MAX_CATEGORIES:
        problems.add(
            "categories",
            f"You cannot have more than {MAX_CATEGORIES} categories per request.",
            "message.categories",
        )
    repeated = sorted({name for name in categories if categories.count(name) > 1})
    if repeated:
        problems.add(
            "categories",
            f"The categories must be unique; repeated: {', '.join(repeated)}.",
            "message.categories",
        )


def _check_asm(problems: Problems, asm: object, groups: Collection[int] | None) -> None:
    if asm is None:
        return
    group = asm.get("group_id") if isinstance(asm, dict) else None
    if isinstance(group, bool) or not isinstance(group, int):
        problems.add("asm.group_id", "The asm group_id must be an integer.", "message.asm.group_id")
    elif groups is not None and group not in groups:
        problems.add(
            "asm.group_id",
            f"The asm group_id {group} is not one of your unsubscribe groups.",
            "message.asm.group_id",
        )
    shown = asm.get("groups_to_display") if isinstance(asm, dict) else None
    if shown is None:
        return
    if (
        not isinstance(shown, list)
        or len(shown) > MAX_GROUPS_TO_DISPLAY
        or not all(isinstance(item, int) and not isinstance(item, bool) for item in shown)
    ):
        problems.add(
            "asm.groups_to_display",
            f"The groups_to_display must be an array of at most {MAX_GROUPS_TO_DISPLAY} "
            "unsubscribe group ids.",
            "message.asm.groups_to_display",
        )
    elif groups is not None and not set(shown) <= set(groups):
        problems.add(
            "asm.groups_to_display",
            "Every groups_to_display id must be one of your unsubscribe groups.",
            "message.asm.groups_to_display",
        )


def _check_headers(problems: Problems, headers: object, field: str) -> None:
    if headers is None:
        return
    if not isinstance(headers, dict) or not all(
        isinstance(value, str) for value in headers.values()
    ):
        problems.add(field, "Headers must be an object of string values.", "message.headers")
        return
    for name in headers:
        if name.lower() in RESERVED_HEADERS:
            problems.add(
                f"{field}.{name}",
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


def _activity_error(message: str) -> Response:
    return json_response(400, {"errors": [{"message": message}]})


Matcher = Callable[[dict[str, Any], dict[str, Any]], bool]


def activity_filter(query: str) -> Matcher:
    """The Email Activity query language, the part a reconciliation needs: terms
    ``field="value"`` (``msg_id``, ``from_email``, ``to_email``, ``subject``, ``status``) or
    ``unique_args['key']="value"`` (a custom arg), with ``=`` or ``!=``, joined by all ``AND``
    or all ``OR`` (parentheses around terms allowed). An empty query matches everything.
    Raises ValueError ("invalid syntax: ...") otherwise."""
    text = query.strip()
    if not text:
        return lambda row, args: True
    joins = {join.upper() for join in ACTIVITY_JOIN.findall(text)}
    if len(joins) > 1:
        raise ValueError("invalid syntax: AND and OR cannot be mixed in one query")
    terms = []
    for part in ACTIVITY_JOIN.split(text)[::2]:
        found = ACTIVITY_TERM.fullmatch(part.strip())
        if found is None:
            raise ValueError(f"invalid syntax: {part.strip()!r}")
        field, arg = found["field"], found["arg"]
        if field is not None and field not in ACTIVITY_FIELDS:
            raise ValueError(f"invalid syntax: {field!r} is not a known field")
        value = re.sub(r"\\(.)", r"\1", found["value"])
        terms.append((field, arg, found["op"] == "=", value))

    def term_matches(row: dict[str, Any], args: dict[str, Any], term: tuple[Any, ...]) -> bool:
        field, arg, equal, value = term
        actual = args.get(arg) if arg is not None else row.get(field)
        return (actual == value) is equal

    if joins == {"OR"}:
        return lambda row, args: any(term_matches(row, args, term) for term in terms)
    return lambda row, args: all(term_matches(row, args, term) for term in terms)


def _activity_row(
    message: dict[str, Any],
    recipient: dict[str, Any],
    sender: str,
    events_by_recipient: dict[str, list[dict[str, Any]]],
    now: float,
) -> dict[str, Any]:
    """One recipient of an accepted message as the Email Activity API lists it, from the
    events that have happened by ``now`` (status processed, delivered or not_delivered)."""
    happened = [
        event
        for event in events_by_recipient.get(recipient["sg_message_id"], [])
        if event["timestamp"] <= now
    ]
    kinds = {event["event"] for event in happened}
    status = "processed"
    if kinds & {"bounce", "dropped"}:
        status = "not_delivered"
    elif "delivered" in kinds:
        status = "delivered"
    last = max((event["timestamp"] for event in happened), default=message["accepted_at"])
    return {
        "from_email": sender,
        "msg_id": recipient["sg_message_id"],
        "subject": recipient["subject"],
        "to_email": recipient["email"],
        "status": status,
        "opens_count": sum(event["event"] == "open" for event in happened),
        "clicks_count": sum(event["event"] == "click" for event in happened),
        "last_event_time": datetime.fromtimestamp(last, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


class SendGridService(Service):
    """The sandbox SendGrid (v3 Mail Send, Email Activity, a poller's view of the Event
    Webhook). The account's unsubscribe groups are the configured ``OMNI_SENDGRID_ASM_GROUP_ID``
    (settings ``sendgrid_asm_group_id``)."""

    name = "sendgrid"

    def __init__(self, world: World, token: str) -> None:
        super().__init__(world, token)
        self.asm_groups = frozenset({settings_module.load().sendgrid_asm_group_id})
        state_dir = state_dir_for(world)
        self.journal = Journal(state_dir / "sendgrid_messages.jsonl" if state_dir else None)
        self.request_journal = Journal(state_dir / "sendgrid_requests.jsonl" if state_dir else None)
        self._lock = threading.Lock()
        self.messages: list[dict[str, Any]] = self.journal.replay()
        self.events: list[dict[str, Any]] = [
            event for message in self.messages for event in message.get("events", [])
        ]
        self.received: list[dict[str, Any]] = self.request_journal.replay()

    def routes(self) -> list[Route]:
        return [
            Route("POST", r"/v3/mail/send", self._send),
            Route("GET", r"/v3/messages", self._activity),
            Route("GET", r"/_sandbox/messages", self._messages, api=False),
            Route("GET", r"/_sandbox/events", self._events, api=False),
            Route("GET", r"/_sandbox/requests", self._requests, api=False),
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
        now = time.time()
        try:
            payload = request.json()
        except BadRequest as error:
            self._received(now, request.body.decode("utf-8", "replace"), 400)
            return json_response(
                400, {"errors": [{"message": str(error), "field": None, "help": None}]}
            )
        errors = validate(payload, now, self.asm_groups)
        if errors:
            self._received(now, payload, 400)
            return json_response(400, {"errors": errors})
        if ((payload.get("mail_settings") or {}).get("sandbox_mode") or {}).get("enable"):
            self._received(now, payload, 200)
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
        self._received(now, payload, 202)
        return Response(202, b"", {"X-Message-Id": message_id})

    def _received(self, now: float, body: Any, status: int) -> None:
        """Remember a request body that reached the mail-send handler and its answer (what a
        test replays through :func:`validate`)."""
        record = {"received_at": now, "status": status, "body": body}
        with self._lock:
            self.request_journal.append(record)
            self.received.append(record)

    def _activity(self, request: Request) -> Response:
        """Email Activity: ``GET /v3/messages?query=...&limit=N``, one abbreviated message per
        recipient, newest first (see :func:`activity_filter` for the query language)."""
        try:
            limit = int(request.query.get("limit") or 10)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_ACTIVITY_LIMIT:
            return _activity_error(f"limit must be between 1 and {MAX_ACTIVITY_LIMIT}")
        try:
            matches = activity_filter(request.query.get("query") or "")
        except ValueError as error:
            return _activity_error(str(error))
        now = time.time()
        with self._lock:
            messages = list(self.messages)
        found: list[dict[str, Any]] = []
        for message in reversed(messages):
            sender = (message["request"].get("from") or {}).get("email", "")
            by_recipient: dict[str, list[dict[str, Any]]] = {}
            for event in message.get("events", []):
                by_recipient.setdefault(event["sg_message_id"], []).append(event)
            for recipient in reversed(message["recipients"]):
                row = _activity_row(message, recipient, sender, by_recipient, now)
                if matches(row, recipient["custom_args"]):
                    found.append(row)
                    if len(found) >= limit:
                        return json_response(200, {"messages": found})
        return json_response(200, {"messages": found})

    # -- the sandbox's read side ----------------------------------------------------------------
    def _requests(self, request: Request) -> Response:
        """Every request body the mail-send handler received, in order, with its status."""
        with self._lock:
            received = list(self.received)
        return json_response(200, {"requests": received, "count": len(received)})

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
            self.request_journal.clear()
            self.messages.clear()
            self.events.clear()
            self.received.clear()
        return json_response(200, {"messages": 0, "events": 0})

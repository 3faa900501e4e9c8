"""Loyalty: a small REST API for cashback credits that honours an ``Idempotency-Key``.

Auth by ``Authorization: Bearer``. Members are the world's POS loyalty accounts
(``pos_customers.loyalty_account_id``, e.g. ``LA00012345``) when the served folder holds a
world, else any id matching ``MEMBER_PATTERN``. ``POST /v1/members/{id}/credits`` needs an
``Idempotency-Key`` header: the first request with a key credits (201); the same key with the
same member and body answers the original credit (200) and never credits again; the same key
with anything else is refused (422). Check and insert happen under one lock, so concurrent
retries of one key credit once. Credits are kept in memory plus ``loyalty_credits.jsonl``.

The request contract (``docs/sandbox-api.md``) is enforced field by field: a JSON body
(``Content-Type: application/json``, else 415), only the known fields, each of its type and
range; a 400 names the field: ``{"error": {"code", "message", "field"}}``.
"""

from __future__ import annotations

import re
import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import duckdb

from orchestration.sandbox.services.base import (
    ApiError,
    Request,
    Response,
    Route,
    Service,
    json_body,
    json_response,
)
from orchestration.sandbox.services.journal import Journal, state_dir_for
from orchestration.sandbox.services.paging import (
    BadRequest,
    FieldError,
    parse_limit,
    parse_timestamp,
    parse_unix_or_iso,
)
from orchestration.sandbox.services.world_db import World

MEMBER_PATTERN = re.compile(r"LA\d{8}")
OFFSET = re.compile(r"(?:[Zz]|[+-]\d{2}:?\d{2})$")
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces
VALID_IN = ("store_only", "everywhere")
CREDIT_FIELDS = ("amount_eur", "offer_id", "valid_in", "expires_at")
MAX_CREDIT_EUR = Decimal("500")
MAX_OFFER_ID = 200
CODES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    415: "unsupported_media_type",
    422: "idempotency_key_reused",
    429: "rate_limited",
}


def _iso(moment: datetime) -> str:
    return moment.replace(tzinfo=UTC).isoformat(timespec="seconds")


def world_members(world: World) -> dict[str, str] | None:
    """``{loyalty_account_id: pos_customer_id}`` of the world, or None without a world."""
    folder = world.world_dir / "pos_customers"
    files = sorted(folder.glob("*.parquet"))
    if not (world.world_dir / "world.json").exists() or not files:
        return None
    paths = ", ".join(f"'{path.as_posix()}'" for path in files)
    with duckdb.connect() as con:
        rows = con.execute(
            f"SELECT DISTINCT loyalty_account_id, pos_customer_id FROM read_parquet([{paths}]) "
            "WHERE loyalty_account_id IS NOT NULL"
        ).fetchall()
    return {str(account): str(customer) for account, customer in rows}


def parse_credit(body: dict[str, Any]) -> dict[str, Any]:
    """The normalised credit request (400 naming the field on a bad one); equal requests
    normalise equal. The contract: only ``amount_eur`` (a number or a decimal string, more
    than 0, at most 500, at most 2 decimals), ``offer_id`` (a string of 1-200 characters),
    ``valid_in`` (``store_only`` or ``everywhere``) and ``expires_at`` (ISO 8601 with an
    offset), all required."""
    unknown = sorted(set(body) - set(CREDIT_FIELDS))
    if unknown:
        raise FieldError(unknown[0], f"unknown fields {unknown}; known: {list(CREDIT_FIELDS)}")
    raw = body.get("amount_eur")
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise FieldError("amount_eur", "amount_eur must be a number or a decimal string")
    try:
        amount = Decimal(str(raw).strip())
    except InvalidOperation as error:
        raise FieldError("amount_eur", "amount_eur must be a number") from error
    if not amount.is_finite() or amount <= 0 or amount > MAX_CREDIT_EUR:
        raise FieldError(
            "amount_eur", f"amount_eur must be more than 0 and at most {MAX_CREDIT_EUR}"
        )
    if amount != amount.quantize(Decimal("0.01")):
        raise FieldError("amount_eur", "amount_eur must have at most 2 decimals")
    offer_id = body.get("offer_id")
    if not isinstance(offer_id, str) or not offer_id.strip() or len(offer_id) > MAX_OFFER_ID:
        raise FieldError("offer_id", f"offer_id must be a string of 1-{MAX_OFFER_ID} characters")
    valid_in = body.get("valid_in")
    if valid_in not in VALID_IN:
        raise FieldError("valid_in", f"valid_in must be one of {list(VALID_IN)}")
    expires = body.get("expires_at")
    if not isinstance(expires, str) or not _has_offset(expires):
        raise FieldError("expires_at", "expires_at must be an ISO 8601 timestamp with an offset")
    try:
        expires_at = parse_timestamp(expires, "expires_at")
    except BadRequest as error:
        raise FieldError("expires_at", str(error)) from error
    return {
        "amount_eur": f"{amount.quantize(Decimal('0.01'))}",
        "offer_id": offer_id,
        "valid_in": valid_in,
        "expires_at": _iso(expires_at),
    }


def _has_offset(text: str) -> bool:
    """True when an ISO 8601 timestamp names its offset (``Z``, ``+01:00``, ``+0100``)."""
    return "T" in text and OFFSET.search(text.strip()) is not None


def idempotency_key(request: Request) -> str:
    key = request.headers.get("idempotency-key", "")
    if not key:
        raise FieldError("Idempotency-Key", "the Idempotency-Key header is required")
    if not KEY_PATTERN.fullmatch(key):
        raise FieldError(
            "Idempotency-Key", "the Idempotency-Key must be 1-255 printable ASCII characters"
        )
    return key


class LoyaltyService(Service):
    """Members, cashback credits (idempotent), balances and a reconciliation feed."""

    name = "loyalty"

    def __init__(self, world: World, token: str) -> None:
        super().__init__(world, token)
        self.members = world_members(world)
        state_dir = state_dir_for(world)
        self.journal = Journal(state_dir / "loyalty_credits.jsonl" if state_dir else None)
        self._lock = threading.Lock()
        self.credits: list[dict[str, Any]] = self.journal.replay()
        self.by_key = {credit["idempotency_key"]: credit for credit in self.credits}

    def routes(self) -> list[Route]:
        member = r"/v1/members/(?P<member>[^/]+)"
        return [
            Route("GET", member, self._member),
            Route("POST", member + "/credits", self._credit),
            Route("GET", member + "/balance", self._balance),
            Route("GET", r"/v1/credits", self._credits),
            Route("DELETE", r"/_sandbox/state", self._clear, api=False),
        ]

    def error_payload(self, status: int, message: str, field: str | None = None) -> Any:
        code = CODES.get(status, "server_error" if status >= 500 else "error")
        return {"error": {"code": code, "message": message, "field": field}}

    def bad_request(self, error: BadRequest) -> Response:
        field = error.field if isinstance(error, FieldError) else None
        return json_response(400, self.error_payload(400, str(error), field))

    def _reload(self, request: Request) -> Response:
        self.members = world_members(self.world)
        return super()._reload(request)

    # -- the API ----------------------------------------------------------------------------
    def _member_id(self, request: Request) -> str:
        assert request.match is not None
        member = request.match["member"]
        known = MEMBER_PATTERN.fullmatch(member) if self.members is None else member in self.members
        if not known:
            raise ApiError(404, f"member {member!r} not found")
        return member

    def _member(self, request: Request) -> Response:
        member = self._member_id(request)
        customer = self.members.get(member) if self.members else None
        return json_response(
            200, {"member_id": member, "pos_customer_id": customer, "status": "active"}
        )

    def _credit(self, request: Request) -> Response:
        member = self._member_id(request)
        key = idempotency_key(request)
        fingerprint = {"member_id": member, **parse_credit(json_body(request))}
        with self._lock:
            original = self.by_key.get(key)
            if original is not None:
                same = all(original[field] == value for field, value in fingerprint.items())
                if not same:
                    raise ApiError(
                        422, f"Idempotency-Key {key!r} was used with another member or body"
                    )
                return json_response(200, original, {"Idempotent-Replayed": "true"})
            credit = {
                "credit_id": f"cr_{uuid.uuid4().hex[:20]}",
                **fingerprint,
                "currency": "EUR",
                "status": "active",
                "idempotency_key": key,
                "created_at": _iso(datetime.now(UTC).replace(tzinfo=None)),
            }
            self.journal.append(credit)
            self.credits.append(credit)
            self.by_key[key] = credit
        return json_response(201, credit)

    def _balance(self, request: Request) -> Response:
        member = self._member_id(request)
        as_of_text = request.query.get("as_of")
        as_of = (
            parse_timestamp(as_of_text, "as_of")
            if as_of_text
            else datetime.now(UTC).replace(tzinfo=None)
        )
        totals = {"store_only": Decimal(0), "everywhere": Decimal(0), "expired": Decimal(0)}
        count = 0
        with self._lock:
            mine = [credit for credit in self.credits if credit["member_id"] == member]
        for credit in mine:
            count += 1
            expired = parse_timestamp(credit["expires_at"], "expires_at") <= as_of
            totals["expired" if expired else credit["valid_in"]] += Decimal(credit["amount_eur"])
        return json_response(
            200,
            {
                "member_id": member,
                "currency": "EUR",
                "as_of": _iso(as_of),
                "balance_eur": f"{totals['store_only'] + totals['everywhere']}",
                "store_only_eur": f"{totals['store_only']}",
                "everywhere_eur": f"{totals['everywhere']}",
                "expired_eur": f"{totals['expired']}",
                "credits": count,
            },
        )

    def _credits(self, request: Request) -> Response:
        """Credits in creation order (``since`` inclusive, unix or ISO; ``after`` a position)."""
        since_text = request.query.get("since")
        since = parse_unix_or_iso(since_text, "since") if since_text else None
        try:
            after = int(request.query.get("after") or 0)
        except ValueError as error:
            raise BadRequest("after must be an integer") from error
        limit = parse_limit(request.query.get("limit"), 1000, 10_000)
        with self._lock:
            credits = self.credits[after:]
        selected = []
        position = after
        for credit in credits:
            position += 1
            if since is None or parse_timestamp(credit["created_at"], "created_at") >= since:
                selected.append(credit)
                if len(selected) >= limit:
                    break
        return json_response(
            200, {"credits": selected, "count": len(selected), "next_after": position}
        )

    def _clear(self, request: Request) -> Response:
        with self._lock:
            self.journal.clear()
            self.credits.clear()
            self.by_key.clear()
        return json_response(200, {"credits": 0})

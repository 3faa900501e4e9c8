"""Store API: each store's list of in-store offers, written by idempotent upserts.

Auth by ``Authorization: Bearer``. ``PUT /v1/stores/{store_id}/offers/{offer_key}`` creates
(201) or replaces (200) one offer; a PUT with the same content changes nothing (200, same
``version``), so a retried dispatch never duplicates an offer. ``DELETE`` withdraws it (the
record stays, ``status: withdrawn``; a later PUT brings it back). ``GET
/v1/stores/{store_id}/offers?date=YYYY-MM-DD`` lists the active offers valid that day. Stores
are the world's (``store_id`` or ``pos_location_id``) when a world is served, else any id
matching ``STORE_PATTERN``. Changes are kept in memory plus ``store_offers.jsonl``.

The request contract (``docs/sandbox-api.md``) is enforced field by field: a JSON body
(``Content-Type: application/json``, else 415), only the known fields, each of its type, size
and range (items too); a 400 names the field: ``{"error": {"status", "message", "field"}}``.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, date, datetime
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
from orchestration.sandbox.services.paging import BadRequest, FieldError, parse_timestamp
from orchestration.sandbox.services.world_db import World

STORE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
OFFER_KEY_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,200}")
FIELDS = ("customer_id", "offer_id", "code", "conditions", "items", "valid_from", "valid_until")
REQUIRED = ("customer_id", "offer_id", "code", "valid_until")
MAX_TEXT = 200  # customer_id, offer_id, code
MAX_CONDITIONS_TEXT = 2_000  # characters of a string `conditions`
MAX_CONDITIONS_BYTES = 10_000  # JSON bytes of an object `conditions`
MAX_ITEMS = 100
ITEM_TEXT_FIELDS = ("sku", "title", "category", "size", "colour", "color")
ITEM_FIELDS = ("product_id", "quantity", "unit_price", "price", *ITEM_TEXT_FIELDS)
MAX_QUANTITY = 1_000


def world_stores(world: World) -> set[str] | None:
    """The world's store ids and POS location ids (as text), or None without a world."""
    files = sorted((world.world_dir / "stores").glob("*.parquet"))
    if not (world.world_dir / "world.json").exists() or not files:
        return None
    paths = ", ".join(f"'{path.as_posix()}'" for path in files)
    with duckdb.connect() as con:
        rows = con.execute(
            f"SELECT DISTINCT store_id, pos_location_id FROM read_parquet([{paths}])"
        ).fetchall()
    return {str(value) for row in rows for value in row if value is not None}


def _day(value: str, name: str) -> date:
    text = value.strip()
    try:
        return date.fromisoformat(text) if len(text) == 10 else parse_timestamp(text, name).date()
    except ValueError as error:
        raise FieldError(
            name, f"{name} must be an ISO 8601 date or timestamp, got {value!r}"
        ) from error


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise FieldError(name, f"{name} must be a string of 1-{MAX_TEXT} characters")
    return value


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_item(item: object, where: str) -> None:
    if not isinstance(item, dict):
        raise FieldError(where, "items must be a list of objects")
    unknown = sorted(set(item) - set(ITEM_FIELDS))
    if unknown:
        raise FieldError(f"{where}.{unknown[0]}", f"unknown item fields {unknown}")
    if item.get("product_id") is None and item.get("sku") is None:
        raise FieldError(where, "an item needs a product_id or a sku")
    product = item.get("product_id")
    if product is not None and (
        isinstance(product, bool) or not isinstance(product, int | str) or product == ""
    ):
        raise FieldError(f"{where}.product_id", "product_id must be a string or an integer")
    quantity = item.get("quantity")
    if quantity is not None and (
        isinstance(quantity, bool)
        or not isinstance(quantity, int)
        or not 1 <= quantity <= MAX_QUANTITY
    ):
        raise FieldError(
            f"{where}.quantity", f"quantity must be an integer from 1 to {MAX_QUANTITY}"
        )
    for name in ("unit_price", "price"):
        price = item.get(name)
        if price is not None and (not _number(price) or not 0 <= price < 1e9):
            raise FieldError(f"{where}.{name}", f"{name} must be a number of at least 0")
    for name in ITEM_TEXT_FIELDS:
        value = item.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
            raise FieldError(
                f"{where}.{name}", f"{name} must be a string of at most {MAX_TEXT} characters"
            )


def parse_offer(body: dict[str, Any]) -> dict[str, Any]:
    """The offer fields of a PUT body (400 naming the field on a bad one). The contract:
    ``customer_id`` (a string of 1-200 characters or an integer), ``offer_id`` and ``code``
    (strings of 1-200 characters), ``conditions`` (a string of at most 2,000 characters or an
    object of at most 10,000 JSON bytes; optional), ``items`` (at most 100 objects with a
    ``product_id`` or ``sku``, ``quantity`` 1-1,000, prices >= 0, text fields; optional),
    ``valid_until`` (a date or timestamp) and ``valid_from`` (optional, not after
    ``valid_until``); nothing else."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise FieldError(unknown[0], f"unknown fields {unknown}; known: {list(FIELDS)}")
    missing = [name for name in REQUIRED if body.get(name) is None]
    if missing:
        raise FieldError(missing[0], f"{missing[0]} is required")
    customer = body["customer_id"]
    if isinstance(customer, bool) or not isinstance(customer, str | int):
        raise FieldError("customer_id", "customer_id must be a string or an integer")
    if isinstance(customer, str):
        _text(body, "customer_id")
    offer_id, code = _text(body, "offer_id"), _text(body, "code")
    conditions = body.get("conditions", "")
    if isinstance(conditions, str):
        if len(conditions) > MAX_CONDITIONS_TEXT:
            raise FieldError(
                "conditions", f"conditions must be at most {MAX_CONDITIONS_TEXT} characters"
            )
    elif isinstance(conditions, dict):
        size = len(json.dumps(conditions, ensure_ascii=False).encode())
        if size > MAX_CONDITIONS_BYTES:
            raise FieldError(
                "conditions", f"conditions must be at most {MAX_CONDITIONS_BYTES} JSON bytes"
            )
    else:
        raise FieldError("conditions", "conditions must be a string or an object")
    items = body.get("items", [])
    if not isinstance(items, list) or len(items) > MAX_ITEMS:
        raise FieldError("items", f"items must be a list of at most {MAX_ITEMS} objects")
    for index, item in enumerate(items):
        _check_item(item, f"items.{index}")
    if not isinstance(body["valid_until"], str):
        raise FieldError("valid_until", "valid_until must be an ISO 8601 date or timestamp")
    until = _day(body["valid_until"], "valid_until")
    if body.get("valid_from") is not None:
        if not isinstance(body["valid_from"], str):
            raise FieldError("valid_from", "valid_from must be an ISO 8601 date or timestamp")
        if _day(body["valid_from"], "valid_from") > until:
            raise FieldError("valid_from", "valid_from must not be after valid_until")
    return {
        "customer_id": customer,
        "offer_id": offer_id,
        "code": code,
        "conditions": conditions,
        "items": items,
        "valid_from": body.get("valid_from"),
        "valid_until": body["valid_until"],
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class StoreService(Service):
    """In-store offers per store: upsert, list by day, withdraw."""

    name = "store"

    def __init__(self, world: World, token: str) -> None:
        super().__init__(world, token)
        self.stores = world_stores(world)
        state_dir = state_dir_for(world)
        self.journal = Journal(state_dir / "store_offers.jsonl" if state_dir else None)
        self._lock = threading.Lock()
        self.offers: dict[tuple[str, str], dict[str, Any]] = {}
        for record in self.journal.replay():  # the journal holds every version: last wins
            self.offers[(record["store_id"], record["offer_key"])] = record

    def routes(self) -> list[Route]:
        store = r"/v1/stores/(?P<store>[^/]+)/offers"
        return [
            Route("GET", store, self._list),
            Route("PUT", store + r"/(?P<key>[^/]+)", self._put),
            Route("GET", store + r"/(?P<key>[^/]+)", self._get),
            Route("DELETE", store + r"/(?P<key>[^/]+)", self._delete),
            Route("GET", r"/_sandbox/offers", self._all, api=False),
            Route("DELETE", r"/_sandbox/state", self._clear, api=False),
        ]

    def error_payload(self, status: int, message: str, field: str | None = None) -> Any:
        return {"error": {"status": status, "message": message, "field": field}}

    def bad_request(self, error: BadRequest) -> Response:
        field = error.field if isinstance(error, FieldError) else None
        return json_response(400, self.error_payload(400, str(error), field))

    def _reload(self, request: Request) -> Response:
        self.stores = world_stores(self.world)
        return super()._reload(request)

    # -- the API ----------------------------------------------------------------------------
    def _store(self, request: Request) -> str:
        assert request.match is not None
        store = request.match["store"]
        known = STORE_PATTERN.fullmatch(store) if self.stores is None else store in self.stores
        if not known:
            raise ApiError(404, f"store {store!r} not found")
        return store

    def _key(self, request: Request) -> tuple[str, str]:
        store = self._store(request)
        assert request.match is not None
        key = request.match["key"]
        if not OFFER_KEY_PATTERN.fullmatch(key):
            raise BadRequest("offer_key must be 1-200 of A-Z a-z 0-9 . _ : -")
        return store, key

    def _put(self, request: Request) -> Response:
        store, key = self._key(request)
        fields = parse_offer(json_body(request))
        with self._lock:
            current = self.offers.get((store, key))
            if current is not None and current["status"] == "active":
                if all(current[name] == value for name, value in fields.items()):
                    return json_response(200, current)  # the same upsert again: no change
            now = _now()
            offer = {
                "store_id": store,
                "offer_key": key,
                **fields,
                "status": "active",
                "version": (current["version"] + 1) if current else 1,
                "created_at": current["created_at"] if current else now,
                "updated_at": now,
            }
            self.journal.append(offer)
            self.offers[(store, key)] = offer
        return json_response(200 if current else 201, offer)

    def _get(self, request: Request) -> Response:
        store, key = self._key(request)
        with self._lock:
            offer = self.offers.get((store, key))
        if offer is None:
            raise ApiError(404, f"offer {key!r} not found in store {store!r}")
        return json_response(200, offer)

    def _delete(self, request: Request) -> Response:
        store, key = self._key(request)
        with self._lock:
            offer = self.offers.get((store, key))
            if offer is None:
                raise ApiError(404, f"offer {key!r} not found in store {store!r}")
            if offer["status"] != "withdrawn":
                offer = {**offer, "status": "withdrawn", "version": offer["version"] + 1}
                offer["updated_at"] = _now()
                self.journal.append(offer)
                self.offers[(store, key)] = offer
        return json_response(200, offer)

    def _list(self, request: Request) -> Response:
        store = self._store(request)
        day_text = request.query.get("date")
        day = _day(day_text, "date") if day_text else None
        with self._lock:
            offers = [
                offer
                for (store_id, _), offer in sorted(self.offers.items())
                if store_id == store and offer["status"] == "active"
            ]
        if day is not None:
            offers = [offer for offer in offers if _valid_on(offer, day)]
        return json_response(200, {"store_id": store, "date": day_text, "offers": offers})

    def _all(self, request: Request) -> Response:
        with self._lock:
            offers = [offer for _, offer in sorted(self.offers.items())]
        return json_response(200, {"offers": offers, "count": len(offers)})

    def _clear(self, request: Request) -> Response:
        with self._lock:
            self.journal.clear()
            self.offers.clear()
        return json_response(200, {"offers": 0})


def _valid_on(offer: dict[str, Any], day: date) -> bool:
    starts = _day(offer["valid_from"], "valid_from") if offer.get("valid_from") else None
    return (starts is None or starts <= day) and day <= _day(offer["valid_until"], "valid_until")

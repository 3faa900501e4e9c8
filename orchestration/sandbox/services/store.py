"""Store API: each store's list of in-store offers, written by idempotent upserts.

Auth by ``Authorization: Bearer``. ``PUT /v1/stores/{store_id}/offers/{offer_key}`` creates
(201) or replaces (200) one offer; a PUT with the same content changes nothing (200, same
``version``), so a retried dispatch never duplicates an offer. ``DELETE`` withdraws it (the
record stays, ``status: withdrawn``; a later PUT brings it back). ``GET
/v1/stores/{store_id}/offers?date=YYYY-MM-DD`` lists the active offers valid that day. Stores
are the world's (``store_id`` or ``pos_location_id``) when a world is served, else any id
matching ``STORE_PATTERN``. Changes are kept in memory plus ``store_offers.jsonl``.
"""

from __future__ import annotations

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
    json_response,
)
from orchestration.sandbox.services.journal import Journal, state_dir_for
from orchestration.sandbox.services.paging import BadRequest, parse_timestamp
from orchestration.sandbox.services.world_db import World

STORE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
OFFER_KEY_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,200}")
FIELDS = ("customer_id", "offer_id", "code", "conditions", "items", "valid_from", "valid_until")


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
        raise BadRequest(f"{name} must be an ISO 8601 date or timestamp, got {value!r}") from error


def parse_offer(body: dict[str, Any]) -> dict[str, Any]:
    """The offer fields of a PUT body (400 on a bad field)."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadRequest(f"unknown fields {unknown}; known: {list(FIELDS)}")
    customer = body.get("customer_id")
    if isinstance(customer, bool) or not isinstance(customer, str | int) or customer == "":
        raise BadRequest("customer_id must be a string or an integer")
    for name in ("offer_id", "code"):
        if not isinstance(body.get(name), str) or not body[name].strip():
            raise BadRequest(f"{name} must be a non-empty string")
    if not isinstance(body.get("conditions", ""), str | dict):
        raise BadRequest("conditions must be a string or an object")
    items = body.get("items", [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise BadRequest("items must be a list of objects")
    if not isinstance(body.get("valid_until"), str):
        raise BadRequest("valid_until must be an ISO 8601 date or timestamp")
    _day(body["valid_until"], "valid_until")
    if body.get("valid_from") is not None:
        if not isinstance(body["valid_from"], str):
            raise BadRequest("valid_from must be an ISO 8601 date or timestamp")
        _day(body["valid_from"], "valid_from")
    return {
        "customer_id": customer,
        "offer_id": body["offer_id"],
        "code": body["code"],
        "conditions": body.get("conditions", ""),
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

    def error_payload(self, status: int, message: str) -> Any:
        return {"error": {"status": status, "message": message}}

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
        fields = parse_offer(request.json())
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

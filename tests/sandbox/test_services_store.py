"""The sandbox store API: idempotent offer upserts, listing by day, withdrawal, auth."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
import requests

from orchestration.sandbox import services
from orchestration.settings import SANDBOX_TOKENS

HEADERS = {"Authorization": f"Bearer {SANDBOX_TOKENS['store']}"}
OFFER = {
    "customer_id": "C123",
    "offer_id": "cart_recovery:5eur",
    "code": "CART-5-X7Q",
    "conditions": "5 EUR off any of these items, today only",
    "items": [{"product_id": 17, "sku": "SKU-17", "title": "Lamp", "price": 39.9}],
    "valid_until": "2026-11-03",
}


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    with services.running(tmp_path / "world", names=("store",)) as urls:
        yield urls["store"]


def put(base: str, store_id: str, key: str, body: dict[str, Any] = OFFER) -> requests.Response:
    return requests.put(f"{base}/v1/stores/{store_id}/offers/{key}", json=body, headers=HEADERS)


def listed(base: str, store_id: str, **params: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{base}/v1/stores/{store_id}/offers", headers=HEADERS, params=params)
    answer.raise_for_status()
    offers: list[dict[str, Any]] = answer.json()["offers"]
    return offers


def test_put_twice_is_one_offer(store: str) -> None:
    first = put(store, "L0001", "dispatch-1")
    assert first.status_code == 201
    again = put(store, "L0001", "dispatch-1")
    assert again.status_code == 200
    assert again.json() == first.json()
    assert [offer["offer_key"] for offer in listed(store, "L0001")] == ["dispatch-1"]
    changed = put(store, "L0001", "dispatch-1", {**OFFER, "code": "CART-5-ZZZ"})
    assert changed.status_code == 200 and changed.json()["version"] == 2
    assert [offer["code"] for offer in listed(store, "L0001")] == ["CART-5-ZZZ"]


def test_listing_by_day_and_store(store: str) -> None:
    assert put(store, "L0001", "a").status_code == 201
    later = {**OFFER, "valid_from": "2026-11-05", "valid_until": "2026-11-06"}
    assert put(store, "L0001", "b", later).status_code == 201
    assert put(store, "L0002", "c").status_code == 201
    assert [o["offer_key"] for o in listed(store, "L0001")] == ["a", "b"]
    assert [o["offer_key"] for o in listed(store, "L0001", date="2026-11-03")] == ["a"]
    assert [o["offer_key"] for o in listed(store, "L0001", date="2026-11-05")] == ["b"]
    assert listed(store, "L0001", date="2026-11-07") == []
    assert [o["offer_key"] for o in listed(store, "L0002")] == ["c"]
    bad = requests.get(f"{store}/v1/stores/L0001/offers", headers=HEADERS, params={"date": "x"})
    assert bad.status_code == 400


def test_delete_withdraws_and_put_restores(store: str) -> None:
    assert put(store, "L0001", "a").status_code == 201
    url = f"{store}/v1/stores/L0001/offers/a"
    gone = requests.delete(url, headers=HEADERS)
    assert gone.status_code == 200 and gone.json()["status"] == "withdrawn"
    assert requests.delete(url, headers=HEADERS).json()["version"] == gone.json()["version"]
    assert listed(store, "L0001") == []
    assert requests.get(url, headers=HEADERS).json()["status"] == "withdrawn"
    assert requests.delete(f"{url}-other", headers=HEADERS).status_code == 404
    assert put(store, "L0001", "a").json()["status"] == "active"
    assert len(listed(store, "L0001")) == 1


ITEM = OFFER["items"][0]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**OFFER, "code": ""}, "code"),
        ({**OFFER, "code": "C" * 201}, "code"),
        ({**OFFER, "offer_id": 5}, "offer_id"),
        ({**OFFER, "customer_id": None}, "customer_id"),
        ({**OFFER, "customer_id": True}, "customer_id"),
        ({**OFFER, "discount": 5}, "discount"),
        ({**OFFER, "conditions": 5}, "conditions"),
        ({**OFFER, "conditions": "x" * 2001}, "conditions"),
        ({**OFFER, "conditions": {"text": "x" * 10_001}}, "conditions"),
        ({**OFFER, "items": "lamp"}, "items"),
        ({**OFFER, "items": [ITEM] * 101}, "items"),
        ({**OFFER, "items": ["lamp"]}, "items.0"),
        ({**OFFER, "items": [{"title": "no id"}]}, "items.0"),
        ({**OFFER, "items": [{**ITEM, "quantity": 0}]}, "items.0.quantity"),
        ({**OFFER, "items": [{**ITEM, "quantity": 1.5}]}, "items.0.quantity"),
        ({**OFFER, "items": [{**ITEM, "price": -1}]}, "items.0.price"),
        ({**OFFER, "items": [{**ITEM, "unit_price": "39.90"}]}, "items.0.unit_price"),
        ({**OFFER, "items": [{**ITEM, "title": 7}]}, "items.0.title"),
        ({**OFFER, "items": [{**ITEM, "discount": 1}]}, "items.0.discount"),
        ({**OFFER, "valid_until": "next week"}, "valid_until"),
        ({**OFFER, "valid_until": None}, "valid_until"),
        ({**OFFER, "valid_from": "2026-11-04"}, "valid_from"),  # after valid_until
    ],
)
def test_bad_offers_are_400_naming_the_field(store: str, body: dict[str, Any], field: str) -> None:
    answer = put(store, "L0001", "bad", body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["status"] == 400 and error["field"] == field and error["message"]
    assert listed(store, "L0001") == []


def test_what_is_at_a_limit_is_accepted(store: str) -> None:
    item = {**ITEM, "quantity": 1000, "unit_price": 0, "colour": "azul", "size": "M"}
    biggest = {
        **OFFER,
        "customer_id": 7,
        "code": "C" * 200,
        "conditions": {"text": "x" * 9_000, "recognise": {"first_name": "Lucía"}},
        "items": [item] * 100,
        "valid_from": "2026-11-03",
    }
    assert put(store, "L0001", "big", biggest).status_code == 201
    assert put(store, "L0001", "bare", {**OFFER, "items": [{"sku": "S"}]}).status_code == 201


def test_a_body_that_is_not_json_is_415(store: str) -> None:
    answer = requests.put(
        f"{store}/v1/stores/L0001/offers/form", data={"code": "x"}, headers=HEADERS, timeout=10
    )
    assert answer.status_code == 415
    assert listed(store, "L0001") == []


def test_auth_and_faults(store: str) -> None:
    assert requests.put(f"{store}/v1/stores/L0001/offers/a", json=OFFER).status_code == 401
    assert requests.get(f"{store}/v1/stores/L0001/offers").status_code == 401
    assert requests.delete(f"{store}/v1/stores/L0001/offers/a").status_code == 401
    requests.post(f"{store}/_sandbox/faults", json={"error_rate": 1.0}).raise_for_status()
    assert put(store, "L0001", "a").status_code == 500
    requests.delete(f"{store}/_sandbox/faults")
    assert put(store, "L0001", "a").status_code == 201


def test_stores_are_the_worlds_and_offers_persist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestration.sandbox import world

    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    world_dir = tmp_path / "world"
    world.generate(world_dir, 300, 3, 5, end_date=date(2026, 11, 1))
    with duckdb.connect() as con:
        row = con.execute(
            f"SELECT store_id, pos_location_id FROM read_parquet('{world_dir}/stores/*.parquet') "
            "ORDER BY store_id LIMIT 1"
        ).fetchone()
    assert row is not None
    store_id, location = str(row[0]), str(row[1])
    with services.running(world_dir, names=("store",)) as urls:
        base = urls["store"]
        assert put(base, store_id, "a").status_code == 201
        assert put(base, location, "b").status_code == 201
        assert put(base, "L9999", "c").status_code == 404
    with services.running(world_dir, names=("store",)) as urls:
        assert put(urls["store"], store_id, "a").status_code == 200  # remembered: no change
        everything = requests.get(f"{urls['store']}/_sandbox/offers").json()
        assert everything["count"] == 2

"""The in-store channel against the sandbox store API: one offer per contact however often it
is sent (re-runs, a crash, faults, timeouts), its body (code, items, conditions with the
campaign's staff note and how to recognise the customer), and dead letters with the reason."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from orchestration import settings
from orchestration.dispatch import Channel, Ledger, State, http, in_store
from orchestration.sandbox import services
from orchestration.settings import REPO_ROOT, SANDBOX_TOKENS

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
HEADERS = {"Authorization": f"Bearer {SANDBOX_TOKENS['store']}"}
CART = [
    {"product_id": 501, "sku": "ZAP-0501", "title": "Zapatillas running", "category": "shoes",
     "quantity": 1, "unit_price": 59.9, "size": "42", "colour": "negro"},
    {"product_id": 502, "sku": "CAL-0502", "title": "Calcetines técnicos", "quantity": 2,
     "unit_price": 9.9},
]  # fmt: skip


@dataclass
class World:
    url: str
    cfg: settings.Settings
    ledger: Ledger

    def offers(self) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/_sandbox/offers", timeout=10)
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()["offers"]
        return found

    def faults(self, **values: Any) -> None:
        requests.post(f"{self.url}/_sandbox/faults", json=values, timeout=10).raise_for_status()

    def clear_faults(self) -> None:
        requests.delete(f"{self.url}/_sandbox/faults", timeout=10).raise_for_status()


def use_campaigns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the shipped campaign files (their staff notes are what we render)."""
    folder = tmp_path / "campaigns"
    shutil.copytree(REPO_ROOT / "campaigns", folder)
    monkeypatch.setenv("OMNI_CAMPAIGNS_DIR", str(folder))
    return folder


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    use_campaigns(tmp_path, monkeypatch)
    with services.running(tmp_path / "world", names=("store",)) as urls:
        monkeypatch.setenv("OMNI_STORE_URL", urls["store"])
        with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as ledger:
            yield World(urls["store"], settings.load(), ledger)


def store_rows(count: int, *, start: int = 0, **overrides: Any) -> list[dict[str, Any]]:
    """Hand-off rows shaped like sync_store_offers_audience (abandoned carts), due before NOW."""
    rows = []
    for index in range(start, start + count):
        row: dict[str, Any] = {
            "campaign_id": "abandoned_cart_nearby_store",
            "customer_id": f"cus_{index:05d}",
            "trigger_key": f"trg_{index:05d}",
            "trigger_type": "abandoned_cart_nearby_stock",
            "channel": "in_store",
            "store_id": str(7 + index % 3),
            "distance_km": 2.5,
            "first_name": "Lucía",
            "loyalty_account_id": f"LA{index:08d}",
            "email": f"lucia.{index}@example.com",
            "offer_id": "cesta_tienda_cashback_10",
            "offer_kind": "cashback_percent",
            "offer_value": 10.0,
            "offer_code": None,
            "offer_valid_in": "store_only",
            "offer_valid_until": "2026-11-27",
            "estimated_cost_eur": 7.97,
            "scheduled_send_at": NOW - timedelta(minutes=1),
            "is_transactional": False,
            "cart_items_json": json.dumps(CART),
            "payload_json": json.dumps({"cart": {"subtotal": 79.7}, "cart_items": CART}),
        }
        row.update(overrides)
        rows.append(row)
    return rows


def test_offers_are_upserted_once_and_carry_what_staff_need(world: World) -> None:
    world.ledger.record_intents(store_rows(12))
    first = in_store.send_due(world.ledger, world.cfg, now=NOW, batch_size=5)
    assert first == {"claimed": 12, "sent": 12, "failed": 0, "dead_lettered": 0, "unknown": 0}
    assert in_store.send_due(world.ledger, world.cfg, now=NOW + timedelta(hours=1))["claimed"] == 0
    offers = {offer["offer_key"]: offer for offer in world.offers()}
    assert len(offers) == 12
    for contact in world.ledger.list_contacts(channel=Channel.IN_STORE):
        offer = offers[contact.contact_id]
        assert offer["store_id"] == contact.payload["store_id"]
        assert offer["version"] == 1
        assert contact.provider_message_id == (
            f"store:{offer['store_id']}:offer:{contact.contact_id}:v1"
        )
        assert offer["customer_id"] == contact.customer_id
        assert offer["code"] == "cesta_tienda_cashback_10"  # cashback: the offer id is the code
        assert offer["valid_from"] == "2026-11-20" and offer["valid_until"] == "2026-11-27"
        assert [item["sku"] for item in offer["items"]] == ["ZAP-0501", "CAL-0502"]
        assert offer["items"][0]["size"] == "42" and offer["items"][0]["colour"] == "negro"
        conditions = offer["conditions"]
        assert conditions["offer_label"] == "10 % de cashback (hasta 15,00 €)"
        assert "solo en tiendas" in conditions["text"] and "27/11/2026" in conditions["text"]
        assert conditions["staff_note"].startswith("Tiene en esta tienda artículos")
        recognise = conditions["recognise"]
        assert recognise["first_name"] == "Lucía"
        assert recognise["loyalty_account_id"] == contact.payload["loyalty_account_id"]
        assert recognise["email"] == "l***@example.com"


def test_a_code_offer_renders_the_staff_note_with_the_code(world: World) -> None:
    world.ledger.record_intents(
        store_rows(
            1,
            campaign_id="win_back_recovery",
            trigger_type="win_back",
            offer_id="vuelve_15",
            offer_kind="discount_code",
            offer_value=15.0,
            offer_code="VUELVE15",
            offer_valid_in="everywhere",
            cart_items_json="[]",
            payload_json=json.dumps({"days_inactive": 120}),
        )
    )
    assert in_store.send_due(world.ledger, world.cfg, now=NOW)["sent"] == 1
    (offer,) = world.offers()
    assert offer["code"] == "VUELVE15" and offer["items"] == []
    assert "VUELVE15" in offer["conditions"]["staff_note"]
    assert "en tienda y online" in offer["conditions"]["text"]


def test_a_staff_note_that_fails_on_real_data_blocks_only_its_contact(world: World) -> None:
    folder = Path(str(world.cfg.campaigns_dir))
    path = folder / "abandoned_cart_nearby_store.yml"
    text = path.read_text(encoding="utf-8")
    note = "Tiene en esta tienda artículos que dejó en su cesta online."
    assert note in text
    # renders with the trigger's example data (one cart item), fails on an empty cart
    path.write_text(text.replace(note, "Ofrécele {{ cart_items[0].title }}."), encoding="utf-8")
    empty = json.dumps({"cart": {"subtotal": 0}, "cart_items": []})
    world.ledger.record_intents(
        store_rows(1) + store_rows(1, start=1, cart_items_json="[]", payload_json=empty)
    )
    counts = in_store.send_due(world.ledger, world.cfg, now=NOW)
    assert counts["sent"] == 1 and counts["dead_lettered"] == 1
    contacts = {c.customer_id: c for c in world.ledger.list_contacts(channel=Channel.IN_STORE)}
    assert contacts["cus_00000"].state == State.SENT
    blocked = contacts["cus_00001"]
    assert blocked.state == State.DEAD_LETTERED
    assert "staff note not rendered" in (blocked.last_error or "")
    (offer,) = world.offers()
    assert offer["conditions"]["staff_note"].startswith("Ofrécele Zapatillas running.")


def test_crash_after_the_put_and_repeats_keep_one_offer_version(world: World) -> None:
    world.ledger.record_intents(store_rows(6))
    claimed = world.ledger.claim(Channel.IN_STORE, 100, NOW)
    campaigns = in_store.campaigns_by_id(world.cfg)
    with http.session(world.cfg.tokens["store"]) as client:
        for contact in claimed:  # PUT twice, then "crash" before the ledger hears of it
            prepared = in_store.offer_request(contact, world.url, campaigns)
            assert isinstance(prepared, http.PreparedRequest)
            statuses = [
                client.request(prepared.method, prepared.url, json=prepared.body).status_code
                for _ in range(2)
            ]
            assert statuses == [201, 200]
    later = NOW + timedelta(minutes=30)
    assert world.ledger.recover_stale(Channel.IN_STORE, timedelta(minutes=10), later) == {
        "pending": 6
    }
    assert in_store.send_due(world.ledger, world.cfg, now=later)["sent"] == 6
    offers = world.offers()
    assert len(offers) == 6 and {offer["version"] for offer in offers} == {1}


def test_missing_or_unknown_store_is_dead_lettered_with_the_reason(world: World) -> None:
    rows = store_rows(3)
    rows[0]["store_id"] = None
    rows[1]["store_id"] = "no such store!"
    world.ledger.record_intents(rows)
    result = in_store.send_due(world.ledger, world.cfg, now=NOW)
    assert result == {"claimed": 3, "sent": 1, "failed": 0, "dead_lettered": 2, "unknown": 0}
    dead = {c.customer_id: c.last_error for c in world.ledger.list_contacts(state="dead_lettered")}
    assert dead["cus_00000"] == "no store_id for the in-store offer"
    assert dead["cus_00001"] == "HTTP 404: store 'no%20such%20store%21' not found"
    assert len(world.offers()) == 1


def test_faults_fail_then_send_and_timeouts_retry_safely(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.ledger.record_intents(store_rows(30))
    world.faults(error_rate=0.4, error_status=502, seed=5, rate_limit_per_second=60)
    first = in_store.send_due(world.ledger, world.cfg, now=NOW)
    assert first["failed"] > 0 and first["dead_lettered"] == 0
    assert first["sent"] + first["failed"] == 30
    world.faults(error_rate=0, rate_limit_per_second=0, latency_ms=600)
    monkeypatch.setattr(http, "TIMEOUT", (5.0, 0.2))
    later = NOW + timedelta(minutes=5)
    timed_out = in_store.send_due(world.ledger, world.cfg, now=later)
    # every request timed out: retryable, and after a few the breaker stopped the run (the
    # contacts not tried keep their retry time and use no attempt)
    assert timed_out["sent"] == 0 and 0 < timed_out["failed"] <= first["failed"]
    failed = world.ledger.list_contacts(state=State.FAILED)
    errors = {str(contact.last_error).split(":")[0] for contact in failed}
    assert "ReadTimeout" in errors and errors <= {"ReadTimeout", "HTTP 502", "HTTP 429"}
    time.sleep(1.0)  # the API still applies what it received
    world.clear_faults()
    monkeypatch.setattr(http, "TIMEOUT", (5.0, 30.0))
    final = in_store.send_due(world.ledger, world.cfg, now=later + timedelta(minutes=5))
    assert final["sent"] == first["failed"]
    offers = world.offers()
    assert len(offers) == 30 and {offer["version"] for offer in offers} == {1}
    assert world.ledger.counts(channel=Channel.IN_STORE)["sent"] == 30


def test_masks() -> None:
    assert in_store.mask_email("lucia.martin@example.com") == "l***@example.com"
    assert in_store.mask_email("not an email") is None
    assert in_store.mask_phone("+34 600 123 456") == "*** 456"
    assert in_store.mask_phone("12") is None

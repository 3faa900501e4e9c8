"""Every request a demo-sized dispatch of every shipped campaign makes meets the providers'
contracts, replayed through the very validator the sandbox SendGrid uses.

``CUSTOMERS`` customers (names with accents, apostrophes and markup) are handed off to every
active campaign of ``campaigns/`` on each of its channels, with the trigger data each trigger
type carries (carts, orders with matching products, milestones, first orders with
recommendations, inactivity) and products priced as the warehouse says: about as many emails
as ``make demo`` sends (328 requests there). One dispatch run sends everything to the strict
sandbox services. Then every request body the sandbox SendGrid received is validated again
with :func:`orchestration.sandbox.services.sendgrid.validate` (the account's unsubscribe
groups, the time it arrived): none may fail, and none was answered 400. The loyalty and store
APIs answered no 4xx: their contracts held too. The sender built the categories of
``post_purchase_follow_up`` (campaign id == trigger type) once each.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
import requests
from dispatch_world import Sandbox, sandbox_home

from orchestration.campaigns import Campaign, load_all
from orchestration.campaigns.handoff import write_handoff
from orchestration.campaigns.templating import example_context
from orchestration.dispatch import Ledger, State
from orchestration.dispatch.run import dispatch
from orchestration.sandbox.services.sendgrid import validate
from orchestration.settings import REPO_ROOT, Settings

CUSTOMERS = 90
NAMES = ("Lucía", "José María", "D'Angelo", "Zoë <b>", "Ñandú", "Ana & Luis", "Øyvind", "Léa")
PRODUCTS = {  # product_id: (sku, title, price on the web and in store)
    501 + n: (f"SKU-{501 + n}", f"Producto «{n}» talla M", round(19.95 + 7.5 * n, 2))
    for n in range(8)
}
STORES = {"S1": ("Omni Sol", "Madrid"), "S2": ("Omni Gràcia", "Barcelona")}


def build_warehouse(path: Path) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("create schema marts")
        con.execute(
            "create table marts.dim_customers (customer_id varchar, first_name varchar, "
            "last_name varchar, email varchar, city varchar, nearest_store_id varchar, "
            "nearest_store_distance_km double)"
        )
        con.executemany(
            "insert into marts.dim_customers values (?, ?, 'Pérez', ?, 'Madrid', ?, 2.5)",
            [(f"cus_{n:05d}", NAMES[n % len(NAMES)], email(n), store(n)) for n in range(CUSTOMERS)],
        )
        con.execute(
            "create table marts.dim_stores (store_id varchar, store_name varchar, city varchar, "
            "postal_code varchar, opens_local varchar, closes_local varchar)"
        )
        con.executemany(
            "insert into marts.dim_stores values (?, ?, ?, '28001', '10:00', '21:00')",
            [(key, name, city) for key, (name, city) in STORES.items()],
        )
        con.execute(
            "create table marts.dim_products (product_id varchar, sku varchar, title varchar, "
            "category varchar, web_price double, store_price double)"
        )
        con.executemany(
            "insert into marts.dim_products values (?, ?, ?, 'ropa', ?, ?)",
            [(str(pid), sku, title, price, price) for pid, (sku, title, price) in PRODUCTS.items()],
        )


def email(n: int) -> str:
    return f"cliente.{n}@example.com"


def store(n: int) -> str:
    return "S1" if n % 2 else "S2"


def product(n: int, shift: int = 0) -> dict[str, Any]:
    pid = 501 + (n + shift) % len(PRODUCTS)
    sku, title, price = PRODUCTS[pid]
    return {"product_id": pid, "sku": sku, "title": title, "price": price}


def trigger_payload(trigger_type: str, n: int) -> dict[str, Any]:
    """The trigger data of customer ``n``: the shape ``example_context`` documents, varied."""
    _, extra = example_context(trigger_type)
    extra.pop("store", None)
    item = {**product(n), "quantity": 1 + n % 2, "unit_price": product(n)["price"]}
    if "cart_items" in extra:
        subtotal = round(item["unit_price"] * item["quantity"], 2)
        extra["cart"] = {"checkout_id": 7000 + n, "subtotal": subtotal, "total": subtotal + 4.95}
        extra["cart_items"] = [item]
    if "order_items" in extra:
        extra["order"] = {"order_id": str(3000 + n), "order_number": 3000 + n, "total": 59.9}
        extra["order_items"] = [item]
        extra["matching_products"] = [product(n, 1), product(n, 2)]
    if "recommended_products" in extra:
        extra["recommended_products"] = [product(n, 3)]
    if "days_inactive" in extra:
        extra["days_inactive"] = 60 + n
    return extra


def handoff_rows(campaign: Campaign, due: datetime) -> list[dict[str, Any]]:
    offer = campaign.offer
    trigger_type = campaign.trigger.type
    channels = [
        name
        for name in ("email", "loyalty_cashback", "in_store")
        if getattr(campaign.channels, name) is not None
    ]
    rows = []
    for n in range(CUSTOMERS):
        payload = trigger_payload(trigger_type, n)
        value = getattr(offer, "value", None)
        cost = value if offer.kind == "cashback_amount" else None
        if offer.kind == "cashback_percent":
            cost = round(min(payload["cart"]["subtotal"] * (value or 0) / 100, 15.0), 2)
        for channel in channels:
            rows.append(
                {
                    "campaign_id": campaign.id,
                    "customer_id": f"cus_{n:05d}",
                    "trigger_key": f"{trigger_type}:{n}",
                    "trigger_type": trigger_type,
                    "channel": channel,
                    "email": email(n) if channel == "email" else None,
                    "first_name": NAMES[n % len(NAMES)],
                    "store_id": store(n),
                    "distance_km": 2.5,
                    "loyalty_account_id": f"LA{20_000_000 + n}",
                    "offer_id": offer.id,
                    "offer_kind": offer.kind,
                    "offer_value": value,
                    "offer_code": getattr(offer, "code", None),
                    "offer_valid_in": offer.valid_in,
                    "cashback_max_reward_eur": getattr(offer, "max_reward_eur", None),
                    "offer_valid_until": (
                        due.date() + timedelta(days=offer.validity_days)
                    ).isoformat(),
                    "estimated_cost_eur": cost,
                    "scheduled_send_at": due,
                    "timezone": "Europe/Madrid",
                    "is_holdout": False,
                    "is_transactional": False,
                    "cart_items_json": json.dumps(payload.get("cart_items", []))
                    if channel == "in_store"
                    else None,
                    "payload_json": json.dumps(payload),
                }
            )
    return rows


def status_counts(sandbox: Sandbox, service: str) -> dict[str, int]:
    answer = requests.get(f"{sandbox.urls[service]}/_sandbox/stats", timeout=10)
    return {key: int(value) for key, value in answer.json()["by_status"].items()}


@pytest.mark.slow
def test_every_request_of_a_demo_sized_dispatch_meets_the_provider_contracts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sandbox_home(tmp_path / "home", monkeypatch, 1) as (sandbox, cfg):
        cfg.warehouse_path.unlink()  # this test's own customers, stores and products
        build_warehouse(cfg.warehouse_path)
        campaigns, errors = load_all(REPO_ROOT / "campaigns")
        assert not errors and campaigns
        active = [campaign for campaign in campaigns if campaign.status == "active"]
        due = datetime.now(UTC) - timedelta(hours=1)
        for campaign in active:
            write_handoff(cfg, campaign.id, "run_1", pd.DataFrame(handoff_rows(campaign, due)))
        dispatch(cfg)
        check_everything_sent(cfg, len(active))
        received = requests.get(f"{sandbox.urls['sendgrid']}/_sandbox/requests", timeout=60)
        bodies = received.json()["requests"]
        groups = {cfg.sendgrid_asm_group_id}
        invalid = [
            (item["body"], errors)
            for item in bodies
            if (errors := validate(item["body"], item["received_at"], groups))
        ]
        assert not invalid, invalid[:3]
        assert {item["status"] for item in bodies} == {202}
        emails = sum(len(item["body"]["personalizations"]) for item in bodies)
        assert emails == CUSTOMERS * len(active)  # every email once, in some request
        assert len(bodies) >= 300  # demo-sized: the demo made 328 mail-send requests
        categories = {
            tuple(item["body"]["categories"])
            for item in bodies
            if item["body"]["personalizations"][0]["custom_args"]["campaign_id"]
            == "post_purchase_follow_up"
        }
        assert categories == {("omni", "post_purchase_follow_up")}
        for service in ("loyalty", "store"):
            answered = status_counts(sandbox, service)
            assert answered and all(status.startswith("2") for status in answered), answered
        print(
            f"{len(bodies)} mail-send requests ({emails} emails), all valid; loyalty "
            f"{status_counts(sandbox, 'loyalty')}, store {status_counts(sandbox, 'store')}"
        )


def check_everything_sent(cfg: Settings, campaigns: int) -> None:
    with Ledger.from_settings(cfg) as ledger:
        rows = ledger.list_contacts()
    problems = [
        (row.campaign_id, row.channel, row.last_error)
        for row in rows
        if row.state is not State.SENT
    ]
    assert not problems, problems[:5]
    assert len({row.campaign_id for row in rows}) == campaigns

"""A small dispatch world for the dispatch run, fault and crash tests.

A hand-made warehouse (``marts.dim_customers``, ``dim_stores``, ``dim_products``: what email
rendering and the offer check read), hand-off rows shaped like the ``sync_*`` audiences of the
shipped campaign ``abandoned_cart_nearby_store`` (one email, one cashback credit and one
in-store offer per customer, the same offer on all three), and the sandbox SendGrid, loyalty
and store services on free ports. Every ``MISMATCH_EVERY``-th customer's cart holds a product
whose store price differs from its web price: the offer check must block that customer on every
channel.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
import requests

from orchestration import settings
from orchestration.campaigns.handoff import write_handoff
from orchestration.dispatch import Ledger, State, contact_id_for
from orchestration.sandbox import services
from orchestration.settings import SANDBOX_TOKENS

CAMPAIGN = "abandoned_cart_nearby_store"
OFFER = {
    "offer_id": "cesta_tienda_cashback_10",
    "offer_kind": "cashback_percent",
    "offer_value": 10.0,
    "offer_code": None,
    "offer_valid_in": "store_only",
}
MAX_REWARD = 15.0
CHANNELS = ("email", "loyalty_cashback", "in_store")
SERVICES = ("sendgrid", "loyalty", "store")
MISMATCH_EVERY = 25  # every 25th customer has an item priced differently in store
# product_id -> (sku, title, web price, store price)
PRODUCTS: dict[str, tuple[str, str, float, float]] = {
    "101": ("CAM-0101", "Camiseta de lino", 39.95, 39.95),
    "102": ("PAN-0102", "Pantalón chino", 59.90, 59.90),
    "103": ("ZAP-0103", "Zapatillas de lona", 49.95, 49.95),
    "104": ("BOL-0104", "Bolso de piel", 89.00, 89.00),
    "105": ("GOR-0105", "Gorra de algodón", 19.95, 17.95),  # cheaper in store
}
STORES = {"S1": ("Omni Sol", "Madrid"), "S2": ("Omni Gràcia", "Barcelona")}


def build_warehouse(path: Path, customers: int) -> None:
    """The marts dispatch reads, for ``customers`` customers (ids ``cus_00000``...)."""
    con = duckdb.connect(str(path))
    try:
        con.execute("create schema marts")
        con.execute(
            "create table marts.dim_customers (customer_id varchar, first_name varchar, "
            "last_name varchar, email varchar, city varchar, nearest_store_id varchar, "
            "nearest_store_distance_km double)"
        )
        con.executemany(
            "insert into marts.dim_customers values (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    customer_id(n),
                    f"Nombre{n}",
                    "García",
                    email(n),
                    "Madrid",
                    store_of(n),
                    1.5 + n % 7,
                )
                for n in range(customers)
            ],
        )
        con.execute(
            "create table marts.dim_stores (store_id varchar, store_name varchar, city varchar, "
            "postal_code varchar, opens_local varchar, closes_local varchar)"
        )
        con.executemany(
            "insert into marts.dim_stores values (?, ?, ?, '28001', '10:00', '21:00')",
            [(store, name, city) for store, (name, city) in STORES.items()],
        )
        con.execute(
            "create table marts.dim_products (product_id varchar, sku varchar, title varchar, "
            "category varchar, web_price double, store_price double)"
        )
        con.executemany(
            "insert into marts.dim_products values (?, ?, ?, 'ropa', ?, ?)",
            [(pid, sku, title, web, store) for pid, (sku, title, web, store) in PRODUCTS.items()],
        )
    finally:
        con.close()


def customer_id(n: int) -> str:
    return f"cus_{n:05d}"


def email(n: int) -> str:
    return f"cliente{n}@example.com"


def store_of(n: int) -> str:
    return "S1" if n % 2 == 0 else "S2"


def is_mismatch(n: int) -> bool:
    return n % MISMATCH_EVERY == MISMATCH_EVERY - 1


def cart_items(n: int) -> list[dict[str, Any]]:
    """One or two cart items at their web price (the checkout's price)."""
    picks = ["101", "102", "103", "104"]
    chosen = [picks[n % 4]] + ([picks[(n + 1) % 4]] if n % 3 == 0 else [])
    if is_mismatch(n):
        chosen.append("105")
    return [
        {
            "product_id": pid,
            "sku": PRODUCTS[pid][0],
            "title": PRODUCTS[pid][1],
            "category": "ropa",
            "quantity": 1,
            "unit_price": PRODUCTS[pid][2],
        }
        for pid in chosen
    ]


def handoff_rows(customers: int, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Hand-off rows (all three channels per customer), due an hour before ``now``."""
    stamp = (now or datetime.now(UTC)) - timedelta(hours=1)
    valid_until = (stamp.date() + timedelta(days=7)).isoformat()
    rows = []
    for n in range(customers):
        items = cart_items(n)
        subtotal = round(sum(item["unit_price"] for item in items), 2)
        trigger = {
            "cart": {
                "checkout_id": 5000 + n,
                "total": subtotal + 4.95,
                "subtotal": subtotal,
                "shipping_cost": 4.95,
            },
            "cart_items": items,
        }
        cost = round(min(subtotal * 0.10, MAX_REWARD), 2)
        for channel in CHANNELS:
            rows.append(
                {
                    "campaign_id": CAMPAIGN,
                    "customer_id": customer_id(n),
                    "trigger_key": f"trg_{n:05d}",
                    "trigger_type": "abandoned_cart_nearby_stock",
                    "channel": channel,
                    "email": email(n) if channel == "email" else None,
                    "first_name": f"Nombre{n}",
                    "store_id": store_of(n),
                    "distance_km": 1.5 + n % 7,
                    "loyalty_account_id": f"LA{10_000_000 + n}",
                    **OFFER,
                    "cashback_max_reward_eur": MAX_REWARD,
                    "offer_valid_until": valid_until,
                    "estimated_cost_eur": cost,
                    "scheduled_send_at": stamp,
                    "timezone": "Europe/Madrid",
                    "is_holdout": False,
                    "is_transactional": False,
                    "priority": 80,
                    "cart_items_json": json.dumps(items) if channel == "in_store" else None,
                    "payload_json": json.dumps(trigger),
                }
            )
    return rows


def contact_ids(customers: int) -> dict[str, tuple[int, str]]:
    """Every intended contact id -> (customer number, channel)."""
    return {
        contact_id_for(CAMPAIGN, customer_id(n), f"trg_{n:05d}", channel): (n, channel)
        for n in range(customers)
        for channel in CHANNELS
    }


def hand_off(cfg: settings.Settings, customers: int, run_id: str = "run_1") -> Path:
    return write_handoff(cfg, CAMPAIGN, run_id, pd.DataFrame(handoff_rows(customers)))


@dataclass
class Sandbox:
    """The three write services, with their ground truth."""

    urls: dict[str, str]

    def faults(self, service: str, **values: Any) -> None:
        answer = requests.post(f"{self.urls[service]}/_sandbox/faults", json=values, timeout=10)
        answer.raise_for_status()

    def clear_faults(self) -> None:
        for service in SERVICES:
            requests.delete(f"{self.urls[service]}/_sandbox/faults", timeout=10).raise_for_status()

    def messages(self) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.urls['sendgrid']}/_sandbox/messages", timeout=30)
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()["messages"]
        return found

    def deliveries_by_dispatch_id(self) -> Counter[str]:
        """How many accepted messages carry each dispatch_id (one per recipient)."""
        counts: Counter[str] = Counter()
        for message in self.messages():
            for recipient in message["recipients"]:
                dispatch_id = recipient["custom_args"].get("dispatch_id")
                if dispatch_id:
                    counts[dispatch_id] += 1
        return counts

    def credits(self) -> list[dict[str, Any]]:
        answer = requests.get(
            f"{self.urls['loyalty']}/v1/credits",
            params={"limit": 10_000},
            headers={"Authorization": f"Bearer {SANDBOX_TOKENS['loyalty']}"},
            timeout=30,
        )
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()["credits"]
        return found

    def offers(self) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.urls['store']}/_sandbox/offers", timeout=30)
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()["offers"]
        return found


@contextmanager
def sandbox_home(
    home: Path, monkeypatch: pytest.MonkeyPatch, customers: int
) -> Iterator[tuple[Sandbox, settings.Settings]]:
    """``home`` as OMNI_HOME with a warehouse of ``customers``, the three services running
    on free ports (URL env vars set) and the repo's campaigns."""
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("OMNI_HOME", str(home))
    monkeypatch.delenv("OMNI_LEDGER_URL", raising=False)
    monkeypatch.delenv("OMNI_CAMPAIGNS_DIR", raising=False)
    build_warehouse(home / "warehouse.duckdb", customers)
    with services.running(home / "no-world", names=SERVICES) as urls:
        for name, url in urls.items():
            monkeypatch.setenv(f"OMNI_{name.upper()}_URL", url)
        yield Sandbox(urls), settings.load()


def today() -> date:
    return datetime.now(UTC).date()


def check_every_contact_delivered_once(
    sandbox: Sandbox, ledger: Ledger, cfg: settings.Settings, customers: int
) -> Counter[str]:
    """What the providers hold, checked against every intended contact of ``customers``: each
    email accepted once by SendGrid, each credit once at the loyalty API (one per member),
    each offer once at the store API (version 1), none missing and none unintended; the ledger
    ``sent`` for each, ``suppressed`` for the customers the offer check blocks; every offer
    once on its store's staff sheet. Returns the ledger's states."""
    sandbox.clear_faults()
    intended = contact_ids(customers)
    rows = {row.contact_id: row for row in ledger.list_contacts(campaign_id=CAMPAIGN)}
    assert set(rows) == set(intended)  # every intent recorded, none invented
    expected: dict[str, set[str]] = {"email": set(), "loyalty_cashback": set(), "in_store": set()}
    for contact_id, (number, channel) in intended.items():
        row = rows[contact_id]
        if is_mismatch(number):
            assert row.state is State.SUPPRESSED, (contact_id, row.state)
            assert row.last_error and row.last_error.split(":")[0] in {
                "price_mismatch",
                "offer_mismatch",
            }
        else:
            assert row.state is State.SENT, (contact_id, channel, row.state, row.last_error)
            expected[channel].add(contact_id)

    deliveries = sandbox.deliveries_by_dispatch_id()
    assert set(deliveries) == expected["email"]  # none missing, none unintended
    assert set(deliveries.values()) == {1}  # none twice

    credits = sandbox.credits()
    keys = Counter(credit["idempotency_key"] for credit in credits)
    assert set(keys) == expected["loyalty_cashback"] and set(keys.values()) == {1}
    assert max(Counter(credit["member_id"] for credit in credits).values()) == 1

    offers = sandbox.offers()
    offer_keys = Counter(offer["offer_key"] for offer in offers)
    assert set(offer_keys) == expected["in_store"] and set(offer_keys.values()) == {1}
    assert {offer["version"] for offer in offers} == {1}  # re-sent bodies changed nothing
    assert {offer["status"] for offer in offers} == {"active"}

    pages = [
        path.read_text(encoding="utf-8")
        for path in (cfg.omni_home / "staff_sheets").glob("*/*.html")
        if path.name != "index.html"
    ]
    for contact_id in expected["in_store"]:
        number, _ = intended[contact_id]
        card = f"<strong>LA{10_000_000 + number}</strong>"  # how staff recognise the customer
        assert sum(page.count(card) for page in pages) == 1, customer_id(number)
    assert sum(page.count('<section class="customer">') for page in pages) == len(
        expected["in_store"]
    )
    return Counter(row.state.value for row in rows.values())

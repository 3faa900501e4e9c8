"""Benchmark of dispatch under a provider's rate limit: how many requests does it waste?

For each channel (email, loyalty cashback, in-store offers) a temporary OMNI_HOME gets a small
warehouse (what email rendering reads) and ``CONTACTS`` due contacts of the shipped campaign
``abandoned_cart_nearby_store``; the channel's sandbox service limits requests to ``RATE`` per
second (no burst: 429 with ``Retry-After``), and one dispatch of that channel runs until every
contact is sent. Printed per channel: contacts sent, requests answered 429, seconds, and the
rejected requests per second of sending. Run it with ``python -m orchestration.bench.dispatch``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import requests

from orchestration import settings

CAMPAIGN = "abandoned_cart_nearby_store"
SERVICE = {"email": "sendgrid", "loyalty_cashback": "loyalty", "in_store": "store"}
OFFER = {
    "offer_id": "cesta_tienda_cashback_10",
    "offer_kind": "cashback_percent",
    "offer_value": 10.0,
    "offer_valid_in": "store_only",
    "cashback_max_reward_eur": 15.0,
}
ITEM = {"product_id": "101", "sku": "CAM-0101", "title": "Camiseta", "quantity": 1}


def _warehouse(path: Path, customers: int) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("create schema marts")
        con.execute(
            "create table marts.dim_customers as select 'cus_' || lpad(i::varchar, 5, '0') "
            "as customer_id, 'Nombre' || i as first_name, 'García' as last_name, "
            "'cliente' || i || '@example.com' as email, 'Madrid' as city, 'S1' as "
            "nearest_store_id, 2.5 as nearest_store_distance_km from range(?) t(i)",
            [customers],
        )
        con.execute(
            "create table marts.dim_stores as select 'S1' as store_id, 'Omni Sol' as "
            "store_name, 'Madrid' as city, '28001' as postal_code, '10:00' as opens_local, "
            "'21:00' as closes_local"
        )


def _rows(channel: str, customers: int) -> list[dict[str, Any]]:
    stamp = datetime.now(UTC) - timedelta(hours=1)
    cart = {"cart": {"subtotal": 39.95, "total": 44.90, "shipping_cost": 4.95}}
    return [
        {
            "campaign_id": CAMPAIGN,
            "customer_id": f"cus_{n:05d}",
            "trigger_key": f"trg_{n:05d}",
            "trigger_type": "abandoned_cart_nearby_stock",
            "channel": channel,
            "email": f"cliente{n}@example.com",
            "first_name": f"Nombre{n}",
            "store_id": "S1",
            "distance_km": 2.5,
            "loyalty_account_id": f"LA{10_000_000 + n}",
            **OFFER,
            "offer_valid_until": (stamp.date() + timedelta(days=7)).isoformat(),
            "estimated_cost_eur": 4.0,
            "scheduled_send_at": stamp,
            "timezone": "Europe/Madrid",
            "cart_items_json": json.dumps([{**ITEM, "unit_price": 39.95}]),
            "payload_json": json.dumps({**cart, "cart_items": [{**ITEM, "unit_price": 39.95}]}),
        }
        for n in range(customers)
    ]


@contextmanager
def _home(channel: str, customers: int) -> Iterator[str]:
    """A temporary OMNI_HOME with the warehouse, the channel's service and its contacts;
    yields the service's base URL."""
    from orchestration.dispatch import Ledger
    from orchestration.sandbox import services

    saved = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="omni-bench-dispatch-") as folder:
        home = Path(folder)
        os.environ["OMNI_HOME"] = str(home)
        os.environ.pop("OMNI_LEDGER_URL", None)
        os.environ.pop("OMNI_CAMPAIGNS_DIR", None)
        _warehouse(home / "warehouse.duckdb", customers)
        try:
            with services.running(home / "no-world", names=(SERVICE[channel],)) as urls:
                url = urls[SERVICE[channel]]
                os.environ[f"OMNI_{SERVICE[channel].upper()}_URL"] = url
                with Ledger.from_settings(settings.load()) as ledger:
                    ledger.record_intents(_rows(channel, customers))
                yield url
        finally:
            os.environ.clear()
            os.environ.update(saved)


def measure(channel: str, customers: int, rate: float) -> dict[str, Any]:
    """One channel's dispatch under ``rate`` requests per second (see the module)."""
    from orchestration.dispatch import Ledger
    from orchestration.dispatch.run import dispatch

    with _home(channel, customers) as url:
        faults = {"rate_limit_per_second": rate}
        requests.post(f"{url}/_sandbox/faults", json=faults, timeout=10).raise_for_status()
        started = time.monotonic()
        runs = 0
        while True:
            runs += 1
            dispatch(settings.load(), channels=[channel])
            with Ledger.from_settings(settings.load()) as ledger:
                counts = ledger.counts(channel=channel)
            if counts["pending"] + counts["failed"] + counts["sending"] == 0 or runs >= 20:
                break
        seconds = time.monotonic() - started
        stats = requests.get(f"{url}/_sandbox/stats", timeout=10).json()["by_status"]
    rejected = int(stats.get("429", 0))
    result = {
        "channel": channel,
        "rate_limit_per_second": rate,
        "contacts": customers,
        "sent": counts["sent"],
        "dead_lettered": counts["dead_lettered"],
        "runs": runs,
        "requests": sum(int(number) for number in stats.values()),
        "rejected_429": rejected,
        "seconds": round(seconds, 1),
        "rejected_per_second": round(rejected / seconds, 2) if seconds else None,
    }
    print(json.dumps(result), flush=True)
    return result


def run(customers: int = 200, rate: float = 20.0) -> list[dict[str, Any]]:
    return [measure(channel, customers, rate) for channel in SERVICE]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m orchestration.bench.dispatch")
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--channel", choices=sorted(SERVICE), action="append")
    args = parser.parse_args()
    for channel in args.channel or list(SERVICE):
        measure(channel, args.customers, args.rate)


if __name__ == "__main__":
    main()

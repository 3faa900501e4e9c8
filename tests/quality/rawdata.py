"""Small raw tables for the gate's tests, loaded by dlt itself (so they have dlt's real shape:
``_dlt_id``, ``_dlt_load_id``, child tables, variant columns for values that do not coerce)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

Record = dict[str, Any]


def load(omni_home: Path, source: str, tables: dict[str, list[Record]]) -> str:
    """Load ``tables`` (resource name -> records) into ``raw_<source>`` as one dlt load."""
    import dlt

    pipeline = dlt.pipeline(
        pipeline_name=f"test_{source}",
        destination=dlt.destinations.duckdb(str(omni_home / "warehouse.duckdb")),
        dataset_name=f"raw_{source}",
        pipelines_dir=str(omni_home / "dlt"),
    )
    resources = [
        dlt.resource(copy.deepcopy(records), name=name, write_disposition="append")
        for name, records in tables.items()
    ]
    info = pipeline.run(resources)
    return str(info.loads_ids[-1])


def shop_customer(customer_id: int | None, **changes: Any) -> Record:
    record: Record = {
        "id": customer_id,
        "email": f"c{customer_id}@example.com",
        "email_marketing_consent": {"state": "subscribed"},
        "default_address": {"city": "Madrid", "latitude": 40.4168, "longitude": -3.7038},
        "created_at": "2026-10-01T09:00:00+00:00",
        "updated_at": "2026-10-02T09:00:00+00:00",
    }
    record.update(changes)
    return record


def shop_order(order_id: int | None, **changes: Any) -> Record:
    record: Record = {
        "id": order_id,
        "order_number": 1000 + (order_id or 0),
        "customer": {"id": 1},
        "created_at": "2026-10-03T10:00:00+00:00",
        "updated_at": "2026-10-03T10:00:00+00:00",
        "subtotal_price": "20.00",
        "total_price": "24.95",
        "total_shipping_price": "4.95",
        "financial_status": "paid",
        "line_items": [
            {"id": (order_id or 0) * 10 + 1, "product_id": 7, "quantity": 2, "price": "10.00"},
        ],
    }
    record.update(changes)
    return record


def shop_product(product_id: int) -> Record:
    return {
        "id": product_id,
        "title": "Mug",
        "created_at": "2026-09-01T00:00:00+00:00",
        "updated_at": "2026-09-01T00:00:00+00:00",
        "variants": [{"id": product_id * 100, "sku": f"SKU{product_id}", "price": "10.00"}],
    }


def good_shop(customers: int = 20, orders: int = 20) -> dict[str, list[Record]]:
    return {
        "customers": [shop_customer(i) for i in range(1, customers + 1)],
        "orders": [shop_order(i) for i in range(1, orders + 1)],
        "products": [shop_product(7)],
    }

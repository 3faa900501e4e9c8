"""Small raw tables for the gate's tests, loaded by dlt itself.

Loading through dlt gives the real raw shape (``_dlt_id``, ``_dlt_load_id``, child tables
joined by ``_dlt_parent_id``, ``_dlt_loads``). Like the connectors, timestamps stay text
unless ``detect_timestamps`` is set (then dlt types them and puts values it cannot parse in
a ``__v_text`` variant column, the other shape the gate must handle).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

Record = dict[str, Any]
Tables = dict[str, list[Record]]
GOOD_TIME = "2026-10-03T10:00:00+00:00"
GRAPH_TIME = "2026-10-03T10:00:00+0000"
BAD_TIME = "31/02/2026 25:00"


def load(omni_home: Path, source: str, tables: Tables, detect_timestamps: bool = False) -> str:
    """Load ``tables`` (resource -> records) into ``raw_<source>`` as one dlt load; its id."""
    import dlt

    pipeline = dlt.pipeline(
        pipeline_name=f"test_{source}",
        destination=dlt.destinations.duckdb(str(omni_home / "warehouse.duckdb")),
        dataset_name=f"raw_{source}",
        pipelines_dir=str(omni_home / "dlt"),
    )
    schema = dlt.Schema(source)
    if not detect_timestamps:
        schema.remove_type_detection("iso_timestamp")
    resources = [
        dlt.resource(copy.deepcopy(records), name=name, write_disposition="append")
        for name, records in tables.items()
    ]
    info = pipeline.run(resources, schema=schema)
    return str(info.loads_ids[-1])


def _with(record: Record, changes: dict[str, Any]) -> Record:
    record.update(changes)
    return record


def shop_customer(customer_id: int | None, **changes: Any) -> Record:
    return _with(
        {
            "id": customer_id,
            "email": f"c{customer_id}@example.com",
            "email_marketing_consent": {"state": "subscribed"},
            "default_address": {"city": "Madrid", "latitude": 40.4168, "longitude": -3.7038},
            "created_at": "2026-10-01T09:00:00+00:00",
            "updated_at": GOOD_TIME,
        },
        changes,
    )


def shop_order(order_id: int | None, quantity: Any = 2, **changes: Any) -> Record:
    line_id = (order_id or 0) * 10 + 1
    return _with(
        {
            "id": order_id,
            "order_number": 1000 + (order_id or 0),
            "customer": {"id": 1},
            "created_at": GOOD_TIME,
            "updated_at": GOOD_TIME,
            "subtotal_price": "20.00",
            "total_price": "24.95",
            "total_shipping_price": "4.95",
            "financial_status": "paid",
            "line_items": [
                {"id": line_id, "product_id": 7, "quantity": quantity, "price": "10.00"}
            ],
        },
        changes,
    )


def shop_product(product_id: int) -> Record:
    return {
        "id": product_id,
        "title": "Mug",
        "created_at": "2026-09-01T00:00:00+00:00",
        "updated_at": "2026-09-01T00:00:00+00:00",
        "variants": [{"id": product_id * 100, "sku": f"SKU{product_id}", "price": "10.00"}],
    }


def good_shop(customers: int = 20, orders: int = 20) -> Tables:
    return {
        "customers": [shop_customer(i) for i in range(1, customers + 1)],
        "orders": [shop_order(i) for i in range(1, orders + 1)],
        "products": [shop_product(7)],
    }


def pos_location(location_id: str, latitude: float = 40.42, **changes: Any) -> Record:
    return _with(
        {
            "id": location_id,
            "name": f"Store {location_id}",
            "coordinates": {"latitude": latitude, "longitude": -3.70},
            "status": "ACTIVE",
            "created_at": "2026-01-01T00:00:00+00:00",
            "business_hours": {
                "periods": [
                    {
                        "day_of_week": "MON",
                        "start_local_time": "09:00:00",
                        "end_local_time": "21:00",
                    }
                ]
            },
        },
        changes,
    )


def pos_order(order_id: str, quantity: str = "1", **changes: Any) -> Record:
    return _with(
        {
            "id": order_id,
            "location_id": "L0001",
            "customer_id": "C1",
            "state": "COMPLETED",
            "created_at": GOOD_TIME,
            "updated_at": GOOD_TIME,
            "total_money": {"amount": 1230, "currency": "EUR"},
            "line_items": [
                {
                    "uid": f"{order_id}-1",
                    "catalog_object_id": "V7",
                    "quantity": quantity,
                    "base_price_money": {"amount": 1230, "currency": "EUR"},
                }
            ],
        },
        changes,
    )


def pos_count(object_id: str | None, location_id: str = "L0001", **changes: Any) -> Record:
    return _with(
        {
            "catalog_object_id": object_id,
            "catalog_object_type": "ITEM_VARIATION",
            "state": "IN_STOCK",
            "location_id": location_id,
            "quantity": "5",
            "calculated_at": GOOD_TIME,
        },
        changes,
    )


def good_pos(orders: int = 20) -> Tables:
    return {
        "locations": [pos_location("L0001"), pos_location("L0002")],
        "catalog_objects": [
            {
                "id": "V7",
                "type": "ITEM_VARIATION",
                "updated_at": GOOD_TIME,
                "item_variation_data": {"sku": "SKU7", "price_money": {"amount": 1000}},
            }
        ],
        "orders": [pos_order(f"P{i}") for i in range(1, orders + 1)],
        "inventory_counts": [pos_count("V7"), pos_count("V7", "L0002")],
        "customers": [
            {"id": f"C{i}", "given_name": "Ana", "created_at": GOOD_TIME, "updated_at": GOOD_TIME}
            for i in range(1, 6)
        ],
    }


def social_comment(comment_id: str | None, **changes: Any) -> Record:
    return _with(
        {
            "id": comment_id,
            "created_time": GRAPH_TIME,
            "updated_time": GRAPH_TIME,
            "from": {"id": "U1", "username": "@ana"},
            "message": "Love it",
            "sentiment": "positive",
            "sentiment_score": 0.8,
        },
        changes,
    )


def good_social(comments: int = 20) -> Tables:
    return {"comments": [social_comment(f"S{i}") for i in range(1, comments + 1)]}

"""The simulated world's orders as the truth knows them: one row per web order or store sale of
a known person (the person is the unified customer the warehouse should find)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from orchestration.sandbox import world


def world_orders(world_dir: Path) -> pd.DataFrame:
    """``customer_id`` (person id), ``order_date``, ``amount``: the latest version of every
    web order and identified store sale."""
    persons = world.latest(world_dir, "persons", "person_id", "created_at").to_pandas()
    web = world.latest(world_dir, "web_orders", "order_id", "updated_at").to_pandas()
    store = world.latest(world_dir, "store_sales", "pos_order_id", "updated_at").to_pandas()
    web = web.merge(persons[["person_id", "shop_customer_id"]].dropna(), on="shop_customer_id")
    store = store.merge(persons[["person_id", "pos_customer_id"]].dropna(), on="pos_customer_id")
    orders = pd.concat(
        [web[["person_id", "created_at", "total"]], store[["person_id", "created_at", "total"]]]
    )
    return pd.DataFrame(
        {
            "customer_id": orders["person_id"].astype(str),
            "order_date": pd.to_datetime(orders["created_at"]).dt.date,
            "amount": orders["total"].astype(float),
        }
    )

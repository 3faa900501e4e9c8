"""The simulator's hidden state: what it needs to simulate one more day.

`Model` holds numeric arrays about stores, products, persons (their purchase rates and
lifecycle dates, which no table shows), the current stock, the id counters and the current
consent. `generate` builds it, every simulated day reads (and for stock and consent updates)
it, and it is saved under ``<world>/_state/`` so `advance` can continue where the last part
ended.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from orchestration.sandbox.world.clock import day_start_us
from orchestration.sandbox.world.messy import digits, join

STATE_DIR = "_state"
# Lifecycle day meaning "never" (the person has not reached this stage in any simulated day).
NEVER = 1e9


@dataclass
class Stores:
    store_id: np.ndarray
    city: np.ndarray  # index into reference.CITIES
    latitude: np.ndarray
    longitude: np.ndarray
    zone: np.ndarray  # clock.ZONES code
    open_us: np.ndarray  # local opening time, microseconds after midnight
    close_us: np.ndarray
    closed_weekday: np.ndarray  # 0=Mon..6=Sun, -1 when open every day
    weight: np.ndarray  # share of the population living around the store


@dataclass
class Products:
    product_id: np.ndarray
    web_price: np.ndarray
    store_price: np.ndarray
    category: np.ndarray  # index into reference.CATEGORIES (products are sorted by it)
    popularity: np.ndarray


@dataclass
class Persons:
    person_id: np.ndarray
    shop_customer_id: np.ndarray  # 0 when the person has no web-shop account
    pos_number: np.ndarray  # 0 when no loyalty card; see `pos_customer_ids`
    social_number: np.ndarray  # 0 when no social profile; see `social_user_ids`
    has_web: np.ndarray
    has_store: np.ndarray
    has_social: np.ndarray
    zone: np.ndarray
    home_store: np.ndarray  # index into Stores
    created_day: np.ndarray  # days after start_date (negative: known before the window)
    first_purchase_day: np.ndarray  # NEVER when the person stays in acquisition
    churn_day: np.ndarray  # from here the purchase frequency decays until the person lapses
    rate_web: np.ndarray  # checkout starts per active day
    rate_store: np.ndarray  # store visits with a purchase per active day
    favourite_category: np.ndarray
    email_state: np.ndarray  # 0 not_subscribed, 1 subscribed, 2 unsubscribed (shop)
    sms_state: np.ndarray
    pos_unsubscribed: np.ndarray


@dataclass
class Inventory:
    store: np.ndarray  # index into Stores
    product: np.ndarray  # index into Products
    quantity: np.ndarray


@dataclass
class Model:
    seed: int
    start_date: date
    stores: Stores
    products: Products
    persons: Persons
    followers: np.ndarray  # social numbers of profiles that are not customers
    inventory: Inventory
    counters: dict[str, int] = field(default_factory=dict)
    # New persons per day once the generated window is over (`advance` keeps acquiring).
    arrivals_per_day: float = 0.0
    # Shop emails as the customers typed them, aligned with persons (null without account).
    shop_email: pa.Array | None = None

    @property
    def start_date_us(self) -> int:
        """Midnight UTC of the first simulated day, microseconds."""
        return day_start_us(self.start_date)

    def next_ids(self, name: str, count: int) -> np.ndarray:
        """`count` fresh consecutive ids for `name` (1, 2, ... over the life of the world)."""
        first = self.counters.get(name, 0) + 1
        self.counters[name] = first + count - 1
        return np.arange(first, first + count, dtype=np.int64)


def pos_customer_ids(numbers: np.ndarray) -> pa.Array:
    """Square-like customer ids from loyalty numbers (a bijection, so ids are unique)."""
    return join("C", digits((numbers.astype(np.int64) * 982_451_653) % 1_000_000_000, 9))


def social_user_ids(numbers: np.ndarray) -> pa.Array:
    """Graph-like numeric user ids as text."""
    return digits(17_841_400_000_000_000 + numbers.astype(np.int64))


T = TypeVar("T")


def _save(obj: Any, path: Path) -> None:
    table = pa.table({f.name: getattr(obj, f.name) for f in fields(obj)})
    pq.write_table(table, path)


def _load(cls: type[T], path: Path) -> T:
    table = pq.read_table(path)
    return cls(**{name: np.array(table[name].to_numpy()) for name in table.column_names})


def save(model: Model, world_dir: Path) -> None:
    state = world_dir / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    _save(model.stores, state / "stores.parquet")
    _save(model.products, state / "products.parquet")
    _save(model.persons, state / "persons.parquet")
    _save(model.inventory, state / "inventory.parquet")
    pq.write_table(pa.table({"social_number": model.followers}), state / "followers.parquet")
    meta = {
        "seed": model.seed,
        "start_date": model.start_date.isoformat(),
        "counters": model.counters,
        "arrivals_per_day": model.arrivals_per_day,
    }
    (state / "state.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load(world_dir: Path) -> Model:
    state = world_dir / STATE_DIR
    meta = json.loads((state / "state.json").read_text())
    followers = np.array(pq.read_table(state / "followers.parquet")["social_number"].to_numpy())
    return Model(
        seed=int(meta["seed"]),
        start_date=date.fromisoformat(meta["start_date"]),
        stores=_load(Stores, state / "stores.parquet"),
        products=_load(Products, state / "products.parquet"),
        persons=_load(Persons, state / "persons.parquet"),
        followers=followers,
        inventory=_load(Inventory, state / "inventory.parquet"),
        counters={str(k): int(v) for k, v in meta["counters"].items()},
        arrivals_per_day=float(meta["arrivals_per_day"]),
    )

"""One simulated day of the business, for all persons at once.

`simulate_day` draws, with a generator seeded from (seed, day index), who starts a web
checkout and who buys in a store today, then derives everything that follows from those
events: abandoned carts and their outcome (recovered online, bought in a store within days,
never), orders and their shipment through delivery or failure, returns, browsing sessions,
anonymous store sales, social comments (more negative after a failed delivery), stock
changes, consent changes and marketplace re-pricing. Follow-ups dated after the part's clock
stay pending (see `sink`), so a world generated in one go and one advanced day by day hold
the same rows.

The purchase draw is `uniform < rate * activity * calendar * uplift`: `uplift` is an optional
per-person multiplier (a campaign effect) applied to both web and store purchases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from orchestration.sandbox.world import reference as ref
from orchestration.sandbox.world.clock import (
    DAY,
    HOUR,
    MINUTE,
    SECOND,
    day_start_us,
    season_factor,
    zone_offsets_us,
)
from orchestration.sandbox.world.messy import digits, join, pick
from orchestration.sandbox.world.model import Model, pos_customer_ids, social_user_ids
from orchestration.sandbox.world.sink import chunk, col

if TYPE_CHECKING:
    from orchestration.sandbox.world.closed_loop import ClosedLoop

WEB_WEEKDAY = np.array([1.15, 1.0, 1.0, 1.0, 0.95, 0.9, 1.1])  # Mon..Sun
STORE_WEEKDAY = np.array([0.8, 0.85, 0.9, 0.95, 1.2, 1.6, 0.7])
WEB_HOURS = np.array(
    [2, 1, 0.5, 0.3, 0.3, 0.5, 1, 2, 3, 4, 5, 5, 5, 5, 5, 4, 4, 5, 6, 7, 9, 10, 8, 4], dtype=float
)
DECAY_DAYS = 14.0  # after `churn_day` the purchase frequency halves about every 10 days
SHIPPING_TARIFFS = np.array([3.95, 4.95, 5.95, 6.95])
FREE_SHIPPING_FROM = 50.0
CANARY_SHIPPING = 6.95
OUTCOMES = ("completed", "abandoned_bought_online", "abandoned_bought_in_store", "abandoned_never")
PAGE_ID = "104857600000001"
DEVICES = ("mobile", "desktop", "tablet")


def abandonment_probability(shipping_cost: np.ndarray) -> np.ndarray:
    """Chance that a started checkout is abandoned: rises with the shipping cost."""
    return 0.18 + 0.055 * shipping_cost


def activity_level(model: Model, day: int) -> np.ndarray:
    """Per person: 0 before the first purchase, 1 while loyal, then decaying towards lapse."""
    persons = model.persons
    decay = np.exp(-np.maximum(day - persons.churn_day, 0.0) / DECAY_DAYS)
    return np.where(day < np.floor(persons.first_purchase_day), 0.0, decay)


@dataclass
class Bases:
    """Latest rows of the tables whose versions change by day (consent, listing prices)."""

    shop_customers: pa.Table
    pos_customers: pa.Table
    marketplace_listings: pa.Table

    def __post_init__(self) -> None:
        self.shop_customers = self.shop_customers.sort_by("person_id")
        self.pos_customers = self.pos_customers.sort_by("person_id")

    def append(self, table: str, rows: pa.Table) -> None:
        """Add rows of persons who just arrived (their ids are above every earlier one)."""
        current = getattr(self, table)
        setattr(self, table, pa.concat_tables([current, rows.sort_by("person_id")]))


@dataclass
class Day:
    """Everything one day produced: chunks per table, in the order they must be written."""

    chunks: list[tuple[str, pa.Table]] = field(default_factory=list)

    def add(self, table: str, rows: pa.Table) -> None:
        if rows.num_rows:
            self.chunks.append((table, rows))


def _uniform(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
    """Durations in whole seconds, microseconds, uniform in [low, high)."""
    return (rng.uniform(low, high, n) // SECOND * SECOND).astype(np.int64)


def _web_local_us(rng: np.random.Generator, n: int) -> np.ndarray:
    hour = rng.choice(24, size=n, p=WEB_HOURS / WEB_HOURS.sum())
    return hour * HOUR + _uniform(rng, 0, HOUR, n) // SECOND * SECOND


def _sample_products(
    rng: np.random.Generator, model: Model, favourite: np.ndarray | None, n: int
) -> np.ndarray:
    """Product indices by popularity; half from the buyer's favourite category if given."""
    products = model.products
    mass = np.cumsum(products.popularity)
    total = mass[-1]
    u = rng.random(n) * total
    if favourite is not None:
        categories = products.category
        lo = np.searchsorted(categories, favourite, side="left")
        hi = np.searchsorted(categories, favourite, side="right")
        lo_mass = np.where(lo > 0, mass[np.maximum(lo - 1, 0)], 0.0)
        hi_mass = mass[hi - 1]
        in_favourite = rng.random(n) < 0.5
        u = np.where(in_favourite, lo_mass + rng.random(n) * (hi_mass - lo_mass), u)
    return np.minimum(np.searchsorted(mass, u, side="right"), len(mass) - 1)


def _basket(
    rng: np.random.Generator, model: Model, n: int, mean_extra: float, favourite: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items of `n` baskets: owner basket index, product index, quantity."""
    count = 1 + np.minimum(rng.poisson(mean_extra, n), 6)
    owner = np.repeat(np.arange(n), count)
    fav = None if favourite is None else favourite[owner]
    product = _sample_products(rng, model, fav, len(owner))
    # One line per product in a basket (a second draw of the same product is dropped).
    order = np.lexsort((product, owner))
    owner, product = owner[order], product[order]
    distinct = np.r_[True, (owner[1:] != owner[:-1]) | (product[1:] != product[:-1])][: len(owner)]
    owner, product = owner[distinct], product[distinct]
    quantity = rng.choice([1, 2, 3], size=len(owner), p=(0.85, 0.12, 0.03)).astype(np.int32)
    return owner, product, quantity


def _position_in_group(owner: np.ndarray) -> np.ndarray:
    """0, 1, 2... within each run of equal, sorted `owner` values."""
    if len(owner) == 0:
        return owner
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    run = np.repeat(starts, np.diff(np.r_[starts, len(owner)]))
    return np.arange(len(owner)) - run


def _inverse(subset: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """For each `owner` (a basket index), its position in `subset`, or -1 when not in it."""
    size = int(max(owner.max(initial=-1), subset.max(initial=-1))) + 1
    position = np.full(size, -1, dtype=np.int64)
    position[subset] = np.arange(len(subset))
    return position[owner]


def _hex_tokens(rng: np.random.Generator, ids: np.ndarray) -> pa.Array:
    random = rng.integers(0, 2**62, len(ids), dtype=np.int64)
    hexes = np.char.mod("%016x", random) if len(ids) else np.array([], dtype=str)
    return join(pa.array(hexes, type=pa.string()), digits(ids, 8))


class DaySimulator:
    """Simulates day `day` (index from start_date) into a `Day` of chunks."""

    def __init__(
        self,
        model: Model,
        bases: Bases,
        day: int,
        uplift: np.ndarray | None = None,
        loop: ClosedLoop | None = None,
    ) -> None:
        self.model = model
        self.bases = bases
        self.index = day
        self.date: date = model.start_date + timedelta(days=day)
        self.rng = np.random.default_rng([model.seed, 2, day])
        self.day_us = day_start_us(self.date)
        self.offsets = zone_offsets_us(self.date)
        self.uplift = uplift
        # Redemptions of delivered credits and codes; its own generator, so a world without
        # any keeps exactly the draws (and rows) it had before.
        self.loop = loop
        self.loop_rng = np.random.default_rng([model.seed, 7, day])
        self.out = Day()
        self.failed_orders: list[tuple[np.ndarray, np.ndarray]] = []

    # -- the main draw -----------------------------------------------------------------
    def run(self) -> Day:
        model, rng, persons = self.model, self.rng, self.model.persons
        n = len(persons.person_id)
        weekday = self.date.weekday()
        season = season_factor(self.date)
        level = activity_level(model, self.index)
        open_today = model.stores.closed_weekday != weekday
        home_open = open_today[persons.home_store]
        p_web = persons.rate_web * level * WEB_WEEKDAY[weekday] * season
        p_store = persons.rate_store * level * STORE_WEEKDAY[weekday] * season * home_open
        if self.loop is not None:  # the closed loop's expected conversions need the base rates
            self.loop.observe(self.date, p_web, p_store, self.uplift)
        if self.uplift is not None:
            p_web = p_web * self.uplift
            p_store = p_store * self.uplift
        first_today = np.floor(persons.first_purchase_day) == self.index
        draws = rng.random((4, n))
        first_web = first_today & persons.has_web & (~persons.has_store | (draws[3] < 0.6))
        first_store = first_today & persons.has_store & ~first_web & home_open
        web_buyers = np.flatnonzero((draws[0] < p_web) | first_web)
        store_buyers = np.flatnonzero((draws[1] < p_store) | first_store)
        known = persons.created_day < self.index + 1
        not_buying = np.ones(n, dtype=bool)
        not_buying[web_buyers] = False
        browsers = np.flatnonzero(
            persons.has_web & known & not_buying & (draws[2] < 0.01 + 1.5 * p_web)
        )
        self._web(web_buyers, browsers)
        self._store(store_buyers, open_today)
        self._social(level, known)
        self._inventory(open_today)
        self._consent(known)
        self._listings()
        return self.out

    # -- helpers ---------------------------------------------------------------------------
    def _not_before_creation(self, person: np.ndarray, when: np.ndarray) -> np.ndarray:
        created = (self.model.start_date_us + self.model.persons.created_day[person] * DAY).astype(
            np.int64
        )
        return np.maximum(when, created + 10 * MINUTE)

    def _person_time(self, person: np.ndarray) -> np.ndarray:
        local = _web_local_us(self.rng, len(person))
        zone = self.model.persons.zone[person]
        return self._not_before_creation(person, self.day_us + local - self.offsets[zone])

    def _store_time(self, store: np.ndarray, day_offset: np.ndarray | int = 0) -> np.ndarray:
        stores = self.model.stores
        span = (stores.close_us - stores.open_us)[store]
        local = stores.open_us[store] + (self.rng.beta(2.0, 2.0, len(store)) * span).astype(
            np.int64
        )
        local = local // SECOND * SECOND
        return self.day_us + np.asarray(day_offset) * DAY + local - self.offsets[stores.zone[store]]

    def _visit(self, store: np.ndarray, days_after: np.ndarray) -> np.ndarray:
        """A time in opening hours `days_after` days from today (the next day if closed)."""
        weekday = (self.date.weekday() + days_after) % 7
        days_after = days_after + (weekday == self.model.stores.closed_weekday[store])
        return self._store_time(store, days_after)

    # -- web ---------------------------------------------------------------------------------
    def _web(self, buyers: np.ndarray, browsers: np.ndarray) -> None:
        model, rng, persons = self.model, self.rng, self.model.persons
        n = len(buyers)
        checkout_id = model.next_ids("checkout", n)
        owner, product, quantity = _basket(rng, model, n, 0.7, persons.favourite_category[buyers])
        unit_price = model.products.web_price[product]
        subtotal = np.round(np.bincount(owner, quantity * unit_price, minlength=n), 2)
        pickup = rng.random(n) < 0.1
        tariff = rng.choice(SHIPPING_TARIFFS, size=n)
        tariff = np.where(persons.zone[buyers] == 1, CANARY_SHIPPING, tariff)
        shipping = np.where(pickup | (subtotal >= FREE_SHIPPING_FROM), 0.0, tariff)
        total = np.round(subtotal + shipping, 2)
        abandoned = rng.random(n) < abandonment_probability(shipping)
        r = rng.random(n)
        can_visit = persons.has_store[buyers]
        outcome = np.where(
            ~abandoned, 0, np.where(r < 0.14, 1, np.where((r < 0.32) & can_visit, 2, 3))
        )
        created = self._person_time(buyers)
        completed = created + _uniform(rng, MINUTE, 12 * MINUTE, n)
        last_touch = created + _uniform(rng, 0, 6 * MINUTE, n)
        recovered = created + _uniform(rng, 2 * HOUR, 72 * HOUR, n)
        shop_id = persons.shop_customer_id[buyers]
        email = model.shop_email.take(pa.array(buyers)) if model.shop_email is not None else None
        token = _hex_tokens(rng, checkout_id)

        def checkout_rows(
            sel: np.ndarray,
            updated: np.ndarray,
            done: np.ndarray,
            done_valid: np.ndarray,
            recovered_valid: np.ndarray,
        ) -> pa.Table:
            return chunk(
                "checkouts",
                {
                    "checkout_id": checkout_id[sel],
                    "token": token.take(pa.array(sel)),
                    "shop_customer_id": shop_id[sel],
                    "email": email.take(pa.array(sel))
                    if email is not None
                    else pa.nulls(len(sel), pa.string()),
                    "created_at": created[sel],
                    "updated_at": updated,
                    "completed_at": col(done, pa.timestamp("us", tz="UTC"), done_valid),
                    "shipping_cost": shipping[sel],
                    "subtotal": subtotal[sel],
                    "total": total[sel],
                    "outcome": pick(OUTCOMES, outcome[sel]),
                    "recovered_at": col(done, pa.timestamp("us", tz="UTC"), recovered_valid),
                },
                key=checkout_id[sel],
                visible=updated,
            )

        everyone = np.arange(n)
        first_version = checkout_rows(
            everyone,
            np.where(outcome == 0, completed, last_touch),
            completed,
            outcome == 0,
            np.zeros(n, dtype=bool),
        )
        online = np.flatnonzero(outcome == 1)
        recovered_version = checkout_rows(
            online,
            recovered[online],
            recovered[online],
            np.ones(len(online), bool),
            np.ones(len(online), bool),
        )
        self.out.add("checkouts", pa.concat_tables([first_version, recovered_version]))
        self.out.add(
            "checkout_items",
            chunk(
                "checkout_items",
                {
                    "checkout_id": checkout_id[owner],
                    "product_id": model.products.product_id[product],
                    "quantity": quantity,
                    "unit_price": unit_price,
                },
                key=checkout_id[owner] * 16 + _position_in_group(owner),
                visible=created[owner],
            ),
        )

        # Sessions: one before each checkout, browsing without checkout, anonymous visitors.
        browse_start = self._person_time(browsers)
        n_anonymous = int(rng.poisson(0.8 * (n + len(browsers))))
        anonymous_start = self.day_us + _web_local_us(rng, n_anonymous) - self.offsets[0]
        starts = np.concatenate(
            [created - _uniform(rng, 2 * MINUTE, 30 * MINUTE, n), browse_start, anonymous_start]
        )
        customer = np.concatenate(
            [shop_id, persons.shop_customer_id[browsers], np.zeros(n_anonymous, np.int64)]
        )
        session_id = model.next_ids("session", len(starts))
        self.out.add(
            "web_sessions",
            chunk(
                "web_sessions",
                {
                    "session_id": session_id,
                    "shop_customer_id": col(customer, pa.int64(), customer > 0),
                    "started_at": starts,
                    "page_views": (3 + rng.poisson(6.0, len(starts))).astype(np.int32),
                    "device": pick(DEVICES, rng.choice(3, size=len(starts), p=(0.62, 0.3, 0.08))),
                },
                key=session_id,
                visible=starts,
            ),
        )

        bought = np.flatnonzero(outcome <= 1)
        order_created = np.where(outcome == 0, completed, recovered)[bought]
        self._orders(
            buyers[bought],
            checkout_id[bought],
            order_created,
            subtotal[bought],
            shipping[bought],
            total[bought],
            pickup[bought],
            owner,
            product,
            quantity,
            unit_price,
            bought,
        )
        in_store = np.flatnonzero(outcome == 2)
        if len(in_store):
            self._abandoned_bought_in_store(
                buyers[in_store], created[in_store], in_store, owner, product, quantity
            )

    def _orders(
        self,
        person: np.ndarray,
        checkout_id: np.ndarray,
        created: np.ndarray,
        subtotal: np.ndarray,
        shipping: np.ndarray,
        total: np.ndarray,
        pickup: np.ndarray,
        owner: np.ndarray,
        product: np.ndarray,
        quantity: np.ndarray,
        unit_price: np.ndarray,
        from_checkout: np.ndarray,
    ) -> None:
        model, rng = self.model, self.rng
        n = len(person)
        seq = model.next_ids("order", n)
        order_id = 5_200_000_000 + seq
        ship = created + np.where(
            pickup, _uniform(rng, 2 * HOUR, 24 * HOUR, n), _uniform(rng, 3 * HOUR, 30 * HOUR, n)
        )
        final = ship + np.where(
            pickup, _uniform(rng, 2 * HOUR, 72 * HOUR, n), _uniform(rng, 20 * HOUR, 96 * HOUR, n)
        )
        failure = ~pickup & (rng.random(n) < 0.035)
        returned = ~failure & (rng.random(n) < 0.06)

        # Items: those of the checkout each order came from.
        item_order = _inverse(from_checkout, owner)
        keep = item_order >= 0
        item_order, product, quantity, unit_price = (
            item_order[keep],
            product[keep],
            quantity[keep],
            unit_price[keep],
        )
        line_item_id = 13_000_000_000 + model.next_ids("line_item", len(item_order))
        lines = np.bincount(item_order, minlength=n)
        first_line = np.cumsum(lines) - lines
        self.out.add(
            "web_order_items",
            chunk(
                "web_order_items",
                {
                    "order_id": order_id[item_order],
                    "line_item_id": line_item_id,
                    "product_id": model.products.product_id[product],
                    "quantity": quantity,
                    "unit_price": unit_price,
                },
                key=line_item_id,
                visible=created[item_order],
            ),
        )

        # Returns: one line of some delivered orders; every line of a failed delivery.
        returned_orders = np.flatnonzero(returned)
        return_line = first_line[returned_orders] + (
            rng.random(len(returned_orders)) * lines[returned_orders]
        ).astype(np.int64)
        return_time = final[returned_orders] + _uniform(
            rng, 2 * DAY, 20 * DAY, len(returned_orders)
        )
        failed_lines = np.flatnonzero(failure[item_order])
        refund_time = final + _uniform(rng, DAY, 3 * DAY, n)
        return_rows = np.concatenate([return_line, failed_lines])
        return_at = np.concatenate([return_time, refund_time[item_order[failed_lines]]])
        return_seq = model.next_ids("return", len(return_rows))
        self.out.add(
            "returns",
            chunk(
                "returns",
                {
                    "return_id": join("RW", digits(return_seq, 9)),
                    "channel": pa.array(["web"] * len(return_rows), pa.string()),
                    "order_id": digits(order_id[item_order[return_rows]]),
                    "product_id": model.products.product_id[product[return_rows]],
                    "quantity": quantity[return_rows],
                    "amount": np.round(quantity[return_rows] * unit_price[return_rows], 2),
                    "created_at": return_at,
                },
                key=return_seq,
                visible=return_at,
            ),
        )

        # Versions of each order: placed, shipped, delivered (or failed), refunded.
        refund_at = np.where(failure, refund_time, final)
        refund_at[returned_orders] = return_time
        full_refund = failure.copy()
        full_refund[returned_orders] = lines[returned_orders] == 1
        refunded = failure | returned
        store_id = model.stores.store_id[model.persons.home_store[person]]
        shop_id = model.persons.shop_customer_id[person]
        versions = []
        for version in range(4):
            sel = np.arange(n) if version < 3 else np.flatnonzero(refunded)
            at = (created, ship, final, refund_at)[version][sel]
            financial = np.where(
                (version == 3) & full_refund[sel],
                "refunded",
                np.where(version == 3, "partially_refunded", "paid"),
            )
            if version == 0:
                shipment = np.full(len(sel), "pending")
            elif version == 1:
                shipment = np.full(len(sel), "in_transit")
            else:
                shipment = np.where(failure[sel], "failure", "delivered")
            delivered = (version >= 2) & ~failure[sel]
            versions.append(
                chunk(
                    "web_orders",
                    {
                        "order_id": order_id[sel],
                        "order_number": 1000 + seq[sel],
                        "shop_customer_id": shop_id[sel],
                        "checkout_id": checkout_id[sel],
                        "created_at": created[sel],
                        "updated_at": at,
                        "subtotal": subtotal[sel],
                        "shipping_cost": shipping[sel],
                        "total": total[sel],
                        "financial_status": pa.array(financial, pa.string()),
                        "fulfillment_status": col(
                            pa.array(np.full(len(sel), "fulfilled"), pa.string()),
                            pa.string(),
                            np.full(len(sel), version >= 1),
                        ),
                        "shipment_status": pa.array(shipment, pa.string()),
                        "delivered_at": col(final[sel], pa.timestamp("us", tz="UTC"), delivered),
                        "fulfillment_type": pa.array(
                            np.where(pickup[sel], "store_pickup", "shipping"), pa.string()
                        ),
                        "pickup_store_id": col(store_id[sel], pa.int64(), pickup[sel]),
                    },
                    key=order_id[sel],
                    visible=at,
                )
            )
        self.out.add("web_orders", pa.concat_tables(versions))
        if self.loop is not None:
            self._discount_codes(person, order_id, created, subtotal, shipping)
        failed = np.flatnonzero(failure)
        self.failed_orders.append((person[failed], final[failed]))

    def _abandoned_bought_in_store(
        self,
        person: np.ndarray,
        abandoned_at: np.ndarray,
        checkout_index: np.ndarray,
        owner: np.ndarray,
        product: np.ndarray,
        quantity: np.ndarray,
    ) -> None:
        """The same person buys the same items in their home store one to five days later."""
        model, rng = self.model, self.rng
        store = model.persons.home_store[person]
        when = np.maximum(self._visit(store, rng.integers(1, 6, len(person))), abandoned_at + HOUR)
        sale_of_item = _inverse(checkout_index, owner)
        keep = sale_of_item >= 0
        self._store_sales(store, person, when, (sale_of_item[keep], product[keep], quantity[keep]))

    # -- stores --------------------------------------------------------------------------
    def _store(self, buyers: np.ndarray, open_today: np.ndarray) -> None:
        model, rng = self.model, self.rng
        stores = model.stores
        open_weight = np.where(open_today, stores.weight, 0.0)
        if open_weight.sum() == 0:
            return
        open_weight = open_weight / open_weight.sum()
        store = model.persons.home_store[buyers].copy()
        elsewhere = rng.random(len(buyers)) < 0.08
        store[elsewhere] = rng.choice(len(open_weight), size=int(elsewhere.sum()), p=open_weight)
        person = buyers.copy()
        person[rng.random(len(buyers)) < 0.08] = -1  # forgot the loyalty card: anonymous
        n_anonymous = int(rng.poisson(0.45 * len(buyers)))
        anonymous_store = rng.choice(len(open_weight), size=n_anonymous, p=open_weight)
        store = np.concatenate([store, anonymous_store]).astype(np.int64)
        person = np.concatenate([person, np.full(n_anonymous, -1)])
        when = self._store_time(store)
        identified = person >= 0
        when[identified] = self._not_before_creation(person[identified], when[identified])
        self._store_sales(store, person, when, None)

    def _store_sales(
        self,
        store: np.ndarray,
        person: np.ndarray,
        created: np.ndarray,
        items: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> None:
        model, rng = self.model, self.rng
        n = len(store)
        if n == 0:
            return
        if items is None:
            favourite = np.where(
                person >= 0,
                model.persons.favourite_category[np.maximum(person, 0)],
                rng.integers(0, len(ref.CATEGORIES), n),
            ).astype(np.int8)
            owner, product, quantity = _basket(rng, model, n, 1.0, favourite)
        else:
            owner, product, quantity = items
        seq = model.next_ids("store_sale", n)
        pos_order_id = join("SQO", digits(seq, 10))
        unit_price = model.products.store_price[product]
        total = np.round(np.bincount(owner, quantity * unit_price, minlength=n), 2)
        identified = person >= 0
        customer = col(
            pos_customer_ids(model.persons.pos_number[np.maximum(person, 0)]),
            pa.string(),
            identified,
        )
        store_id = model.stores.store_id[store]
        lines = np.bincount(owner, minlength=n)
        first_line = np.cumsum(lines) - lines
        returned = np.flatnonzero(rng.random(n) < 0.03)
        days_after = (created[returned] - self.day_us) // DAY + rng.integers(1, 26, len(returned))
        return_time = self._visit(store[returned], days_after)
        versions = np.concatenate([np.arange(n), returned])
        updated = np.concatenate([created, return_time])
        self.out.add(
            "store_sales",
            chunk(
                "store_sales",
                {
                    "pos_order_id": pos_order_id.take(pa.array(versions)),
                    "store_id": store_id[versions],
                    "pos_customer_id": customer.take(pa.array(versions)),
                    "created_at": created[versions],
                    "updated_at": updated,
                    "total": total[versions],
                },
                key=seq[versions],
                visible=updated,
            ),
        )
        if self.loop is not None:
            self._cashback_discounts(person, pos_order_id, created, total)
        line_seq = model.next_ids("store_line", len(owner))
        position = _position_in_group(owner)
        self.out.add(
            "store_sale_items",
            chunk(
                "store_sale_items",
                {
                    "pos_order_id": pos_order_id.take(pa.array(owner)),
                    "line_uid": join(pos_order_id.take(pa.array(owner)), "-", digits(position + 1)),
                    "product_id": model.products.product_id[product],
                    "quantity": quantity,
                    "unit_price": unit_price,
                },
                key=line_seq,
                visible=created[owner],
            ),
        )
        line = first_line[returned] + (rng.random(len(returned)) * lines[returned]).astype(int)
        return_seq = model.next_ids("return", len(returned))
        self.out.add(
            "returns",
            chunk(
                "returns",
                {
                    "return_id": join("RS", digits(return_seq, 9)),
                    "channel": pa.array(["store"] * len(returned), pa.string()),
                    "order_id": pos_order_id.take(pa.array(returned)),
                    "product_id": model.products.product_id[product[line]],
                    "quantity": quantity[line],
                    "amount": np.round(quantity[line] * unit_price[line], 2),
                    "created_at": return_time,
                },
                key=return_seq,
                visible=return_time,
            ),
        )

    # -- redemptions (closed loop) ------------------------------------------------------------
    def _cashback_discounts(
        self, person: np.ndarray, pos_order_id: pa.Array, created: np.ndarray, total: np.ndarray
    ) -> None:
        """Square order discounts: active cashback credits used up by their holder's sale."""
        assert self.loop is not None
        redeemed = self.loop.store_redemptions(person, created, total)
        if not redeemed:
            return
        sale = np.array([entry[0] for entry in redeemed], dtype=np.int64)
        seq = self.model.next_ids("store_discount", len(redeemed))
        order = pos_order_id.take(pa.array(sale))
        self.out.add(
            "store_sale_discounts",
            chunk(
                "store_sale_discounts",
                {
                    "pos_order_id": order,
                    "discount_uid": join(order, "-d", digits(seq, 8)),
                    "name": pa.array([f"cashback {c.offer_id}" for _, c, _ in redeemed]),
                    "amount": np.array([amount for _, _, amount in redeemed]),
                    "credit_id": pa.array([c.credit_id for _, c, _ in redeemed]),
                    "offer_id": pa.array([c.offer_id for _, c, _ in redeemed]),
                    "loyalty_account_id": pa.array([c.loyalty_account_id for _, c, _ in redeemed]),
                    "created_at": created[sale],
                },
                key=seq,
                visible=created[sale],
            ),
        )

    def _discount_codes(
        self,
        person: np.ndarray,
        order_id: np.ndarray,
        created: np.ndarray,
        subtotal: np.ndarray,
        shipping: np.ndarray,
    ) -> None:
        """Shopify discount codes: an emailed offer code entered on an online order."""
        assert self.loop is not None
        used = self.loop.online_redemptions(person, created, subtotal, shipping, self.loop_rng)
        if not used:
            return
        order = np.array([entry[0] for entry in used], dtype=np.int64)
        self.out.add(
            "web_order_discount_codes",
            chunk(
                "web_order_discount_codes",
                {
                    "order_id": order_id[order],
                    "code": pa.array([code.code for _, code, _, _ in used]),
                    "amount": np.array([amount for _, _, amount, _ in used]),
                    "type": pa.array([kind for _, _, _, kind in used]),
                    "offer_id": pa.array([code.offer_id for _, code, _, _ in used]),
                    "created_at": created[order],
                },
                key=order_id[order],
                visible=created[order],
            ),
        )

    # -- social --------------------------------------------------------------------------
    def _social(self, level: np.ndarray, known: np.ndarray) -> None:
        model, rng, persons = self.model, self.rng, self.model.persons
        p = 0.012 * (0.4 + level)
        active = np.flatnonzero(persons.has_social & known & (rng.random(len(level)) < p))
        followers = model.followers
        n_followers = int(rng.binomial(len(followers), 0.006)) if len(followers) else 0
        follower = rng.choice(followers, size=n_followers) if n_followers else followers[:0]
        failed_person = np.concatenate([f[0] for f in self.failed_orders] or [np.zeros(0, int)])
        failed_at = np.concatenate([f[1] for f in self.failed_orders] or [np.zeros(0, np.int64)])
        complain = persons.has_social[failed_person] & (rng.random(len(failed_person)) < 0.6)
        failed_person, failed_at = failed_person[complain], failed_at[complain]

        number = np.concatenate(
            [persons.social_number[active], follower, persons.social_number[failed_person]]
        )
        created = np.concatenate(
            [
                self._person_time(active),
                self.day_us + _web_local_us(rng, n_followers) - self.offsets[0],
                failed_at + _uniform(rng, HOUR, 30 * HOUR, len(failed_person)),
            ]
        )
        n = len(number)
        is_complaint = np.arange(n) >= len(active) + n_followers
        sentiment = np.where(
            is_complaint,
            np.where(rng.random(n) < 0.85, 2, 1),
            rng.choice(3, size=n, p=(0.45, 0.35, 0.2)),
        )
        kind = np.where(
            is_complaint,
            rng.choice(3, size=n, p=(0.3, 0.2, 0.5)),
            rng.choice(3, size=n, p=(0.5, 0.3, 0.2)),
        )
        score_low = np.array([0.3, -0.2, -1.0])[sentiment]
        score_high = np.array([1.0, 0.2, -0.3])[sentiment]
        score = np.round(score_low + rng.random(n) * (score_high - score_low), 3)
        names = ("positive", "neutral", "negative")
        texts = [text for name in names for text in ref.SOCIAL_TEXTS[name]]
        per = np.array([len(ref.SOCIAL_TEXTS[name]) for name in names])
        text = (
            np.cumsum(per)[sentiment]
            - per[sentiment]
            + (rng.random(n) * per[sentiment]).astype(int)
        )
        post_day = self.index - rng.integers(0, 7, n)
        post = join(PAGE_ID, "_", digits((post_day + 100_000) * 3 + rng.integers(0, 3, n)))
        seq = model.next_ids("activity", n)
        self.out.add(
            "social_activities",
            chunk(
                "social_activities",
                {
                    "activity_id": join("ACT", digits(seq, 10)),
                    "kind": pick(("comment", "mention", "message"), kind),
                    "social_user_id": social_user_ids(number),
                    "post_id": col(post, pa.string(), kind == 0),
                    "created_at": created,
                    "text": pick(texts, text),
                    "sentiment": pick(names, sentiment),
                    "sentiment_score": score,
                },
                key=seq,
                visible=created,
            ),
        )

    # -- stock, consent, marketplace prices ------------------------------------------------
    def _inventory(self, open_today: np.ndarray) -> None:
        model, rng = self.model, self.rng
        inventory = model.inventory
        changes = np.flatnonzero(
            (rng.random(len(inventory.store)) < 0.07) & open_today[inventory.store]
        )
        current = inventory.quantity[changes]
        sold = 1 + rng.poisson(2.0, len(changes))
        restock = rng.integers(8, 40, len(changes))
        new = np.where(
            current == 0,
            np.where(rng.random(len(changes)) < 0.85, restock, 0),
            np.where(
                (current <= 3) & (rng.random(len(changes)) < 0.5),
                current + restock,
                np.maximum(current - sold, 0),
            ),
        ).astype(np.int32)
        moved = new != current
        changes, new = changes[moved], new[moved]
        inventory.quantity[changes] = new
        store = inventory.store[changes]
        valid_from = self._store_time(store)
        key = model.next_ids("inventory_row", len(changes))
        self.out.add(
            "inventory_levels",
            chunk(
                "inventory_levels",
                {
                    "store_id": model.stores.store_id[store],
                    "product_id": model.products.product_id[inventory.product[changes]],
                    "quantity": new,
                    "valid_from": valid_from,
                },
                key=key,
                visible=valid_from,
            ),
        )

    def _changed(self, known: np.ndarray, mask: np.ndarray, rate: float) -> np.ndarray:
        rng = self.rng
        n = len(known)
        candidates = np.unique(rng.integers(0, n, int(rng.binomial(n, rate))))
        return candidates[known[candidates] & mask[candidates]]

    def _consent(self, known: np.ndarray) -> None:
        rng, persons = self.rng, self.model.persons
        states = ("not_subscribed", "subscribed", "unsubscribed")
        shop = self._changed(known, persons.has_web, 0.0008)
        old = persons.email_state[shop]
        new = np.where(old == 1, 2, np.where(rng.random(len(shop)) < 0.7, 1, old)).astype(np.int8)
        shop = shop[new != old]
        new = new[new != old]
        persons.email_state[shop] = new
        when = self.day_us + _uniform(rng, 7 * HOUR, 23 * HOUR, len(shop))
        base = self.bases.shop_customers
        rows = base.take(
            pa.array(np.searchsorted(base["person_id"].to_numpy(), persons.person_id[shop]))
        )
        columns = {name: rows[name] for name in rows.column_names}
        columns["email_consent_state"] = pick(states, new)
        columns["updated_at"] = when
        self.out.add(
            "shop_customers",
            chunk("shop_customers", columns, key=persons.shop_customer_id[shop], visible=when),
        )

        pos = self._changed(known, persons.has_store, 0.0005)
        persons.pos_unsubscribed[pos] = ~persons.pos_unsubscribed[pos]
        when = self.day_us + _uniform(rng, 9 * HOUR, 21 * HOUR, len(pos))
        base = self.bases.pos_customers
        rows = base.take(
            pa.array(np.searchsorted(base["person_id"].to_numpy(), persons.person_id[pos]))
        )
        columns = {name: rows[name] for name in rows.column_names}
        columns["email_unsubscribed"] = persons.pos_unsubscribed[pos]
        columns["updated_at"] = when
        self.out.add(
            "pos_customers",
            chunk("pos_customers", columns, key=persons.pos_number[pos], visible=when),
        )

    def _listings(self) -> None:
        model, rng = self.model, self.rng
        base = self.bases.marketplace_listings
        changed = np.flatnonzero(rng.random(base.num_rows) < 0.02)
        rows = base.take(pa.array(changed))
        product_index = rows["product_id"].to_numpy() - 1
        web = model.products.web_price[product_index]
        price = np.where(
            rng.random(len(changed)) < 0.5,
            web,
            np.maximum(np.floor(web * rng.uniform(0.85, 1.1, len(changed))), 2.0) + 0.95,
        )
        when = self.day_us + _uniform(rng, 0, DAY, len(changed))
        columns = {name: rows[name] for name in rows.column_names}
        columns["price"] = price
        columns["updated_at"] = when
        market = pc.index_in(rows["marketplace"], pa.array(ref.MARKETPLACES)).to_numpy(
            zero_copy_only=False
        )
        self.out.add(
            "marketplace_listings",
            chunk(
                "marketplace_listings",
                columns,
                key=rows["product_id"].to_numpy() * 8 + market,
                visible=when,
            ),
        )

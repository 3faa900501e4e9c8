"""The world simulator: determinism, the contract's schema, and the behaviour it promises."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestration.sandbox import world
from orchestration.settings import REPO_ROOT

END = date(2026, 11, 22)


def _files(world_dir: Path) -> dict[str, str]:
    """Digest of every contract file (parts and world.json) by relative path."""
    paths = [*world_dir.glob("*/part-*.parquet"), world_dir / "world.json"]
    return {
        str(path.relative_to(world_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(paths)
    }


def _connect(world_dir: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for table in world.TABLES:
        con.execute(
            f"create view {table} as "
            f"select * from read_parquet('{world_dir}/{table}/part-*.parquet')"
        )
    return con


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row


@pytest.fixture(scope="module")
def big_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 customers over 120 days: enough for lifecycle and spend comparisons."""
    world_dir = tmp_path_factory.mktemp("big") / "world"
    world.generate(world_dir, customers=2_000, days=120, seed=7, end_date=END)
    return world_dir


@pytest.fixture(scope="module")
def con(big_world: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = _connect(big_world)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    world_dir = tmp_path_factory.mktemp("small") / "world"
    world.generate(world_dir, customers=500, days=40, seed=3, end_date=END)
    return world_dir


# -- determinism -----------------------------------------------------------------------------
def test_same_seed_gives_identical_files(small_world: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    world.generate(again, customers=500, days=40, seed=3, end_date=END)
    assert _files(again) == _files(small_world)


def test_different_seed_gives_different_tables(small_world: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    world.generate(other, customers=500, days=40, seed=4, end_date=END)
    mine, theirs = _files(small_world), _files(other)
    for table in ("persons", "checkouts", "store_sales", "web_orders"):
        path = f"{table}/part-00000.parquet"
        assert mine[path] != theirs[path], table


def test_generate_overwrites_but_refuses_foreign_folders(tmp_path: Path) -> None:
    world_dir = tmp_path / "world"
    world.generate(world_dir, customers=50, days=3, seed=1, end_date=END)
    (world_dir / "stale").mkdir()
    world.generate(world_dir, customers=50, days=3, seed=1, end_date=END)
    assert not (world_dir / "stale").exists()
    foreign = tmp_path / "not-a-world"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        world.generate(foreign, customers=50, days=3, seed=1, end_date=END)
    assert (foreign / "notes.txt").exists()


# -- the contract ----------------------------------------------------------------------------
def _contract_columns() -> dict[str, list[str]]:
    """Table -> column names, parsed from section 1 of docs/sandbox-api.md."""
    text = (REPO_ROOT / "docs" / "sandbox-api.md").read_text()
    section = text.split("## 1.", 1)[1].split("## 2.", 1)[0]
    tables = {}
    for line in section.splitlines():
        match = re.match(r"^\| `(\w+)` \| (.+) \|$", line)
        if not match:
            continue
        columns = match.group(2)
        while "(" in columns:  # drop parenthesised remarks (they contain commas)
            columns = re.sub(r"\([^()]*\)", "", columns)
        columns = columns.replace("the hidden truth:", "")
        tables[match.group(1)] = [piece.split()[0] for piece in columns.split(",")]
    return tables


def test_every_contract_table_is_written_with_its_columns(big_world: Path) -> None:
    contract = _contract_columns()
    assert set(contract) == set(world.TABLES)
    for table, columns in contract.items():
        schema = pq.read_schema(big_world / table / "part-00000.parquet")
        assert schema.names == columns, table
        for field in schema:
            if field.name.endswith("_at") or field.name == "valid_from":
                assert field.type == pa.timestamp("us", tz="UTC"), (table, field.name)
            if field.name in {
                "web_price",
                "store_price",
                "cost",
                "price",
                "total",
                "subtotal",
                "shipping_cost",
                "unit_price",
                "amount",
            }:
                assert field.type == pa.float64(), (table, field.name)
    meta = json.loads((big_world / "world.json").read_text())
    assert meta["start_date"] == (END - timedelta(days=119)).isoformat()
    assert (meta["end_date"], meta["seed"], meta["customers"], meta["parts"]) == (
        END.isoformat(),
        7,
        2_000,
        1,
    )


def test_nothing_happens_after_the_simulated_today(con: duckdb.DuckDBPyConnection) -> None:
    clock = datetime(END.year, END.month, END.day, 23, 59, 59)
    for table, spec in world.TABLES.items():
        for field in spec.schema:
            if pa.types.is_timestamp(field.type):
                (latest,) = _one(con, f"select max({field.name})::timestamp from {table}")
                assert latest is None or latest <= clock, (table, field.name)


def test_ids_are_unique_within_a_part(con: duckdb.DuckDBPyConnection) -> None:
    for table, key in [
        ("checkout_items", "checkout_id, product_id"),
        ("web_order_items", "order_id, line_item_id"),
        ("store_sale_items", "pos_order_id, line_uid"),
        ("inventory_levels", "store_id, product_id, valid_from"),
        ("social_activities", "activity_id"),
        ("web_sessions", "session_id"),
        ("web_orders", "order_id"),
        ("checkouts", "checkout_id"),
        ("store_sales", "pos_order_id"),
        ("shop_customers", "shop_customer_id"),
        ("pos_customers", "pos_customer_id"),
        ("returns", "return_id"),
        ("persons", "person_id"),
        ("marketplace_listings", "listing_id"),
    ]:
        total, distinct = _one(con, f"select count(*), count(distinct ({key})) from {table}")
        assert total == distinct > 0, table


def test_money_is_rounded_to_cents(con: duckdb.DuckDBPyConnection) -> None:
    (bad,) = _one(
        con,
        "select count(*) from web_orders where round(total, 2) <> total "
        "or abs(subtotal + shipping_cost - total) > 0.005",
    )
    assert bad == 0


# -- the business the analyses must find -------------------------------------------------------
def test_multi_channel_customers_spend_at_least_15_percent_more(
    con: duckdb.DuckDBPyConnection,
) -> None:
    multi, single = _one(
        con,
        """
        with web as (select shop_customer_id, sum(total) as spend from web_orders group by 1),
        store as (
            select pos_customer_id, sum(total) as spend from store_sales
            where pos_customer_id is not null group by 1
        ),
        spend as (
            select has_web::int + has_store::int + has_social::int > 1 as is_multi,
                   coalesce(web.spend, 0) + coalesce(store.spend, 0) as spend
            from persons
            left join web using (shop_customer_id)
            left join store using (pos_customer_id)
        )
        select avg(spend) filter (where is_multi), avg(spend) filter (where not is_multi)
        from spend
        """,
    )
    assert multi >= 1.15 * single


def test_share_of_multi_channel_persons(con: duckdb.DuckDBPyConnection) -> None:
    (share,) = _one(
        con, "select avg((has_web::int + has_store::int + has_social::int > 1)::int) from persons"
    )
    assert 0.3 <= share <= 0.5


def test_cart_abandonment_rises_with_shipping_cost(con: duckdb.DuckDBPyConnection) -> None:
    free, paid, cheap, dear = _one(
        con,
        """
        select avg(is_abandoned) filter (where shipping_cost = 0),
               avg(is_abandoned) filter (where shipping_cost > 0),
               avg(is_abandoned) filter (where shipping_cost between 0.01 and 4.0),
               avg(is_abandoned) filter (where shipping_cost > 6.0)
        from (select shipping_cost, (outcome <> 'completed')::int as is_abandoned from checkouts)
        """,
    )
    assert paid > free + 0.1
    assert dear > cheap


def test_abandoned_carts_have_all_three_outcomes_and_they_happened(
    con: duckdb.DuckDBPyConnection,
) -> None:
    outcomes = dict(con.execute("select outcome, count(*) from checkouts group by 1").fetchall())
    for outcome in ("abandoned_bought_online", "abandoned_bought_in_store", "abandoned_never"):
        assert outcomes.get(outcome, 0) > 10, outcome
    assert outcomes["abandoned_never"] > outcomes["abandoned_bought_online"]
    # Recovered online: the checkout has an order and recovered_at; never: no order.
    (orphans,) = _one(
        con,
        """
        select count(*) from checkouts c
        where outcome = 'abandoned_bought_online' and recovered_at is not null
          and not exists (select 1 from web_orders o where o.checkout_id = c.checkout_id)
        """,
    )
    assert orphans == 0
    (ordered_never,) = _one(
        con,
        """
        select count(*) from checkouts c join web_orders o using (checkout_id)
        where c.outcome = 'abandoned_never'
        """,
    )
    assert ordered_never == 0
    # Bought in store: the same person buys the same products in a store within days.
    found, total = _one(
        con,
        """
        with cart as (
            select c.checkout_id, c.created_at, p.pos_customer_id,
                   list(distinct i.product_id order by i.product_id) as products
            from checkouts c
            join persons p using (shop_customer_id)
            join checkout_items i using (checkout_id)
            where c.outcome = 'abandoned_bought_in_store'
              and c.created_at < timestamp '2026-11-15'
            group by all
        ),
        sale as (
            select s.pos_order_id, s.pos_customer_id, s.created_at,
                   list(distinct i.product_id order by i.product_id) as products
            from store_sales s join store_sale_items i using (pos_order_id)
            where s.pos_customer_id is not null
            group by all
        )
        select count(distinct cart.checkout_id) filter (where sale.pos_order_id is not null),
               count(distinct cart.checkout_id)
        from cart left join sale
          on sale.pos_customer_id = cart.pos_customer_id and sale.products = cart.products
         and sale.created_at between cart.created_at and cart.created_at + interval 7 day
        """,
    )
    assert total > 0 and found == total


def test_customers_move_through_the_lifecycle(con: duckdb.DuckDBPyConnection) -> None:
    never, lapsed, recent = _one(
        con,
        """
        with purchase as (
            select p.person_id, o.created_at
            from web_orders o join persons p using (shop_customer_id)
            union all
            select p.person_id, s.created_at
            from store_sales s join persons p using (pos_customer_id)
        ),
        last_purchase as (select person_id, max(created_at) as last_at from purchase group by 1)
        select count(*) filter (where last_at is null),
               count(*) filter (where last_at < timestamp '2026-09-23'),
               count(*) filter (where last_at >= timestamp '2026-11-01')
        from persons left join last_purchase using (person_id)
        """,
    )
    assert never >= 100  # acquisition: known but no purchase yet
    assert lapsed >= 50  # bought earlier, nothing in the last 60 days
    assert recent >= 300


def test_identities_are_messy(con: duckdb.DuckDBPyConnection) -> None:
    (messy_emails,) = _one(
        con, "select count(*) from shop_customers where email <> lower(trim(email))"
    )
    assert messy_emails >= 20
    phones = [row[0] for row in con.execute("select phone from pos_customers").fetchall()]
    formats = {
        "spaced": r"\+34 \d{3} \d{2} \d{2} \d{2}",
        "national": r"\d{9}",
        "international_zeros": r"0034\d{9}",
        "e164": r"\+34\d{9}",
    }
    seen = {name for phone in phones for name, rx in formats.items() if re.fullmatch(rx, phone)}
    assert len(seen) >= 3
    handles = [row[0] for row in con.execute("select username from social_profiles").fetchall()]
    assert any(h.startswith("@") for h in handles) and any(h != h.lower() for h in handles)
    # Channels can be linked: most web+store persons share an email or a phone.
    (linkable,) = _one(
        con,
        """
        select avg(coalesce(
            lower(trim(s.email)) = lower(trim(c.email))
            or regexp_replace(s.phone, '\\D', '', 'g')[-9:]
               = regexp_replace(c.phone, '\\D', '', 'g')[-9:],
            false
        )::int)
        from persons p join shop_customers s using (person_id)
        join pos_customers c using (person_id)
        """,
    )
    assert 0.8 <= linkable < 1.0


def test_stores_and_homes_are_spanish_and_near(con: duckdb.DuckDBPyConnection) -> None:
    zones = dict(con.execute("select timezone, count(*) from persons group by 1").fetchall())
    assert zones["Europe/Madrid"] > 0.8 * sum(zones.values())
    assert zones.get("Europe/Lisbon", 0) > 0
    (near,) = _one(
        con,
        """
        with distance as (
            select p.person_id, min(
                6371 * 2 * asin(sqrt(
                    pow(sin(radians(s.latitude - p.home_latitude) / 2), 2)
                    + cos(radians(p.home_latitude)) * cos(radians(s.latitude))
                    * pow(sin(radians(s.longitude - p.home_longitude) / 2), 2)))
            ) as km
            from persons p cross join stores s group by 1
        )
        select avg((km <= 25)::int) from distance
        """,
    )
    assert near >= 0.8
    (sunday_closed,) = _one(con, "select count(*) from stores where closed_weekday = 6")
    assert sunday_closed >= 1


def test_store_activity_happens_in_opening_hours(con: duckdb.DuckDBPyConnection) -> None:
    for table, column in [
        ("store_sales", "created_at"),
        ("store_sales", "updated_at"),
        ("inventory_levels", "valid_from"),
    ]:
        outside, total = _one(
            con,
            f"""
            with local as (
                select timezone(st.timezone, t.{column}) as local_at, st.opens_local,
                       st.closes_local, st.closed_weekday
                from {table} t join stores st using (store_id)
                where t.{column} >= timestamp '2026-07-26'  -- after the opening snapshot
            )
            select count(*) filter (where strftime(local_at, '%H:%M') < opens_local
                                       or strftime(local_at, '%H:%M') > closes_local
                                       or (isodow(local_at) - 1) = closed_weekday),
                   count(*)
            from local
            """,
        )
        assert total > 0 and outside == 0, (table, column, outside)


def test_store_sales_prices_stock_and_social(con: duckdb.DuckDBPyConnection) -> None:
    (anonymous,) = _one(con, "select avg((pos_customer_id is null)::int) from store_sales")
    assert 0.25 <= anonymous <= 0.45
    (differs,) = _one(con, "select avg((store_price <> web_price)::int) from products")
    assert 0.005 <= differs <= 0.08
    (market_differs,) = _one(
        con,
        "select count(*) from marketplace_listings join products using (product_id) "
        "where price <> web_price",
    )
    assert market_differs > 0
    (out_of_stock,) = _one(con, "select count(*) from inventory_levels where quantity = 0")
    assert out_of_stock > 0
    channels = dict(con.execute("select channel, count(*) from returns group by 1").fetchall())
    assert channels.get("web", 0) > 0 and channels.get("store", 0) > 0
    kinds = dict(con.execute("select kind, count(*) from social_activities group by 1").fetchall())
    assert set(kinds) == {"comment", "mention", "message"}
    (after_failure, overall) = _one(
        con,
        """
        with failed as (
            select p.social_user_id, o.delivered_at, o.updated_at from web_orders o
            join persons p using (shop_customer_id)
            where o.shipment_status = 'failure' and p.social_user_id is not null
        )
        select avg((sentiment = 'negative')::int) filter (where social_user_id in
                   (select social_user_id from failed)),
               avg((sentiment = 'negative')::int)
        from social_activities
        """,
    )
    assert after_failure > overall


# -- advance ---------------------------------------------------------------------------------
def _advanced_copy(source: Path, target: Path, days: int, **kwargs: object) -> dict:
    shutil.copytree(source, target)
    return world.advance(target, days=days, **kwargs)  # type: ignore[arg-type]


def test_advance_appends_a_part_with_new_versions(small_world: Path, tmp_path: Path) -> None:
    summary = _advanced_copy(small_world, tmp_path / "a", days=2)
    advanced = tmp_path / "a"
    meta = json.loads((advanced / "world.json").read_text())
    assert meta["end_date"] == (END + timedelta(days=2)).isoformat()
    assert (meta["parts"], meta["days"]) == (2, 42)
    assert summary["part"] == 1 and summary["rows"]["checkouts"] > 0
    for table in world.TABLES:
        assert (advanced / table / "part-00001.parquet").exists(), table
    con = _connect(advanced)
    (updated,) = _one(
        con,
        f"""
        select count(*) from read_parquet('{advanced}/web_orders/part-00001.parquet') new
        join read_parquet('{advanced}/web_orders/part-00000.parquet') old using (order_id)
        where new.updated_at > old.updated_at and new.created_at = old.created_at
        """,
    )
    assert updated > 0
    clock = datetime(2026, 11, 24, 23, 59, 59)
    (latest,) = _one(con, "select max(updated_at)::timestamp from web_orders")
    assert END < latest.date() and latest <= clock
    # Acquisition goes on: new persons arrive with fresh, unique identities.
    arrived, first_seen, persons, emails = _one(
        con,
        f"""
        select count(*) filter (where new.person_id > (select max(person_id) from
                   read_parquet('{advanced}/persons/part-00000.parquet'))),
               min(new.created_at)::timestamp,
               (select count(*) from persons), (select count(distinct email) from persons)
        from read_parquet('{advanced}/persons/part-00001.parquet') new
        """,
    )
    assert arrived > 0 and first_seen.date() > END
    assert persons == emails == meta["persons"] == 500 + arrived
    # Deterministic: the same advance on another copy writes the same files.
    _advanced_copy(small_world, tmp_path / "b", days=2)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_advance_matches_generating_the_longer_world(tmp_path: Path) -> None:
    whole, stepped = tmp_path / "whole", tmp_path / "stepped"
    world.generate(whole, customers=3_000, days=60, seed=11, end_date=END)
    world.generate(stepped, customers=3_000, days=59, seed=11, end_date=END - timedelta(days=1))
    world.advance(stepped, days=1)
    counts = []
    for world_dir in (whole, stepped):
        con = _connect(world_dir)
        counts.append(
            _one(
                con,
                """
                select (select count(distinct checkout_id) from checkouts),
                       (select count(distinct pos_order_id) from store_sales),
                       (select count(distinct order_id) from web_orders
                        where created_at >= timestamp '2026-11-22')
                """,
            )
        )
    (whole_checkouts, whole_sales, whole_last), (step_checkouts, step_sales, step_last) = counts
    assert abs(whole_checkouts - step_checkouts) <= 0.1 * whole_checkouts
    assert abs(whole_sales - step_sales) <= 0.1 * whole_sales
    assert step_last > 0 and 0.5 <= step_last / max(whole_last, 1) <= 2.0


def test_purchase_uplift_raises_purchases(small_world: Path, tmp_path: Path) -> None:
    persons = pq.read_table(small_world / "persons" / "part-00000.parquet").num_rows
    base = _advanced_copy(small_world, tmp_path / "base", days=3)
    lifted = _advanced_copy(
        small_world, tmp_path / "lifted", days=3, purchase_uplift=np.full(persons, 3.0)
    )
    assert lifted["rows"]["checkouts"] > 1.5 * base["rows"]["checkouts"]
    assert lifted["rows"]["store_sales"] > 1.5 * base["rows"]["store_sales"]
    with pytest.raises(ValueError):
        world.advance(tmp_path / "base", purchase_uplift=np.ones(persons + 1))

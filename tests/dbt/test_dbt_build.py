"""`dbt build` on a small simulated world, through the real chain, checked against the truth.

simulator (``world.generate``) -> in-process sandbox services -> dlt ``ingest`` of the three
sources -> ``dbt build`` (a subprocess of the venv's dbt, target and logs in ``tmp_path`` so
the checkout's ``dbt_project/target`` is never touched) in a private ``OMNI_HOME``. The marts
are then compared with the world's hidden tables (``persons``, ``checkouts``...), which the
pipeline never sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from orchestration import settings

CUSTOMERS = 400
DAYS = 90
SEED = 23
END_DATE = date(2026, 11, 1)
PROJECT_DIR = settings.REPO_ROOT / "dbt_project"
# The warehouse layers built from raw data alone (activation models also need campaign configs);
# cautious: leave out tests of later layers that merely point at these models.
LAYERS = (
    "--select",
    "path:models/staging",
    "path:models/intermediate",
    "path:models/marts",
    "--indirect-selection",
    "cautious",
)
STAGES = {"acquisition", "experimentation", "loyalty", "retention", "recovery"}


@dataclass(frozen=True)
class Built:
    """A world and the warehouse built from it."""

    world_dir: Path
    warehouse: Path
    target_dir: Path
    first_build_seconds: float


def run_dbt(home: Path, target_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the venv's dbt on the project with a private OMNI_HOME, target and log folder."""
    dbt = Path(sys.executable).with_name("dbt")
    env = {**os.environ, "OMNI_HOME": str(home), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    command = [
        str(dbt),
        *args,
        "--project-dir",
        str(PROJECT_DIR),
        "--profiles-dir",
        str(PROJECT_DIR),
        "--target-path",
        str(target_dir),
        "--log-path",
        str(target_dir / "logs"),
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def world_table(world_dir: Path, table: str) -> str:
    """SQL reading the latest version of every row of a world table (parts are append-only)."""
    return f"read_parquet('{world_dir / table}/*.parquet')"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    from orchestration.sandbox import services, world
    from orchestration.sources import ingest

    root = tmp_path_factory.mktemp("dbt_build")
    home = root / "omni"
    world_dir = home / "world"
    target_dir = root / "target"
    world.generate(world_dir, CUSTOMERS, DAYS, SEED, end_date=END_DATE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMNI_HOME", str(home))
        cfg = settings.load()
        with services.running(world_dir) as urls:
            for source in ("shop", "pos", "social"):
                ingest(source, base_url=urls[source], cfg=cfg)
    started = time.monotonic()
    result = run_dbt(home, target_dir, "build", *LAYERS)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-6000:]
    yield Built(world_dir, home / "warehouse.duckdb", target_dir, seconds)


def query(built: Built, sql: str, parameters: list[object] | None = None) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(built.warehouse), read_only=True) as con:
        return con.execute(sql, parameters or []).fetchall()


def test_build_succeeds_with_every_test(built: Built) -> None:
    rows = query(built, "select count(*) from marts.dim_customers")
    assert rows[0][0] > 0
    print(f"first dbt build: {built.first_build_seconds:.1f}s")


def test_identity_resolution_matches_the_hidden_persons(built: Built) -> None:
    """Unified customers are one person each; a person is one customer when linkable.

    A person's records are linkable when they carry an identifier (email, phone, POS id);
    social users seen only through a comment carry none and stay customers of their own.
    """
    persons = world_table(built.world_dir, "persons")
    rows = query(
        built,
        f"""
        with truth as (
            select person_id, 'shop:' || cast(shop_customer_id as varchar) as record_key
            from {persons} where shop_customer_id is not null
            union
            select person_id, 'pos:' || pos_customer_id from {persons}
            where pos_customer_id is not null
            union
            select person_id, 'social:' || social_user_id from {persons}
            where social_user_id is not null
        ),
        matched as (
            select truth.person_id, truth.record_key, identities.*
            from truth
            join intermediate.int_customers_unified as identities using (record_key)
        ),
        linkable as (
            select * from matched
            where email_normalized is not null
                or phone_normalized is not null
                or pos_customer_ref is not null
        )
        select
            (select count(*) from truth where record_key not like 'social:%'),
            (select count(*) from matched where record_key not like 'social:%'),
            (select count(*) from (
                select customer_id from matched group by customer_id
                having count(distinct person_id) = 1)),
            (select count(distinct customer_id) from matched),
            (select count(*) from (
                select person_id from linkable group by person_id
                having count(distinct customer_id) = 1)),
            (select count(distinct person_id) from linkable)
        """,
    )
    shop_pos_truth, shop_pos_matched, pure, customers, whole, linkable = rows[0]
    print(f"identity: {pure}/{customers} customers are one person, {whole}/{linkable} whole")
    assert shop_pos_matched == shop_pos_truth, "every shop and POS customer reached the map"
    assert pure / customers >= 0.99, f"only {pure}/{customers} customers are one person"
    assert whole / linkable >= 0.9, f"only {whole}/{linkable} persons are one customer"


def test_every_lifecycle_stage_is_present(built: Built) -> None:
    rows = query(
        built, "select lifecycle_stage, count(*) from marts.dim_customers group by 1 order by 1"
    )
    counts = dict(rows)
    assert set(counts) == STAGES, counts


def test_value_bands_follow_total_spend_and_the_thresholds(built: Built) -> None:
    import yaml

    from orchestration import settings

    project = yaml.safe_load((settings.REPO_ROOT / "dbt_project" / "dbt_project.yml").read_text())
    mid, high = (project["vars"][f"value_band_{name}_min_eur"] for name in ("mid", "high"))
    rows = query(built, "select total_spent, value_band from marts.dim_customers")
    expected = ["high" if spent >= high else "mid" if spent >= mid else "low" for spent, _ in rows]
    assert [band for _, band in rows] == expected
    assert {"low", "mid", "high"} <= set(expected)  # the world has customers in every band


def test_abandoned_carts_match_the_world(built: Built) -> None:
    checkouts = world_table(built.world_dir, "checkouts")
    truth = f"""
        select checkout_id, arg_max(outcome, updated_at) as outcome
        from {checkouts} group by checkout_id
    """
    rows = query(
        built,
        f"""
        with truth as ({truth})
        select
            (select count(*) from truth where outcome like 'abandoned%'),
            (select count(*) from marts.fct_abandoned_carts),
            (select count(*) from marts.fct_abandoned_carts as carts
             join truth using (checkout_id)
             where (truth.outcome, carts.outcome) in (
                ('abandoned_bought_online', 'recovered_online'),
                ('abandoned_bought_in_store', 'bought_in_store'),
                ('abandoned_never', 'not_bought')))
        """,
    )
    world_abandoned, carts, agreeing = rows[0]
    assert carts == world_abandoned
    assert agreeing / carts >= 0.8, f"only {agreeing}/{carts} outcomes agree with the world"


def test_orders_and_history_cover_every_channel(built: Built) -> None:
    web = world_table(built.world_dir, "web_orders")
    store = world_table(built.world_dir, "store_sales")
    rows = query(
        built,
        f"""
        select
            (select count(distinct order_id) from {web}),
            (select count(distinct pos_order_id) from {store}),
            (select count(*) from marts.fct_orders where channel = 'web'),
            (select count(*) from marts.fct_orders where channel = 'store'),
            (select count(distinct channel) from marts.fct_customer_interactions)
        """,
    )
    world_web, world_store, web_orders, store_orders, channels = rows[0]
    assert (web_orders, store_orders) == (world_web, world_store)
    assert channels == 3


def test_second_build_is_incremental(built: Built) -> None:
    """A rebuild rewrites no unchanged history, yet repairs a row whose customer id moved."""
    sample = query(
        built,
        """
        select order_id from marts.fct_orders
        where customer_id is not null
            and updated_at < (select max(updated_at) - interval 10 day from marts.fct_orders)
        order by order_id limit 2
        """,
    )
    untouched, moved = (row[0] for row in sample)
    before = query(built, "select customer_id from marts.fct_orders where order_id = ?", [moved])
    with duckdb.connect(str(built.warehouse)) as con:
        con.execute(
            "update marts.fct_orders set loaded_at = timestamp '2000-01-01' where order_id = ?",
            [untouched],
        )
        con.execute("update marts.fct_orders set customer_id = 'moved' where order_id = ?", [moved])
    result = run_dbt(
        built.warehouse.parent,
        built.target_dir,
        "build",
        "--select",
        "fct_orders",
        "--indirect-selection",
        "cautious",
    )
    assert result.returncode == 0, result.stdout[-6000:]
    kept = query(built, "select loaded_at from marts.fct_orders where order_id = ?", [untouched])
    assert str(kept[0][0]).startswith("2000-01-01"), "an unchanged old order was rewritten"
    assert (
        query(built, "select customer_id from marts.fct_orders where order_id = ?", [moved])
        == before
    )


def test_quarantined_rows_are_excluded_from_staging(built: Built) -> None:
    """A raw row in quarantine.raw_rows disappears from staging (the quality gate's contract)."""
    from orchestration.quality import quarantine

    picked = query(
        built,
        """
        select id, any_value(_dlt_id) from raw_shop.customers
        group by id having count(*) = 1 order by id limit 1
        """,
    )
    customer_id, dlt_id = picked[0]
    with duckdb.connect(str(built.warehouse)) as con:
        quarantine.ensure_tables(con)
        con.execute(
            "insert into quarantine.raw_rows (source, table_name, dlt_id, rule, quarantined_at) "
            "values ('shop', 'customers', ?, 'test', current_timestamp)",
            [dlt_id],
        )
    result = run_dbt(
        built.warehouse.parent, built.target_dir, "run", "--select", "stg_shop__customers"
    )
    assert result.returncode == 0, result.stdout[-6000:]
    remaining = query(
        built,
        "select count(*) from staging.stg_shop__customers where shop_customer_id = ?",
        [customer_id],
    )
    assert remaining[0][0] == 0

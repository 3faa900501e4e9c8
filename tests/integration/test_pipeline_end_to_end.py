"""One end-to-end run of the DAG chain through Airflow itself, on a small generated world.

ingest_shop, ingest_pos, ingest_social, warehouse_build and every active campaign DAG run with
`airflow dags test` (a real SQLite metadata DB, real tasks, real dlt/GX/dbt) against in-process
sandbox services.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from orchestration import airflow_local, settings
from orchestration.demo import PIPELINE, campaign_dag_ids

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from orchestration.sandbox import services, world

    home = tmp_path_factory.mktemp("e2e")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMNI_HOME", str(home))
        cfg = settings.load()
        world.generate(cfg.world_dir, 400, 30, 7)
        with services.running(cfg.world_dir) as urls:
            for name, url in urls.items():
                patch.setenv(f"OMNI_{name.upper()}_URL", url)
            cfg = settings.load()
            airflow_local.init(cfg)
            for dag_id in [*PIPELINE, *campaign_dag_ids(cfg)]:
                airflow_local.run_dag(cfg, dag_id)
        yield home


def test_every_layer_is_filled(pipeline_home: Path) -> None:
    with duckdb.connect(str(pipeline_home / "warehouse.duckdb"), read_only=True) as con:
        for table in (
            "raw_shop.orders",
            "raw_pos.orders",
            "raw_social.comments",
            "marts.dim_customers",
            "marts.fct_orders",
            "marts.fct_customer_interactions",
            "config.campaigns",
            "activation.int_campaign_eligibility",
        ):
            row = con.execute(f"select count(*) from {table}").fetchone()
            assert row is not None and row[0] > 0, table


def test_the_runs_succeeded_and_the_warehouse_asset_was_published(pipeline_home: Path) -> None:
    metadata = pipeline_home / "airflow" / "airflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMNI_HOME", str(pipeline_home))
        dag_ids = [*PIPELINE, *campaign_dag_ids(settings.load())]
    with sqlite3.connect(metadata) as con:
        states = dict(con.execute("select dag_id, state from dag_run").fetchall())
        events = con.execute(
            "select count(*) from asset_event join asset on asset.id = asset_event.asset_id "
            "where asset.name = 'warehouse_marts'"
        ).fetchone()
    assert states == dict.fromkeys(dag_ids, "success")
    assert events is not None and events[0] >= 1


def test_active_campaigns_handed_their_audience_to_dispatch(pipeline_home: Path) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMNI_HOME", str(pipeline_home))
        campaign_ids = [
            dag_id.removeprefix("campaign_") for dag_id in campaign_dag_ids(settings.load())
        ]
    assert campaign_ids
    for campaign_id in campaign_ids:
        assert list((pipeline_home / "outbox" / campaign_id).glob("*.parquet")), campaign_id

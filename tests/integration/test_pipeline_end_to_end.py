"""One end-to-end run of the DAG chain through Airflow itself, on a small generated world.

ingest_shop, ingest_pos, ingest_social, warehouse_build and every active campaign DAG run with
`airflow dags test` (a real SQLite metadata DB, real tasks, real dlt/GX/dbt) against in-process
sandbox services; the campaign DAGs dispatch to the sandbox SendGrid, loyalty and store APIs, and
the ``measurement`` DAG measures and writes the report.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from orchestration import airflow_local, settings
from orchestration.demo import MEASUREMENT, PIPELINE, campaign_dag_ids

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
            for dag_id in [*PIPELINE, *campaign_dag_ids(cfg), MEASUREMENT]:
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
        dag_ids = [*PIPELINE, *campaign_dag_ids(settings.load()), MEASUREMENT]
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


def test_the_campaign_dags_dispatched_through_the_sandbox(pipeline_home: Path) -> None:
    """Every recorded contact is accounted for; what the ledger calls sent reached the sandbox,
    once; nothing is left in flight."""
    from orchestration.dispatch import Ledger
    from orchestration.sandbox.services.inbox import messages

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMNI_HOME", str(pipeline_home))
        cfg = settings.load()
        with Ledger.from_settings(cfg) as ledger:
            counts = ledger.counts()
            sent_emails = {
                contact.contact_id
                for contact in ledger.list_contacts(state="sent", channel="email")
            }
        accepted = [
            recipient["custom_args"]["dispatch_id"]
            for message in messages(cfg)
            for recipient in message["recipients"]
        ]
    assert counts["sent"] > 0, counts
    assert counts["sending"] == 0, counts
    assert sent_emails and sent_emails <= set(accepted)
    assert len(accepted) == len(set(accepted))  # no email twice


def test_the_measurement_dag_measured_and_wrote_the_report(pipeline_home: Path) -> None:
    with duckdb.connect(str(pipeline_home / "warehouse.duckdb"), read_only=True) as con:
        contacts = con.execute("select count(*) from marts.fct_campaign_contacts").fetchone()
        assignments = con.execute(
            "select count(*) from measurement.measurement_assignments"
        ).fetchone()
    assert contacts is not None and contacts[0] > 0
    assert assignments is not None and assignments[0] > 0
    report = pipeline_home / "reports" / "latest.html"
    assert report.exists() and 'data-chart="lift"' in report.read_text()

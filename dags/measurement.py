"""Measure what the campaigns earned and write the report.

Scheduled on the `warehouse_marts` asset, like the campaign DAGs. Why not "after the campaign
DAGs": those are one DAG per campaign file, each can be paused, and none publishes an asset,
so there is no single event meaning "all campaigns are done". Measuring on each warehouse
build is enough: the outcome data (new web and store orders) arrives with that build, and the
contact history is read straight from the dispatch ledger by `load_dispatch`, so every send the
ledger has recorded by then is measured; a send made by this cycle's campaign runs is measured
at the next build, well inside its attribution window (14 days by default). A run measures the
whole history again, so a missed run loses nothing.

1. `poll_email_events`: SendGrid events (delivered, open, click, bounce, unsubscribe) into the
   ledger database, and reconciliation of email contacts whose send was in doubt.
2. `load_dispatch`: the ledger's contacts, holdouts and email events into the warehouse
   schema `dispatch` (replaced in one transaction).
3. `build_measurement`: `dbt build` of the `dispatch` and `measurement` models (contacts with
   their status, holdouts, assignments, conversions, lift, ROI, omnichannel KPIs, price
   consistency, maturity scores), with their tests.
4. `write_report`: the self-contained HTML report, `OMNI_HOME/reports/report-<date>.html` and
   `latest.html` (the path is the task's return value).

Every task that opens the DuckDB warehouse holds the one-slot `warehouse` pool (DuckDB: one
writer, and no reader while it writes). Parsing this file opens nothing.
"""

from datetime import datetime
from typing import Any

from airflow.sdk import dag, task

from orchestration import assets, warehouse
from orchestration.dag_factory import DEFAULT_ARGS


@dag(
    schedule=[assets.WAREHOUSE],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["measurement", "report"],
    doc_md=__doc__,
    max_active_runs=1,
)
def measurement() -> None:
    @task
    def poll_email_events() -> dict[str, Any]:
        from orchestration.measurement.pipeline import poll_email_events as poll

        return poll()

    @task(pool=warehouse.WAREHOUSE_POOL)
    def load_dispatch() -> dict[str, int]:
        from orchestration.measurement.pipeline import load_dispatch as load

        return load()

    @task(pool=warehouse.WAREHOUSE_POOL)
    def build_measurement() -> None:
        from orchestration.measurement.pipeline import build_measurement as build

        build()

    @task(pool=warehouse.WAREHOUSE_POOL)
    def write_report() -> str:
        from orchestration.measurement.pipeline import write_report as write

        return write()

    poll_email_events() >> load_dispatch() >> build_measurement() >> write_report()


measurement()

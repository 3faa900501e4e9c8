"""Measure what the campaigns earned and write the report.

Runs after the campaign DAGs: it is scheduled on the `warehouse_marts` asset, the same event
that starts every active `campaign_<id>` DAG, and its first task waits until none of those
runs is queued or running. Why this shape: the campaigns are one DAG per campaign file, any
of them can be paused, and none publishes an asset, so no single event says "the campaigns are
done"; and measuring while they run would make the DuckDB writer (dbt) collide with their
readers (audience checks, email rendering). After the wait, the outcome data (new web and
store orders, from this warehouse build) and the contact history (read straight from the
dispatch ledger, including this cycle's sends) are both current. Each run measures the whole
history again, so a missed run loses nothing.

0. `wait_for_campaign_runs`: a sensor (reschedule mode: no worker slot held while waiting).
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
    @task.sensor(poke_interval=60, timeout=6 * 3600, mode="reschedule")
    def wait_for_campaign_runs() -> Any:
        from airflow.sdk import PokeReturnValue, get_current_context

        from orchestration.measurement.pipeline import busy_campaign_dags

        busy = busy_campaign_dags(get_current_context()["ti"])
        return PokeReturnValue(is_done=not busy, xcom_value=busy)

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

    waited = wait_for_campaign_runs()
    waited >> poll_email_events() >> load_dispatch() >> build_measurement() >> write_report()


measurement()

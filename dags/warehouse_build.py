"""Build the warehouse: quality gate on the raw data, then every dbt model.

Runs when all three raw assets (`raw_shop`, `raw_pos`, `raw_social`) have been updated.

1. `check_raw`: Great Expectations suites on the newly loaded raw rows. Rows that break a
   row-level rule are quarantined (`quarantine.raw_rows`, with the rule); a suite that fails
   stops the build here with a readable summary in the task log.
2. `publish_campaigns`: the valid campaign files of `campaigns/` into `config.campaigns` (a
   broken file is logged and left out; it cannot change another campaign's audience).
3. `load_dispatch`: the dispatch ledger (contacts, holdouts, SendGrid events) replaces the
   warehouse schema `dispatch`, so every build's frequency cap, re-entry, email blocks and
   measurement read the current contact history (`fct_campaign_contacts`).
4. `dbt`: one task per dbt model (rendered by astronomer-cosmos; each task is `dbt build` of
   that model: run plus its tests), staging -> intermediate -> marts -> triggers, every model
   except those that read the predictions.
5. `predict`: the predictive lifecycle model (Pareto/NBD + Gamma-Gamma, fitted on
   `marts.fct_orders`) writes `predictions.customer_predictions`: p_alive, expected purchases
   and value in the next 90 days per customer.
6. `dbt_audiences`: the models that read the predictions and everything after them (the
   campaign audiences, which can filter on p_alive), one task per model as in 4.
7. `publish`: logs rows per layer and publishes the `warehouse_marts` asset.

Every task that writes the DuckDB file holds the one-slot `warehouse` pool.
"""

from datetime import datetime
from typing import Any

from airflow.sdk import dag, task
from cosmos import DbtTaskGroup

from orchestration import assets, settings, warehouse
from orchestration.dag_factory import DEFAULT_ARGS


@dag(
    schedule=list(assets.RAW.values()),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["warehouse", "dbt", "quality"],
    doc_md=__doc__,
    max_active_runs=1,
)
def warehouse_build() -> None:
    @task(pool=warehouse.WAREHOUSE_POOL)
    def check_raw() -> dict[str, Any]:
        from orchestration.quality import check_raw as run_checks

        return run_checks()

    @task(pool=warehouse.WAREHOUSE_POOL)
    def publish_campaigns() -> dict[str, Any]:
        from orchestration.campaigns.publish import publish_campaign_files

        return publish_campaign_files(settings.load())

    @task(pool=warehouse.WAREHOUSE_POOL)
    def load_dispatch() -> dict[str, int]:
        from orchestration.dispatch.warehouse_load import load_dispatch as load

        return load(settings.load())

    cfg = settings.load()
    dbt = DbtTaskGroup(
        group_id="dbt",
        **warehouse.cosmos_task_group_args(cfg, exclude=[warehouse.AFTER_PREDICTIONS]),
    )

    @task(pool=warehouse.WAREHOUSE_POOL)
    def predict() -> dict[str, Any]:
        from orchestration.predictions import predict as run_model

        return run_model(settings.load())

    dbt_audiences = DbtTaskGroup(
        group_id="dbt_audiences",
        **warehouse.cosmos_task_group_args(cfg, select=[warehouse.AFTER_PREDICTIONS]),
    )

    @task(outlets=[assets.WAREHOUSE])
    def publish() -> dict[str, Any]:
        return warehouse.layer_counts(settings.load())

    chain = check_raw() >> publish_campaigns() >> load_dispatch() >> dbt >> predict()
    chain >> dbt_audiences >> publish()


warehouse_build()

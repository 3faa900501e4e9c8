"""Shared DAG policy (owner, retries) and the wiring of the three ``ingest_<source>`` DAGs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, dag, task

from orchestration import assets

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
}


def ingest_dag(source: str, doc_md: str | None) -> DAG:
    """An ingest DAG for one source: pull incrementally with dlt, publish the raw asset."""

    @dag(
        dag_id=f"ingest_{source}",
        schedule="@daily",
        start_date=datetime(2026, 1, 1),
        catchup=False,
        default_args=DEFAULT_ARGS,
        tags=["ingest", source],
        doc_md=doc_md,
        max_active_runs=1,
    )
    def ingest() -> None:
        @task(task_id=f"load_raw_{source}", pool="warehouse", outlets=[assets.RAW[source]])
        def load_raw() -> dict[str, Any]:
            from orchestration.connections import source_endpoint
            from orchestration.sources import ingest as run_ingest

            base_url, token = source_endpoint(source)
            return run_ingest(source, base_url=base_url, token=token)

        load_raw()

    return ingest()

"""Every DAG imports, touches no database or connection while parsing, and follows the policy."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from orchestration import settings, warehouse

EXPECTED_DAGS = {"ingest_shop", "ingest_pos", "ingest_social", "warehouse_build", "measurement"}


class _ForbiddenAtParseTime(AssertionError):
    pass


def _forbid(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise _ForbiddenAtParseTime(f"{what} while parsing DAG files")

    return refuse


@pytest.fixture(scope="module")
def dagbag() -> Iterator[Any]:
    """Parse dags/ with every way out of the process (databases, connections, network) refused."""
    from airflow.dag_processing.dagbag import DagBag

    cfg = settings.load()
    warehouse.ensure_manifest(cfg)  # what `make` does before Airflow sees the DAGs
    with pytest.MonkeyPatch.context() as patch:
        import duckdb
        import sqlalchemy.engine.base
        from airflow.sdk import BaseHook, Variable

        patch.setattr(duckdb, "connect", _forbid("duckdb.connect"))
        patch.setattr(sqlalchemy.engine.base.Connection, "__init__", _forbid("a SQL connection"))
        patch.setattr(BaseHook, "get_connection", _forbid("an Airflow connection lookup"))
        patch.setattr(Variable, "get", _forbid("an Airflow Variable lookup"))
        patch.setattr(socket.socket, "connect", _forbid("a network connection"))
        bag = DagBag(dag_folder=str(cfg.dags_dir))
    yield bag


def test_every_dag_file_imports_without_touching_the_outside(dagbag: Any) -> None:
    assert dagbag.import_errors == {}


def test_the_pipeline_dags_are_there(dagbag: Any) -> None:
    assert EXPECTED_DAGS <= set(dagbag.dag_ids)


def test_policy_owner_retries_tags_docs(dagbag: Any) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md, f"{dag_id} has no doc_md (the module docstring)"
        for task in dag.tasks:
            assert task.owner not in ("", "airflow"), f"{dag_id}.{task.task_id} has no owner"
            assert task.retries >= 1, f"{dag_id}.{task.task_id} never retries"


def test_every_task_that_writes_the_warehouse_holds_the_pool(dagbag: Any) -> None:
    writers = [
        task
        for dag in dagbag.dags.values()
        for task in dag.tasks
        if task.task_id.startswith("load_raw_")
        or task.task_id in ("check_raw", "predict")
        or task.task_id.startswith(("dbt.", "dbt_audiences."))
    ]
    assert writers
    for task in writers:
        assert task.pool == warehouse.WAREHOUSE_POOL, f"{task.dag_id}.{task.task_id}"


def test_assets_chain_ingest_to_warehouse(dagbag: Any) -> None:
    from orchestration import assets

    for source, asset in assets.RAW.items():
        producer = dagbag.dags[f"ingest_{source}"]
        outlets = [outlet for task in producer.tasks for outlet in task.outlets]
        assert asset in outlets
    build = dagbag.dags["warehouse_build"]
    assert set(build.timetable.asset_condition.objects) == set(assets.RAW.values())
    published = [outlet for task in build.tasks for outlet in task.outlets]
    assert assets.WAREHOUSE in published


def test_dbt_models_are_rendered_as_tasks(dagbag: Any) -> None:
    build = dagbag.dags["warehouse_build"]
    dbt_tasks = {task.task_id for task in build.tasks if task.task_id.startswith("dbt.")}
    for model in ("dim_customers", "int_customers_unified", "fct_orders"):
        assert any(model in task_id for task_id in dbt_tasks), model


def test_warehouse_build_loads_the_dispatch_ledger_before_dbt(dagbag: Any) -> None:
    """Every build reads the current contact history: the ledger is copied in before dbt."""
    build = dagbag.dags["warehouse_build"]
    load = build.get_task("load_dispatch")
    assert load.pool == warehouse.WAREHOUSE_POOL  # it writes the DuckDB file
    assert load.upstream_task_ids == {"publish_campaigns"}
    assert load.downstream_task_ids
    assert all(task_id.startswith("dbt.") for task_id in load.downstream_task_ids)
    history = {task.task_id for task in build.tasks if "fct_campaign_contacts" in task.task_id}
    assert history and history <= load.get_flat_relative_ids(upstream=False)


def test_predictions_run_between_the_marts_and_the_audiences(dagbag: Any) -> None:
    """`predict` needs the marts and the audiences need its scores: two dbt groups around it,
    which together hold every model once."""
    build = dagbag.dags["warehouse_build"]
    predict = build.get_task("predict")
    assert predict.pool == warehouse.WAREHOUSE_POOL
    before = {task.task_id for task in build.tasks if task.task_id.startswith("dbt.")}
    after = {task.task_id for task in build.tasks if task.task_id.startswith("dbt_audiences.")}
    upstream = predict.get_flat_relative_ids(upstream=True)
    downstream = predict.get_flat_relative_ids(upstream=False)
    for model in ("dim_customers", "fct_orders"):
        assert any(model in task_id and task_id in upstream for task_id in before), model
    for model in ("stg_predictions__customer_predictions", "int_campaign_eligibility"):
        assert any(model in task_id and task_id in downstream for task_id in after), model
    assert not any("int_campaign_eligibility" in task_id for task_id in before)
    # A test spanning both groups (an audience and dim_customers) does real work only in the
    # second: cosmos also lists it in the first, as a placeholder.
    spanning = "relationships_sync_email_audience_customer_id"
    (placeholder,) = [build.get_task(t) for t in before if spanning in t]
    (real,) = [build.get_task(t) for t in after if spanning in t]
    assert placeholder.task_type == "EmptyOperator"
    assert real.task_type != "EmptyOperator"
    assert any("sync_email_audience" in t for t in real.upstream_task_ids)
    assert not any(
        build.get_task(t).task_type == "EmptyOperator" for t in before if "relationships_dim" in t
    )

"""The dbt project as Airflow sees it, and read-only questions to the warehouse.

Cosmos renders the dbt project from its manifest (``dbt parse`` writes it), so parsing a DAG
runs no dbt command and opens no database. Every dbt task holds the one-slot ``warehouse``
pool: DuckDB has a single writer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestration.settings import Settings

WAREHOUSE_POOL = "warehouse"
# The models that read the predictive model's scores, and everything downstream of them (the
# audiences): warehouse_build runs dbt in two groups around the `predict` task, which needs the
# marts and writes predictions.customer_predictions (docs/decisions.md).
AFTER_PREDICTIONS = "stg_predictions__customer_predictions+"
PROFILE_NAME = "omni"
MANIFEST = Path("target") / "manifest.json"
# What the dbt manifest depends on: any change here means `dbt parse` again.
_PROJECT_INPUTS = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests", "seeds", "docs")


def dbt_env(cfg: Settings) -> dict[str, str]:
    """Environment dbt needs (profiles.yml reads OMNI_HOME)."""
    return {"OMNI_HOME": str(cfg.omni_home), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}


def manifest_path(cfg: Settings) -> Path:
    return cfg.dbt_project_dir / MANIFEST


def _newest_input(project_dir: Path) -> float:
    newest = 0.0
    for name in _PROJECT_INPUTS:
        path = project_dir / name
        if path.is_file():
            newest = max(newest, path.stat().st_mtime)
        elif path.is_dir():
            for child in path.rglob("*"):
                if child.is_file():
                    newest = max(newest, child.stat().st_mtime)
    return newest


def ensure_manifest(cfg: Settings) -> Path:
    """Run ``dbt parse`` when the manifest is missing or older than the project files."""
    manifest = manifest_path(cfg)
    if manifest.exists() and manifest.stat().st_mtime >= _newest_input(cfg.dbt_project_dir):
        return manifest
    dbt(cfg, "parse")
    return manifest


def dbt(cfg: Settings, *args: str) -> None:
    """Run one dbt command on the project (used outside Airflow: parse, bench, tests)."""
    executable = Path(sys.executable).with_name("dbt")
    project = str(cfg.dbt_project_dir)
    command = [str(executable), *args, "--project-dir", project, "--profiles-dir", project]
    cfg.omni_home.mkdir(parents=True, exist_ok=True)
    subprocess.run(command, check=True, env={**os.environ, **dbt_env(cfg)}, cwd=project)


def models_after_predictions(manifest: Path) -> frozenset[str]:
    """Unique ids of the nodes downstream of the predictions staging model (from the manifest)."""
    import json

    data = json.loads(manifest.read_text(encoding="utf-8"))
    root = AFTER_PREDICTIONS.rstrip("+")
    pending = [node_id for node_id, node in data["nodes"].items() if node.get("name") == root]
    found: set[str] = set()
    while pending:
        node_id = pending.pop()
        if node_id not in found:
            found.add(node_id)
            pending.extend(data["child_map"].get(node_id, []))
    return frozenset(found)


def _tests_run_later(later: frozenset[str], render_config: Any) -> Any:
    """A cosmos node converter for the tests of the first dbt group.

    Cosmos adds a test with several models to every group that holds one of them
    (``DbtGraph.update_node_dependency``): a relationships test from an audience to
    ``dim_customers`` would also run in the first group, before the audience exists (on the
    first build, "table does not exist"). There it becomes a placeholder that does nothing; its
    real task is in the second group, after both models. Other tests are rendered as usual.
    """
    from airflow.providers.standard.operators.empty import EmptyOperator
    from cosmos.airflow.graph import create_test_task_metadata
    from cosmos.core.airflow import get_airflow_task

    def convert(**kwargs: Any) -> Any:
        # kwargs["node"] is not the test (cosmos 1.15 passes the last model rendered): find
        # the test by its task id among the detached tests.
        task_id = kwargs["task_id"]
        candidates = [
            test
            for tests in kwargs["detached_from_parent"].values()
            for test in tests
            if f"{test.resource_name.split('.')[0]}_test" == task_id
        ]
        if not candidates:
            raise ValueError(f"no dbt test renders as task {task_id!r}")
        node = candidates[0]
        if later.isdisjoint(node.depends_on):
            metadata = create_test_task_metadata(
                kwargs["task_id"],
                kwargs["execution_mode"],
                kwargs["test_indirect_selection"],
                task_args=kwargs["task_args"],
                on_warning_callback=kwargs["on_warning_callback"],
                node=node,
                render_config=render_config,
                enable_owner_inheritance=kwargs["enable_owner_inheritance"],
            )
            return get_airflow_task(metadata, kwargs["dag"], kwargs["task_group"])
        return EmptyOperator(
            task_id=kwargs["task_id"],
            dag=kwargs["dag"],
            task_group=kwargs["task_group"],
            pool=WAREHOUSE_POOL,
            doc_md="Placeholder: this test runs in the `dbt_audiences` group, after its models.",
        )

    return convert


def cosmos_task_group_args(
    cfg: Settings, *, select: Sequence[str] = (), exclude: Sequence[str] = ()
) -> dict[str, Any]:
    """Arguments for ``cosmos.DbtTaskGroup``: one Airflow task per model (build = run + tests),
    for the models matching ``select`` (all when empty) and not ``exclude`` (dbt syntax).
    Excluding ``AFTER_PREDICTIONS`` also defers the tests that span both groups."""
    from cosmos import ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
    from cosmos.constants import (
        DbtResourceType,
        ExecutionMode,
        InvocationMode,
        LoadMode,
        TestBehavior,
        TestIndirectSelection,
    )

    manifest = manifest_path(cfg)
    if not manifest.exists():
        raise FileNotFoundError(
            f"dbt manifest not found at {manifest}: run `omni dbt parse` (make does it for you)"
        )
    render_config = RenderConfig(
        load_method=LoadMode.DBT_MANIFEST,
        select=list(select),
        exclude=list(exclude),
        test_behavior=TestBehavior.BUILD,
        # A test on two models (relationships) runs as its own task after both exist.
        should_detach_multiple_parents_tests=True,
        emit_datasets=False,
    )
    if AFTER_PREDICTIONS in exclude:
        later = models_after_predictions(manifest)
        render_config.node_converters = {
            DbtResourceType.TEST: _tests_run_later(later, render_config)
        }
    return {
        "project_config": ProjectConfig(
            dbt_project_path=cfg.dbt_project_dir,
            manifest_path=manifest,
            install_dbt_deps=False,
            env_vars=dbt_env(cfg),
        ),
        "profile_config": ProfileConfig(
            profile_name=PROFILE_NAME,
            target_name=cfg.dbt_target,
            profiles_yml_filepath=cfg.dbt_project_dir / "profiles.yml",
        ),
        "execution_config": ExecutionConfig(
            execution_mode=ExecutionMode.LOCAL,
            invocation_mode=InvocationMode.DBT_RUNNER,
            # `dbt build --select <model>` runs only the tests of that model alone; a test on
            # several models (relationships) is its own task, after all its models exist.
            test_indirect_selection=TestIndirectSelection.CAUTIOUS,
        ),
        "render_config": render_config,
        "operator_args": {"pool": WAREHOUSE_POOL, "install_deps": False},
    }


def connect_read_only(cfg: Settings) -> Any:
    """A read-only DuckDB connection to the warehouse (readers never block the writer's file)."""
    import duckdb

    return duckdb.connect(str(cfg.warehouse_path), read_only=True)


def layer_counts(cfg: Settings) -> dict[str, dict[str, int]]:
    """Rows per table, grouped by schema (raw_*, quarantine, staging, intermediate, marts...)."""
    with connect_read_only(cfg) as con:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_type in ('BASE TABLE', 'VIEW') "
            "and table_name not like '\\_dlt%' escape '\\' "
            "order by 1, 2"
        ).fetchall()
        counts: dict[str, dict[str, int]] = {}
        for schema, table in tables:
            row = con.execute(f'select count(*) from "{schema}"."{table}"').fetchone()
            counts.setdefault(schema, {})[table] = int(row[0]) if row else 0
    return counts


def _grouped(con: Any, sql: str) -> dict[str, int]:
    return {str(key): int(count) for key, count in con.execute(sql).fetchall()}


def demo_summary(cfg: Settings) -> dict[str, Any]:
    """What the demo prints: rows per layer, lifecycle stages, abandoned carts, identities."""
    counts = layer_counts(cfg)
    layers = {schema: sum(tables.values()) for schema, tables in counts.items()}
    with connect_read_only(cfg) as con:
        stages = _grouped(
            con,
            "select lifecycle_stage, count(*) from marts.dim_customers group by 1 order by 1",
        )
        carts = _grouped(
            con, "select outcome, count(*) from marts.fct_abandoned_carts group by 1 order by 1"
        )
        identity = con.execute(
            "select count(*), count(distinct customer_id) from intermediate.int_customers_unified"
        ).fetchone()
        quarantined = con.execute("select count(*) from quarantine.raw_rows").fetchone()
    source_identities, customers = (int(identity[0]), int(identity[1])) if identity else (0, 0)
    return {
        "rows_per_layer": layers,
        "lifecycle_stages": stages,
        "abandoned_carts": carts,
        "identities": {
            "source_identities": source_identities,
            "customers": customers,
            "merged": source_identities - customers,
        },
        "quarantined_rows": int(quarantined[0]) if quarantined else 0,
    }

"""The dbt project as Airflow sees it, and read-only questions to the warehouse.

Cosmos renders the dbt project from its manifest (``dbt parse`` writes it), so parsing a DAG
runs no dbt command and opens no database. Every dbt task holds the one-slot ``warehouse``
pool: DuckDB has a single writer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from orchestration.settings import Settings

WAREHOUSE_POOL = "warehouse"
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


def cosmos_task_group_args(cfg: Settings) -> dict[str, Any]:
    """Arguments for ``cosmos.DbtTaskGroup``: one Airflow task per model (build = run + tests)."""
    from cosmos import ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
    from cosmos.constants import (
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
        "render_config": RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            test_behavior=TestBehavior.BUILD,
            # A test on two models (relationships) runs as its own task after both exist.
            should_detach_multiple_parents_tests=True,
            emit_datasets=False,
        ),
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

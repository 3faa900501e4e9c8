"""The dbt project as Airflow sees it, the warehouse lock, and read-only questions.

Cosmos renders the dbt project from its manifest (``dbt parse`` writes it), so parsing a DAG
runs no dbt command and opens no database. Every dbt task holds the one-slot ``warehouse``
pool: DuckDB has a single writer.

**The warehouse lock** (``OMNI_HOME/warehouse.lock``, an advisory ``flock``). DuckDB lets no
other process open the file while one writes it, and a reader that opens it between two of a
build's models makes the build fail. So every writer (``omni dbt``, the ingest loads, the
quality gate, publishing the campaigns, loading the dispatch ledger, the Cosmos dbt tasks)
holds :func:`writing`, and the CLI readers (``omni report``, ``customer``, ``campaigns
preview``, ``dispatch run``) hold :func:`reading`. Readers share the lock; a writer has it
alone. Whoever has to wait says so on stderr (who holds it, since when) and waits up to
``OMNI_WAREHOUSE_LOCK_WAIT`` seconds (default 30 minutes), then fails with
:class:`WarehouseBusy` naming the holder; it never breaks the one that holds it. The kernel
drops the lock when its process ends, so a killed build leaves no stale lock.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

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


# dbt commands that never open the warehouse (everything else holds the writer lock).
_DBT_WITHOUT_WAREHOUSE = frozenset({"parse", "ls", "list", "deps", "clean", "--version", "-v"})


def dbt(cfg: Settings, *args: str) -> None:
    """Run one dbt command on the project (used outside Airflow: parse, bench, tests), under
    the warehouse writer lock unless the command never opens the warehouse."""
    executable = Path(sys.executable).with_name("dbt")
    project = str(cfg.dbt_project_dir)
    command = [str(executable), *args, "--project-dir", project, "--profiles-dir", project]
    cfg.omni_home.mkdir(parents=True, exist_ok=True)
    if args and args[0] in _DBT_WITHOUT_WAREHOUSE:
        subprocess.run(command, check=True, env={**os.environ, **dbt_env(cfg)}, cwd=project)
        return
    with writing(cfg, f"dbt {' '.join(args[:1])}".strip()):
        subprocess.run(command, check=True, env={**os.environ, **dbt_env(cfg)}, cwd=project)


# --- the warehouse lock ---------------------------------------------------------------------

LOCK_FILE = "warehouse.lock"
_POLL_SECONDS = 0.2
_REMIND_SECONDS = 30.0


class WarehouseBusy(RuntimeError):
    """The warehouse lock was not free in time; the message names who holds it."""


@dataclass
class _Held:
    fd: int
    exclusive: bool
    depth: int = 1


_HELD = threading.local()  # this thread's locks: {lock path: _Held}


def lock_path(cfg: Settings) -> Path:
    return cfg.omni_home / LOCK_FILE


def _held() -> dict[Path, _Held]:
    if not hasattr(_HELD, "locks"):
        _HELD.locks = {}
    return _HELD.locks


def holder(cfg: Settings) -> str:
    """Who holds the lock, in words (for messages): the writer, else 'readers'."""
    try:
        text = lock_path(cfg).read_text(encoding="utf-8").strip()
        info = json.loads(text) if text else None
    except (OSError, ValueError):
        info = None
    if not info:
        return "readers of the warehouse (omni report, customer, campaigns preview...)"
    return f"{info.get('what')} (pid {info.get('pid')}, writing since {info.get('since')})"


def _acquire(cfg: Settings, exclusive: bool, what: str, wait: float | None) -> Path:
    """Take the lock (re-entrant in a thread); wait with a message while someone else has it."""
    path = lock_path(cfg)
    held = _held().get(path)
    if held is not None:
        if exclusive and not held.exclusive:
            raise RuntimeError(f"{what}: cannot write the warehouse while this thread reads it")
        held.depth += 1
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    wait = cfg.warehouse_lock_wait_seconds if wait is None else wait
    started = time.monotonic()
    reminded = 0.0
    try:
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if waited >= wait:
                    raise WarehouseBusy(
                        f"{what}: the warehouse is still busy after {waited:.0f} s: "
                        f"{holder(cfg)}. Nothing was changed; try again when it has finished "
                        "(OMNI_WAREHOUSE_LOCK_WAIT sets how long to wait)"
                    ) from None
                if waited >= reminded:
                    print(
                        f"{what}: waiting for the warehouse: {holder(cfg)} "
                        f"(waited {waited:.0f} s of at most {wait:.0f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
                    reminded += _REMIND_SECONDS
                time.sleep(_POLL_SECONDS)
        if exclusive:
            since = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            record = json.dumps({"what": what, "pid": os.getpid(), "since": since})
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    _held()[path] = _Held(fd, exclusive)
    return path


def _release(path: Path) -> None:
    held = _held().get(path)
    if held is None:
        return
    held.depth -= 1
    if held.depth > 0:
        return
    del _held()[path]
    try:
        if held.exclusive:
            os.ftruncate(held.fd, 0)  # no writer any more (readers may follow)
        fcntl.flock(held.fd, fcntl.LOCK_UN)
    finally:
        os.close(held.fd)


@contextmanager
def writing(cfg: Settings, what: str, wait: float | None = None) -> Iterator[None]:
    """Hold the warehouse alone while writing it (``what``: who, for others' messages)."""
    path = _acquire(cfg, True, what, wait)
    try:
        yield
    finally:
        _release(path)


@contextmanager
def reading(cfg: Settings, what: str, wait: float | None = None) -> Iterator[None]:
    """Read the warehouse with no writer at work (other readers are welcome)."""
    path = _acquire(cfg, False, what, wait)
    try:
        yield
    finally:
        _release(path)


F = TypeVar("F", bound=Callable[..., Any])


def writes_warehouse(what: str) -> Callable[[F], F]:
    """Decorate a function that writes the warehouse: it runs under :func:`writing`, with the
    ``cfg`` it is given (keyword, or a positional ``Settings``) or the current settings."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def locked(*args: Any, **kwargs: Any) -> Any:
            cfg = kwargs.get("cfg")
            if cfg is None:
                cfg = next((arg for arg in args if isinstance(arg, Settings)), None)
            if cfg is None:
                from orchestration import settings

                cfg = settings.load()
            with writing(cfg, what):
                return function(*args, **kwargs)

        return locked  # type: ignore[return-value]

    return decorate


def _lock_for_task(context: Any) -> None:
    """Airflow ``pre_execute`` of the Cosmos dbt tasks: take the writer lock for the task
    (the task process holds it; it ends with the task, whatever happens)."""
    from orchestration import settings

    task = context.get("task") if hasattr(context, "get") else None
    what = f"Airflow task {getattr(task, 'task_id', 'dbt')}"
    cfg = settings.load()
    if lock_path(cfg) not in _held():  # a task that failed earlier in this process kept it
        _acquire(cfg, True, what, None)


def _unlock_after_task(context: Any, result: Any = None) -> None:
    """Airflow ``post_execute`` of the Cosmos dbt tasks: give the writer lock back."""
    from orchestration import settings

    path = lock_path(settings.load())
    while path in _held():
        _release(path)


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
        "operator_args": {
            "pool": WAREHOUSE_POOL,
            "install_deps": False,
            # the warehouse lock, so a CLI reader or writer waits instead of breaking the build
            "pre_execute": _lock_for_task,
            "post_execute": _unlock_after_task,
        },
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

"""Read-only access to warehouse tables that may or may not exist yet.

The measurement views read models owned by other stages (dispatch, measurement). A warehouse
built before those stages ran simply lacks them: :func:`find_table` says so instead of failing,
and the callers show "no contacts yet" / "no data yet".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestration.settings import Settings


class WarehouseUnavailable(RuntimeError):
    """The warehouse cannot be read now; the message says why and what to do."""


class WarehouseMissing(WarehouseUnavailable):
    """There is no warehouse file to read."""


def connect(cfg: Settings) -> Any:
    """A read-only DuckDB connection.

    DuckDB lets no other process open the file while one writes it (dbt during a build): that
    is reported as :class:`WarehouseUnavailable`, not as a traceback.
    """
    import duckdb

    if not cfg.warehouse_path.exists():
        raise WarehouseMissing(
            f"no warehouse at {cfg.warehouse_path}: run the pipeline first (`omni demo`)"
        )
    try:
        return duckdb.connect(str(cfg.warehouse_path), read_only=True)
    except duckdb.IOException as error:
        raise WarehouseUnavailable(
            f"cannot read the warehouse {cfg.warehouse_path} now ({error}); a writer such as a "
            "dbt build holds it: try again when it has finished"
        ) from error


def find_table(con: Any, name: str, prefer: Sequence[str] = ()) -> str | None:
    """``"schema"."name"`` of the table or view ``name``, or None when no schema holds it.

    The schemas in ``prefer`` win, in order; otherwise the alphabetically first schema holding
    it (the dbt schema of a model owned by another stage may still move).
    """
    found = {
        str(schema)
        for (schema,) in con.execute(
            "select table_schema from information_schema.tables where table_name = ?", [name]
        ).fetchall()
    }
    for schema in (*prefer, *sorted(found)):
        if schema in found:
            return f'"{schema}"."{name}"'
    return None


def columns(con: Any, qualified: str) -> list[str]:
    """Column names of a table, in order."""
    cursor = con.execute(f"select * from {qualified} limit 0")
    return [str(column[0]) for column in cursor.description]


def rows(con: Any, sql: str, parameters: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """The result of ``sql`` as dicts keyed by column name."""
    cursor = con.execute(sql, list(parameters))
    names = [str(column[0]) for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

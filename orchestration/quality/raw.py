"""Reading the raw tables dlt loaded, read-only, into pandas frames ready for validation.

Great Expectations validates pandas frames here, not DuckDB through a SQL datasource:
validating DuckDB through GX's SQL datasource returns no rows (an upstream bug), so each
table's new rows are read with a read-only connection and handed over as a dataframe.

The frame of a table holds, per row, ``_dlt_id``, the ``_dlt_load_id`` of its load (child
tables have none of their own: it is taken from the root row through ``_dlt_parent_id``),
``_dlt_parent_id`` for child tables, and every column a rule reads **as text**, merged with
dlt's variant columns: when a value cannot be coerced to a column's type (a non-ISO string
in a timestamp column), dlt stores it in ``<column>__v_text``; the frame puts it back in
``<column>`` so the rule sees it. Typed timestamps are rendered as ISO 8601 (``T``, ``Z``).
Columns with a numeric rule also get ``<column>__number`` (``try_cast`` to double).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import duckdb
import pandas as pd

from orchestration.quality.rules import TableRules

DLT_TABLE_PREFIX = "_dlt_"
NUMBER_SUFFIX = "__number"
VARIANT_MARKER = "__v_"


@dataclass(frozen=True)
class RawTable:
    """One raw table as it exists in the warehouse."""

    schema: str
    name: str
    columns: dict[str, str]  # column -> DuckDB type
    lineage: tuple[str, ...]  # ancestors, parent first, root last ((): a root table)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def is_child(self) -> bool:
        return bool(self.lineage)

    @property
    def depth(self) -> int:
        return len(self.lineage)

    def variants(self, column: str) -> list[str]:
        prefix = column + VARIANT_MARKER
        return [name for name in self.columns if name.startswith(prefix)]


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def schema_exists(con: duckdb.DuckDBPyConnection, schema: str) -> bool:
    row = con.execute(
        "select count(*) from information_schema.schemata where schema_name = ?", [schema]
    ).fetchone()
    return bool(row and row[0])


def list_tables(con: duckdb.DuckDBPyConnection, schema: str) -> dict[str, RawTable]:
    """The data tables of ``schema`` (dlt's own ``_dlt_*`` tables left out), by name."""
    rows = con.execute(
        """
        select table_name, column_name, data_type
        from information_schema.columns
        where table_schema = ?
        order by table_name, ordinal_position
        """,
        [schema],
    ).fetchall()
    columns: dict[str, dict[str, str]] = {}
    for table, column, data_type in rows:
        if not table.startswith(DLT_TABLE_PREFIX):
            columns.setdefault(table, {})[column] = str(data_type).upper()
    return {
        name: RawTable(schema, name, cols, _lineage(name, set(columns)))
        for name, cols in columns.items()
    }


def _lineage(name: str, tables: set[str]) -> tuple[str, ...]:
    """Ancestors of a child table, nearest first.

    ``locations__business_hours__periods`` is a list inside an object, so its parent is
    ``locations`` (the longest ``__`` prefix that is a table), not ``locations__business_hours``.
    """
    parts = name.split("__")
    for cut in range(len(parts) - 1, 0, -1):
        parent = "__".join(parts[:cut])
        if parent in tables:
            return (parent, *_lineage(parent, tables))
    return ()


def completed_loads(con: duckdb.DuckDBPyConnection, schema: str) -> list[str]:
    """Loads dlt finished (``_dlt_loads.status = 0``), oldest first."""
    exists = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? "
        "and table_name = '_dlt_loads'",
        [schema],
    ).fetchone()
    if not exists or not exists[0]:
        return []
    rows = con.execute(
        f"select distinct load_id from {quote(schema)}._dlt_loads where status = 0 order by 1"
    ).fetchall()
    return [str(row[0]) for row in rows]


def _text(table: RawTable, column: str, alias: str, is_timestamp: bool) -> str:
    """SQL for a column as text, merged with its variant columns."""
    parts: list[str] = []
    for name in (column, *table.variants(column)):
        ref = f"{alias}.{quote(name)}"
        data_type = table.columns[name]
        if is_timestamp and data_type.startswith("TIMESTAMP"):
            # Typed by dlt, hence valid: render as ISO 8601 in UTC.
            parts.append(f"replace(cast(cast({ref} as timestamp) as varchar), ' ', 'T') || 'Z'")
        else:
            parts.append(f"cast({ref} as varchar)")
    return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"


def is_text_column(table: RawTable, column: str) -> bool:
    """True when ``column`` (or one of its variants) holds text in the warehouse."""
    return any(table.columns[name] == "VARCHAR" for name in (column, *table.variants(column)))


def frame_sql(table: RawTable, rules: TableRules, load_ids: Sequence[str]) -> str:
    """The SELECT that reads the rows of ``load_ids`` of ``table`` into a validation frame."""
    numeric = {*rules.ranges, *rules.latitudes, *rules.longitudes}
    timestamps = set(rules.timestamps)
    selected = ["t._dlt_id"]
    joins: list[str] = []
    if "_dlt_load_id" in table.columns:
        load_ref = "t._dlt_load_id"
    else:
        child = "t"
        for level, ancestor in enumerate(table.lineage):
            alias = f"p{level}"
            joins.append(
                f"join {quote(table.schema)}.{quote(ancestor)} {alias} "
                f"on {child}._dlt_parent_id = {alias}._dlt_id"
            )
            child = alias
        load_ref = f"{child}._dlt_load_id"
    selected.append(f"{load_ref} as _dlt_load_id")
    if table.is_child:
        selected.append("t._dlt_parent_id")
    for column in sorted(rules.columns()):
        if column.startswith("_dlt_") or column not in table.columns:
            continue
        text = _text(table, column, "t", column in timestamps)
        selected.append(f"{text} as {quote(column)}")
        if column in numeric:
            selected.append(f"try_cast({text} as double) as {quote(column + NUMBER_SUFFIX)}")
    loads = ", ".join("'" + load_id.replace("'", "''") + "'" for load_id in load_ids) or "null"
    return (
        f"select {', '.join(selected)}\n"
        f"from {quote(table.schema)}.{quote(table.name)} t\n"
        + "".join(f"{join}\n" for join in joins)
        + f"where {load_ref} in ({loads})"
    )


def read_frame(
    con: duckdb.DuckDBPyConnection, table: RawTable, rules: TableRules, load_ids: Iterable[str]
) -> pd.DataFrame:
    """The rows of ``table`` loaded in ``load_ids``, shaped for validation (see module doc)."""
    return con.execute(frame_sql(table, rules, list(load_ids))).df()

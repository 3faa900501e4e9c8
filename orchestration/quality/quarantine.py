"""The quarantine schema: rows that broke a row-level rule, and the loads already checked.

``quarantine.raw_rows`` has one row per (raw row, rule broken, column): ``source``,
``table_name`` (the dlt table name, e.g. ``orders__line_items``), ``dlt_id`` (what staging
anti-joins on, with ``table_name``), ``load_id``, ``record_id`` (the record's own key, e.g.
the order id), ``rule``, ``details`` (column and offending value), ``record`` (the whole raw
row as JSON) and ``quarantined_at``. ``quarantine.checked_loads`` lists the dlt loads whose
validation passed, so a daily run validates only new loads.

Everything here runs in one short read-write transaction: DuckDB has a single writer and
the Airflow task holds the ``warehouse`` pool while it runs.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from orchestration.quality.raw import quote

SCHEMA = "quarantine"
RAW_ROWS_COLUMNS = ["source", "table_name", "dlt_id", "load_id", "record_id", "rule", "details"]
VALIDATED_COLUMNS = ["source", "table_name", "load_id"]
CHECKED_COLUMNS = ["source", "load_id", "rows_checked", "rows_quarantined"]

DDL = (
    f"create schema if not exists {SCHEMA}",
    f"""
    create table if not exists {SCHEMA}.raw_rows (
        source varchar not null,
        table_name varchar not null,
        dlt_id varchar not null,
        load_id varchar,
        record_id varchar,
        rule varchar not null,
        details varchar,
        record json,
        quarantined_at timestamp with time zone not null
    )
    """,
    f"""
    create table if not exists {SCHEMA}.checked_loads (
        source varchar not null,
        load_id varchar not null,
        rows_checked bigint not null,
        rows_quarantined bigint not null,
        checked_at timestamp with time zone not null
    )
    """,
)


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the quarantine schema and its tables (empty) if they do not exist."""
    for statement in DDL:
        con.execute(statement)


def checked_loads(con: duckdb.DuckDBPyConnection, source: str) -> set[str]:
    """Loads of ``source`` already validated (empty when the table does not exist yet)."""
    exists = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = ? and table_name = 'checked_loads'",
        [SCHEMA],
    ).fetchone()
    if not exists or not exists[0]:
        return set()
    rows = con.execute(
        f"select load_id from {SCHEMA}.checked_loads where source = ?", [source]
    ).fetchall()
    return {str(row[0]) for row in rows}


def write(
    warehouse: Path,
    validated: pd.DataFrame,
    quarantined: pd.DataFrame,
    checked: pd.DataFrame,
    raw_schemas: dict[str, str],
) -> int:
    """Replace the quarantine rows of the validated loads and record the passed loads.

    ``validated`` (``VALIDATED_COLUMNS``): every (source, table, load) validated in this run;
    their earlier quarantine rows are deleted first, so re-running the gate on the same
    loads never duplicates rows. ``quarantined`` (``RAW_ROWS_COLUMNS``): the new rows; the
    raw record is copied as JSON by a join on ``_dlt_id`` (one INSERT per table).
    ``checked`` (``CHECKED_COLUMNS``): loads to mark as checked. ``raw_schemas`` maps a
    source to its raw schema. Returns how many quarantine rows were inserted.
    """
    con = duckdb.connect(str(warehouse))
    try:
        ensure_tables(con)
        con.execute("begin transaction")
        con.register("validated_loads", validated[VALIDATED_COLUMNS])
        con.execute(
            f"""
            delete from {SCHEMA}.raw_rows
            where exists (
                select 1 from validated_loads
                where validated_loads.source = raw_rows.source
                    and validated_loads.table_name = raw_rows.table_name
                    and validated_loads.load_id = raw_rows.load_id
            )
            """
        )
        inserted = 0
        for (source, table), rows in quarantined.groupby(["source", "table_name"], sort=True):
            con.register("new_quarantine", rows[RAW_ROWS_COLUMNS])
            count = con.execute(
                f"""
                insert into {SCHEMA}.raw_rows
                select
                    failed.source, failed.table_name, failed.dlt_id, failed.load_id,
                    failed.record_id, failed.rule, failed.details,
                    to_json(raw_row), current_timestamp
                from new_quarantine as failed
                join {quote(raw_schemas[str(source)])}.{quote(str(table))} as raw_row
                    on raw_row._dlt_id = failed.dlt_id
                """
            ).fetchone()
            inserted += int(count[0]) if count else 0
            con.unregister("new_quarantine")
        if not checked.empty:
            con.register("passed_loads", checked[CHECKED_COLUMNS])
            con.execute(
                f"""
                insert into {SCHEMA}.checked_loads
                select source, load_id, rows_checked, rows_quarantined, current_timestamp
                from passed_loads
                where not exists (
                    select 1 from {SCHEMA}.checked_loads as done
                    where done.source = passed_loads.source
                        and done.load_id = passed_loads.load_id
                )
                """
            )
        con.execute("commit")
        return inserted
    finally:
        con.close()

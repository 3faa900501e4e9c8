"""Copy the dispatch ledger into the warehouse: DuckDB schema ``dispatch``, replaced on each load.

The ledger (SQLite or Postgres) is the system of record for contacts; the warehouse needs a
copy so that ``fct_campaign_contacts`` is the contact history the frequency cap, re-entry,
email blocks and measurement read. Three tables, each fully replaced (the ledger is small and
changes in place: a snapshot is simpler and safer than an incremental merge):

``dispatch.contacts``
    ``Ledger.export_warehouse_contacts`` (``WAREHOUSE_CONTACT_COLUMNS``).
``dispatch.holdouts``
    ``Ledger.export_holdouts`` (``HOLDOUT_COLUMNS``).
``dispatch.email_events``
    the SendGrid events (``orchestration.dispatch.email_events.export_email_events`` when that
    module exists, else the ledger database's ``email_events`` table read by name, else none).

All three are replaced in one DuckDB transaction with fixed column types, so an empty ledger
still gives typed, empty tables, and a failure leaves the previous copy whole. The DuckDB file
is closed before returning (dbt and the readers need it).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
from sqlalchemy import MetaData, Table, inspect, select

from orchestration.dispatch.ledger import Ledger
from orchestration.settings import Settings

log = logging.getLogger(__name__)

SCHEMA = "dispatch"
_TEXT, _TIME, _BOOL, _FLOAT, _INT = (
    pa.string(),
    pa.timestamp("us"),
    pa.bool_(),
    pa.float64(),
    pa.int64(),
)

CONTACTS_SCHEMA = pa.schema(
    [
        ("contact_id", _TEXT),
        ("campaign_id", _TEXT),
        ("customer_id", _TEXT),
        ("trigger_key", _TEXT),
        ("channel", _TEXT),
        ("status", _TEXT),
        ("contacted_at", _TIME),
        ("is_transactional", _BOOL),
        ("estimated_cost_eur", _FLOAT),
        ("state", _TEXT),
        ("offer_id", _TEXT),
        ("offer_code", _TEXT),
        ("amount_eur", _FLOAT),
        ("scheduled_send_at", _TIME),
        ("sent_at", _TIME),
        ("provider_message_id", _TEXT),
        ("attempts", _INT),
        ("last_error", _TEXT),
    ]
)

HOLDOUTS_SCHEMA = pa.schema(
    [
        ("campaign_id", _TEXT),
        ("customer_id", _TEXT),
        ("trigger_key", _TEXT),
        ("would_contact_at", _TIME),
        ("recorded_at", _TIME),
    ]
)

EMAIL_EVENTS_SCHEMA = pa.schema(
    [
        ("sg_event_id", _TEXT),
        ("event", _TEXT),
        ("email", _TEXT),
        ("occurred_at", _TIME),
        ("sg_message_id", _TEXT),
        ("dispatch_id", _TEXT),
        ("campaign_id", _TEXT),
        ("customer_id", _TEXT),
        ("reason", _TEXT),
        ("url", _TEXT),
        ("received_at", _TIME),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "contacts": CONTACTS_SCHEMA,
    "holdouts": HOLDOUTS_SCHEMA,
    "email_events": EMAIL_EVENTS_SCHEMA,
}


def load_dispatch(cfg: Settings) -> dict[str, int]:
    """Replace ``dispatch.contacts``, ``dispatch.holdouts`` and ``dispatch.email_events`` in
    the warehouse with the ledger's current content; return the rows loaded per table."""
    with Ledger.from_settings(cfg) as ledger:
        rows = {
            "contacts": ledger.export_warehouse_contacts(),
            "holdouts": ledger.export_holdouts(),
            "email_events": read_email_events(ledger),
        }
    tables = {name: to_arrow(rows[name], schema) for name, schema in TABLES.items()}
    replace_tables(cfg, tables)
    counts = {name: table.num_rows for name, table in tables.items()}
    log.info("Loaded the dispatch ledger into %s.%s: %s", cfg.warehouse_path, SCHEMA, counts)
    return counts


def read_email_events(ledger: Ledger) -> list[dict[str, Any]]:
    """The provider events: the email engineer's exporter when present, else the
    ``email_events`` table of the ledger database read by name, else no events yet."""
    exporter = _email_events_exporter()
    if exporter is not None:
        return exporter(ledger)
    if not inspect(ledger.engine).has_table("email_events"):
        return []
    table = Table("email_events", MetaData(), autoload_with=ledger.engine)
    wanted = [table.c[name] for name in EMAIL_EVENTS_SCHEMA.names if name in table.c]
    with ledger.engine.connect() as conn:
        return [dict(row) for row in conn.execute(select(*wanted)).mappings()]


def _email_events_exporter() -> Callable[[Ledger], list[dict[str, Any]]] | None:
    try:  # owned by the email channel; absent until that module exists
        email_events = importlib.import_module("orchestration.dispatch.email_events")
    except ModuleNotFoundError as missing:
        if missing.name != "orchestration.dispatch.email_events":
            raise  # the module exists but is broken: say so rather than load no events
        return None
    exporter = getattr(email_events, "export_email_events", None)
    return exporter if callable(exporter) else None


def to_arrow(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows as an Arrow table of exactly ``schema`` (missing keys null, timestamps naive
    UTC), so an empty list still has every column with its type."""
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    for row in rows:
        for field in schema:
            value = row.get(field.name)
            columns[field.name].append(_naive_utc(value) if field.type == _TIME else value)
    return pa.table(
        {field.name: pa.array(columns[field.name], type=field.type) for field in schema},
        schema=schema,
    )


def _naive_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise TypeError(f"not a timestamp: {value!r}")
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def replace_tables(cfg: Settings, tables: Mapping[str, pa.Table]) -> None:
    """Replace ``dispatch.<name>`` by each table, all in one transaction; close the file."""
    import duckdb

    from orchestration import warehouse

    cfg.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    with warehouse.writing(cfg, "loading the dispatch ledger"):
        _replace(duckdb.connect(str(cfg.warehouse_path)), tables)


def _replace(con: Any, tables: Mapping[str, pa.Table]) -> None:
    try:
        con.execute("begin transaction")
        try:
            con.execute(f"create schema if not exists {SCHEMA}")
            for name, table in tables.items():
                con.register("incoming_rows", table)
                con.execute(
                    f"create or replace table {SCHEMA}.{name} as select * from incoming_rows"
                )
                con.unregister("incoming_rows")
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    finally:
        con.close()


def main() -> None:
    """``python -m orchestration.dispatch.warehouse_load``: load once and print the counts."""
    from orchestration import settings

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(load_dispatch(settings.load()))


if __name__ == "__main__":
    main()


__all__ = [
    "CONTACTS_SCHEMA",
    "EMAIL_EVENTS_SCHEMA",
    "HOLDOUTS_SCHEMA",
    "TABLES",
    "load_dispatch",
    "read_email_events",
    "replace_tables",
    "to_arrow",
]

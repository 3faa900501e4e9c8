"""``load_dispatch``: the ledger (contacts, holdouts, email events) copied into DuckDB schema
``dispatch`` with fixed types, replaced on each load in one transaction, file closed after."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, insert

from orchestration import settings
from orchestration.dispatch import Ledger
from orchestration.dispatch.ledger import WAREHOUSE_CONTACT_COLUMNS
from orchestration.dispatch.warehouse_load import (
    CONTACTS_SCHEMA,
    EMAIL_EVENTS_SCHEMA,
    HOLDOUTS_SCHEMA,
    load_dispatch,
    replace_tables,
    to_arrow,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NAIVE_NOW = NOW.replace(tzinfo=None)
DUCKDB_TYPES = {"string": "VARCHAR", "timestamp[us]": "TIMESTAMP", "bool": "BOOLEAN"}
DUCKDB_TYPES |= {"double": "DOUBLE", "int64": "BIGINT"}


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> settings.Settings:
    monkeypatch.setenv("OMNI_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OMNI_LEDGER_URL", raising=False)
    return settings.load()


def query(cfg: settings.Settings, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def column_types(cfg: settings.Settings, table: str) -> list[tuple[str, str]]:
    return [
        (str(row[0]), str(row[1]))
        for row in query(cfg, f"describe dispatch.{table}")  # name, type, ...
    ]


def expected_types(schema: pa.Schema) -> list[tuple[str, str]]:
    return [(field.name, DUCKDB_TYPES[str(field.type)]) for field in schema]


def intent(index: int, channel: str = "email") -> dict[str, Any]:
    return {
        "campaign_id": "cmp_w",
        "customer_id": f"cus_{index:03d}",
        "trigger_key": f"trg_{index:03d}",
        "channel": channel,
        "offer_id": "cmp_w_offer",
        "offer_code": "SAVE10",
        "offer_value": 10.0,
        "scheduled_send_at": NOW - timedelta(minutes=5),
        "is_transactional": False,
        "estimated_cost_eur": 1.5,
    }


def create_email_events(ledger: Ledger, events: list[dict[str, Any]]) -> None:
    """The email engineer's table as the contract describes it (by name, in the ledger DB)."""
    table = Table(
        "email_events",
        MetaData(),
        Column("sg_event_id", Text, primary_key=True),
        *(Column(name, Text) for name in ("event", "email")),
        Column("occurred_at", DateTime),
        *(
            Column(name, String(200))
            for name in ("sg_message_id", "dispatch_id", "campaign_id", "customer_id")
        ),
        *(Column(name, Text) for name in ("reason", "url")),
        Column("received_at", DateTime),
    )
    table.create(ledger.engine, checkfirst=True)
    with ledger.engine.begin() as conn:
        conn.execute(insert(table), events)


def test_an_empty_ledger_loads_typed_empty_tables(cfg: settings.Settings) -> None:
    assert load_dispatch(cfg) == {"contacts": 0, "holdouts": 0, "email_events": 0}
    assert column_types(cfg, "contacts") == expected_types(CONTACTS_SCHEMA)
    assert column_types(cfg, "holdouts") == expected_types(HOLDOUTS_SCHEMA)
    assert column_types(cfg, "email_events") == expected_types(EMAIL_EVENTS_SCHEMA)
    assert [name for name, _ in column_types(cfg, "contacts")] == list(WAREHOUSE_CONTACT_COLUMNS)


def test_round_trip_and_each_load_replaces(cfg: settings.Settings) -> None:
    with Ledger.from_settings(cfg) as ledger:
        ledger.record_intents([intent(i) for i in range(4)], now=NOW)
        ledger.record_intents([intent(9, "loyalty_cashback")], now=NOW)
        held = {**intent(7), "campaign_id": "cmp_w"}
        ledger.record_holdouts([held], now=NOW)
        (first, second, *_) = ledger.claim("email", 10, now=NOW)
        ledger.mark_sent(first.contact_id, "msg-1", now=NOW + timedelta(seconds=2))
        ledger.mark_failed(second.contact_id, "400 bad address", retryable=False, now=NOW)
        create_email_events(
            ledger,
            [
                {
                    "sg_event_id": "ev1",
                    "event": "delivered",
                    "email": "a@example.test",
                    "occurred_at": NAIVE_NOW + timedelta(minutes=1),
                    "sg_message_id": "msg-1.0",
                    "dispatch_id": first.contact_id,
                    "campaign_id": "cmp_w",
                    "customer_id": first.customer_id,
                    "received_at": NAIVE_NOW + timedelta(minutes=2),
                }
            ],
        )
        expected_contacts = ledger.export_warehouse_contacts()
    assert load_dispatch(cfg) == {"contacts": 5, "holdouts": 1, "email_events": 1}

    loaded = query(cfg, "select * from dispatch.contacts order by contact_id")
    assert [dict(zip(WAREHOUSE_CONTACT_COLUMNS, row, strict=True)) for row in loaded] == (
        expected_contacts
    )
    by_id = {row[0]: row for row in loaded}
    sent = dict(zip(WAREHOUSE_CONTACT_COLUMNS, by_id[first.contact_id], strict=True))
    assert (sent["status"], sent["state"], sent["provider_message_id"]) == ("sent", "sent", "msg-1")
    assert sent["sent_at"] == sent["contacted_at"] == NAIVE_NOW + timedelta(seconds=2)
    assert (sent["amount_eur"], sent["attempts"]) == (10.0, 1)
    failed = dict(zip(WAREHOUSE_CONTACT_COLUMNS, by_id[second.contact_id], strict=True))
    assert (failed["status"], failed["last_error"]) == ("failed", "400 bad address")
    assert query(
        cfg, "select customer_id, trigger_key, would_contact_at from dispatch.holdouts"
    ) == [("cus_007", "trg_007", NAIVE_NOW - timedelta(minutes=5))]
    assert query(
        cfg, "select sg_event_id, event, dispatch_id, occurred_at from dispatch.email_events"
    ) == [("ev1", "delivered", first.contact_id, NAIVE_NOW + timedelta(minutes=1))]

    # a second load is a snapshot of the ledger now, not an append
    with Ledger.from_settings(cfg) as ledger:
        ledger.record_intents([intent(20)], now=NOW)
    assert load_dispatch(cfg)["contacts"] == 6
    assert query(cfg, "select count(*), count(distinct contact_id) from dispatch.contacts") == [
        (6, 6)
    ]


def test_the_warehouse_file_is_closed_after_the_load(cfg: settings.Settings) -> None:
    load_dispatch(cfg)
    # another process can take the single DuckDB write lock at once (dbt does next)
    script = "import duckdb, sys; duckdb.connect(sys.argv[1]).close()"
    result = subprocess.run(
        [sys.executable, "-c", script, str(cfg.warehouse_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_a_failed_load_keeps_the_previous_copy(cfg: settings.Settings) -> None:
    with Ledger.from_settings(cfg) as ledger:
        ledger.record_intents([intent(i) for i in range(3)], now=NOW)
    load_dispatch(cfg)
    empty = to_arrow([], CONTACTS_SCHEMA)
    with pytest.raises(duckdb.Error):
        # the first table is replaced, the second fails: the transaction rolls both back
        replace_tables(cfg, {"contacts": empty, "not a valid name": empty})
    assert query(cfg, "select count(*) from dispatch.contacts") == [(3,)]


def test_to_arrow_reads_iso_text_and_aware_times_as_naive_utc() -> None:
    table = to_arrow(
        [
            {"sg_event_id": "a", "occurred_at": "2026-03-02T10:00:00+01:00"},
            {"sg_event_id": "b", "occurred_at": NOW, "extra": "ignored"},
        ],
        EMAIL_EVENTS_SCHEMA,
    )
    assert table.column("occurred_at").to_pylist() == [NAIVE_NOW, NAIVE_NOW]
    assert table.schema == EMAIL_EVENTS_SCHEMA

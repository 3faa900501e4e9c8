"""The gate through the real chain: sandbox services -> dlt ingest -> check_raw.

The same small world is ingested twice: once clean, once with malformed records injected by
the services (``POST /_sandbox/faults``). The clean warehouse is the oracle: a raw row of the
damaged warehouse whose content has no twin in the clean one is a damaged record. The gate
must quarantine exactly those (plus the children of quarantined parents), pass the clean
data untouched, and stop with a readable summary when the damaged share is high.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
import requests

from orchestration import settings
from orchestration.quality import QualityGateFailed, check_raw
from orchestration.settings import Settings

SOURCES = ("shop", "pos", "social")
HIGH_MALFORMED_RATE = 0.25


@pytest.fixture(scope="module")
def urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    from orchestration.sandbox import services, world

    world_dir = tmp_path_factory.mktemp("quality-world") / "world"
    world.generate(world_dir, 300, 21, 5, end_date=date(2026, 11, 1))
    with services.running(world_dir, names=SOURCES) as running:
        yield dict(running)


def ingest_all(home: Path, urls: dict[str, str], malformed_rate: float) -> Settings:
    """A fresh warehouse in ``home`` with every source ingested at ``malformed_rate``."""
    from orchestration.sources import ingest

    base = settings.load()
    cfg = dataclasses.replace(base, omni_home=home, base_urls={**base.base_urls, **urls})
    for source in SOURCES:
        faults = f"{urls[source]}/_sandbox/faults"
        requests.delete(faults, timeout=10).raise_for_status()
        if malformed_rate:
            body = {"malformed_rate": malformed_rate, "seed": 13}
            requests.post(faults, json=body, timeout=10).raise_for_status()
        try:
            ingest(source, cfg=cfg)
        finally:
            requests.delete(faults, timeout=10).raise_for_status()
    return cfg


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, urls: dict[str, str]) -> Settings:
    return ingest_all(tmp_path_factory.mktemp("clean") / "omni", urls, 0.0)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory, urls: dict[str, str]) -> Settings:
    return ingest_all(tmp_path_factory.mktemp("damaged") / "omni", urls, HIGH_MALFORMED_RATE)


def _content(con: duckdb.DuckDBPyConnection, database: str, schema: str, table: str) -> str:
    """SQL: ``_dlt_id`` and a hash of a row's own columns (dlt bookkeeping left out)."""
    columns = [
        row[0]
        for row in con.execute(
            "select column_name from information_schema.columns where table_catalog = ? "
            "and table_schema = ? and table_name = ? and column_name not like '\\_dlt%' "
            "escape '\\' and column_name not like '%\\_\\_v\\_%' escape '\\' "
            "order by column_name",
            [database, schema, table],
        ).fetchall()
    ]
    values = ", ".join(f'cast("{column}" as varchar)' for column in columns)
    return (
        f"select _dlt_id, md5(cast(list_value({values}) as varchar)) as content "
        f'from {database}.{schema}."{table}"'
    )


def damaged_rows(clean: Settings, damaged: Settings) -> set[tuple[str, str]]:
    """(table, dlt_id) of damaged-warehouse rows whose content the clean load never had."""
    found: set[tuple[str, str]] = set()
    with duckdb.connect(str(damaged.warehouse_path), read_only=True) as con:
        con.execute(f"attach '{clean.warehouse_path}' as clean (read_only)")
        database = con.execute("select current_database()").fetchone()
        assert database is not None
        for source in SOURCES:
            schema = f"raw_{source}"
            tables = con.execute(
                "select table_name from information_schema.tables where table_catalog = ? "
                "and table_schema = ? and table_name not like '\\_dlt%' escape '\\'",
                [database[0], schema],
            ).fetchall()
            for (table,) in tables:
                rows = con.execute(
                    f"select damaged._dlt_id from ({_content(con, database[0], schema, table)}) "
                    f"damaged where damaged.content not in "
                    f"(select content from ({_content(con, 'clean', schema, table)}))"
                ).fetchall()
                found |= {(table, row[0]) for row in rows}
    return found


def quarantine_rows(cfg: Settings) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        return con.execute(
            "select source, table_name, dlt_id, rule, record::varchar from quarantine.raw_rows"
        ).fetchall()


def test_clean_data_passes_with_nothing_quarantined(clean: Settings) -> None:
    summary = check_raw(clean)
    assert summary["passed"] and summary["rows_checked"] > 2_000
    assert summary["quarantined_rows"] == 0 and quarantine_rows(clean) == []


def test_damaged_records_are_quarantined_and_the_gate_stops(
    clean: Settings, damaged: Settings
) -> None:
    with pytest.raises(QualityGateFailed) as failed:
        check_raw(damaged)
    message = str(failed.value)
    assert message.startswith("Raw data quality gate FAILED")
    assert "raw_shop.orders:" in message and "broke row-level rules" in message
    assert "lost_in_space" in message and "31/02/2026 25:00" in message

    rows = quarantine_rows(damaged)
    direct = {(table, dlt_id) for _, table, dlt_id, rule, _ in rows if rule != "parent_quarantined"}
    expected = damaged_rows(clean, damaged)
    assert len(expected) > 100
    assert direct == expected  # every damaged record, and no good one
    rules = {rule for *_, rule, _ in rows}
    assert {"missing_key", "invalid_timestamp", "out_of_range", "unknown_enum"} <= rules
    assert {"invalid_coordinate", "parent_quarantined"} <= rules
    for _, table, _, rule, record in rows:
        if rule == "unknown_enum":
            assert "lost_in_space" in record.lower(), (table, record)
        if rule == "invalid_timestamp":
            assert "31/02/2026 25:00" in record, (table, record)

    # an operator who accepts the damage re-runs with a looser tolerance: same quarantine
    # (only the sources that failed are validated again; their rows are replaced, not added)
    failed_sources = {
        source for source, report in failed.value.summary["sources"].items() if not report["passed"]
    }
    summary = check_raw(damaged, tolerance=1.0)
    assert summary["passed"]
    assert summary["quarantined_rows"] == sum(1 for row in rows if row[0] in failed_sources)
    assert sorted(quarantine_rows(damaged)) == sorted(rows)

"""The connectors against the sandbox: completeness, paging, incremental runs and faults."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest
import requests
from sources_probe import (
    RECORD_READERS,
    SHOP_ENDPOINTS,
    SOCIAL_EDGES,
    generate_world,
    point_at,
    raw_counts,
    set_faults,
    stats,
    table_counts,
)

from orchestration.settings import Settings
from orchestration.sources import SOURCES, IngestError, SourceAuthError, ingest, pos, shop, social
from orchestration.sources.http import HttpPolicy

# a paged path of each source and its page size, to check that paging happened
# a paged path of each source, its table and page size, to check that paging happened. The
# social world is small (a few dozen records per edge), so its pages are made smaller.
PAGED = {
    "shop": ("/admin/api/2024-07/orders.json", "orders", shop.PAGE_SIZE),
    "pos": ("/v2/customers/search", "customers", pos.PAGE_SIZE),
    "social": ("/v19.0/me/comments", "comments", 10),
}
# paths filtered on the server by the incremental cursor
ONE_PAGE_AFTER_A_DAY = {
    "shop": [f"/admin/api/2024-07/{path.split('?')[0]}" for path in SHOP_ENDPOINTS.values()],
    "pos": ["/v2/customers/search"],
    "social": [f"/v19.0/{edge}" for edge in SOCIAL_EDGES.values()],
}
# columns that identify one version of a top-level record, to find what an incremental run adds
VERSION = ("id", "updated_at")
CURSORS: dict[str, dict[str, tuple[str, ...]]] = {
    "shop": {name: VERSION for name in RECORD_READERS["shop"][1]},
    "pos": {
        "catalog_objects": VERSION,
        "orders": VERSION,
        "inventory_counts": ("location_id", "catalog_object_id", "calculated_at"),
        "customers": VERSION,
        "loyalty_accounts": VERSION,
    },
    "social": {name: ("id", "updated_time") for name in RECORD_READERS["social"][1]},
}


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_first_run_loads_every_record_and_pages(
    source: str,
    cfg: Settings,
    urls: dict[str, str],
    expected: dict[str, Counter[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, table, page_size = PAGED[source]
    if source == "social":
        monkeypatch.setattr(social, "PAGE_SIZE", page_size)
    result = ingest(source)

    loaded = raw_counts(cfg, SOURCES[source])
    assert loaded == dict(expected[source])
    assert result["rows"] == loaded
    assert result["dataset"] == SOURCES[source] and result["load_id"]

    counted = stats(urls[source])
    assert result["requests"] == counted["total"]
    assert loaded[table] > page_size, "the world is too small to exercise paging"
    pages = sum(counted["paths"][path].values())
    assert pages >= math.ceil(loaded[table] / page_size)


def test_raw_columns_keep_the_api_text(cfg: Settings) -> None:
    ingest("shop")
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        types = dict(
            con.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'raw_shop' and table_name = 'orders'"
            ).fetchall()
        )
    assert types["updated_at"] == "VARCHAR" and types["created_at"] == "VARCHAR"
    assert types["total_price"] == "VARCHAR"


def test_malformed_values_land_in_the_same_columns(cfg: Settings, urls: dict[str, str]) -> None:
    set_faults(urls["shop"], malformed_rate=0.2, seed=5)
    ingest("shop")
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        columns = con.execute(
            "select table_name, column_name, data_type from information_schema.columns "
            "where table_schema = 'raw_shop' and table_name not like '\\_dlt%' escape '\\'"
        ).fetchall()
        bad_timestamps = 0
        for table, column, data_type in columns:
            if column.endswith("_at"):
                assert data_type == "VARCHAR", (table, column)
                found = con.execute(
                    f'select count(*) from raw_shop."{table}" where "{column}" = ?',
                    ["31/02/2026 25:00"],
                ).fetchall()
                bad_timestamps += found[0][0]
        missing = con.execute("select count(*) from raw_shop.customers where id is null")
        missing_ids = missing.fetchall()[0][0]
    assert [(t, c) for t, c, _ in columns if "__v_" in c] == [], "no variant columns"
    assert bad_timestamps > 0, "a malformed timestamp should sit in its own text column"
    assert missing_ids > 0, "malformed records with a missing id should still be loaded"


Versions = dict[str, set[tuple[str, ...]]]


def _raw_versions(cfg: Settings, source: str) -> Versions:
    """The record versions already in the raw tables of ``source``."""
    versions: Versions = {}
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        for table, columns in CURSORS[source].items():
            select = ", ".join(f'cast("{column}" as varchar)' for column in columns)
            rows = con.execute(f"select {select} from {SOURCES[source]}.{table}").fetchall()
            versions[table] = {tuple(str(value) for value in row) for row in rows}
    return versions


def _new_rows(source: str, url: str, seen: Versions) -> Counter[str]:
    """Rows (children included) of the API records whose version is not loaded yet."""
    reader, _ = RECORD_READERS[source]
    counts: Counter[str] = Counter()
    for table, columns in CURSORS[source].items():
        fresh = [
            record
            for record in reader(url, table)
            if tuple(str(record.get(column)) for column in columns) not in seen[table]
        ]
        counts.update(table_counts(table, iter(fresh)))
    return counts


def test_second_run_fetches_only_what_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestration.sandbox import services, world

    world_dir = generate_world(tmp_path / "world", 1000, 20, 3)
    with services.running(world_dir, names=tuple(SOURCES)) as running:
        urls = dict(running)
        cfg = point_at(monkeypatch, tmp_path / "omni", urls)
        first = {source: ingest(source) for source in SOURCES}
        first_stats = {source: stats(urls[source]) for source in SOURCES}
        before = {source: raw_counts(cfg, SOURCES[source]) for source in SOURCES}
        seen = {source: _raw_versions(cfg, source) for source in SOURCES}

        world.advance(world_dir, 1)
        for url in urls.values():
            requests.post(f"{url}/_sandbox/reload", timeout=60).raise_for_status()
            requests.delete(f"{url}/_sandbox/stats", timeout=10).raise_for_status()
        wanted = {source: _new_rows(source, urls[source], seen[source]) for source in SOURCES}
        for url in urls.values():
            requests.delete(f"{url}/_sandbox/stats", timeout=10).raise_for_status()

        second = {source: ingest(source) for source in SOURCES}
        for source in SOURCES:
            after = raw_counts(cfg, SOURCES[source])
            delta = {t: after[t] - before[source].get(t, 0) for t in after if t != "locations"}
            delta = {t: n for t, n in delta.items() if n and not t.startswith("locations__")}
            assert delta == dict(wanted[source]), source
            assert sum(delta.values()) > 0, f"{source}: the advanced day changed nothing"
            counted = stats(urls[source])
            assert second[source]["requests"] == counted["total"]
            for path, answers in counted["paths"].items():
                first_pages = sum(first_stats[source]["paths"][path].values())
                assert sum(answers.values()) <= first_pages, path
            # filtered on the server: the day's changes fit in one page per search
            for path in ONE_PAGE_AFTER_A_DAY[source]:
                assert sum(counted["paths"][path].values()) == 1, path
        total_first = sum(result["requests"] for result in first.values())
        total_second = sum(result["requests"] for result in second.values())
        assert total_second < total_first * 0.75, (total_first, total_second)


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_wrong_token_fails_fast_with_a_clear_error(
    source: str, cfg: Settings, urls: dict[str, str]
) -> None:
    started = time.monotonic()
    with pytest.raises(SourceAuthError) as raised:
        ingest(source, token="not-the-token")
    message = str(raised.value)
    assert message.startswith(f"{source}: ") and "HTTP 401" in message
    assert f"at {urls[source]}/" in message
    assert "not-the-token" not in message
    counted = stats(urls[source])
    assert set(counted["by_status"]) == {"401"}
    assert counted["total"] == 1, "a 401 must not be retried"
    assert time.monotonic() - started < 30


def test_rate_limited_api_still_loads_everything(
    cfg: Settings, urls: dict[str, str], expected: dict[str, Counter[str]]
) -> None:
    set_faults(urls["social"], rate_limit_per_second=20)
    result = ingest("social")
    assert raw_counts(cfg, "raw_social") == dict(expected["social"])
    assert result["responses"].get("429", 0) > 0
    assert stats(urls["social"])["by_status"].get("429", 0) > 0


def test_server_errors_are_retried_until_everything_is_loaded(
    cfg: Settings, urls: dict[str, str], expected: dict[str, Counter[str]]
) -> None:
    set_faults(urls["pos"], error_rate=0.2, error_status=503, seed=7)
    fast = HttpPolicy(backoff_factor=0.05, max_retry_delay_s=0.5, max_attempts=8)
    result = ingest("pos", policy=fast)
    assert raw_counts(cfg, "raw_pos") == dict(expected["pos"])
    assert result["responses"].get("503", 0) > 0
    assert result["requests"] == stats(urls["pos"])["total"]


def test_slow_answers_time_out_with_a_clear_error(cfg: Settings, urls: dict[str, str]) -> None:
    set_faults(urls["social"], latency_ms=500)
    impatient = HttpPolicy(read_timeout_s=0.1, max_attempts=2, backoff_factor=0.01)
    with pytest.raises(IngestError, match=r"social: could not get an answer from http"):
        ingest("social", policy=impatient)
    set_faults(urls["social"], latency_ms=20)
    result = ingest("social", policy=impatient)
    assert result["total_rows"] > 0


def test_importing_the_package_loads_neither_dlt_nor_the_sources() -> None:
    code = (
        "import sys, orchestration.sources as s; "
        "assert set(s.SOURCES) == {'shop', 'pos', 'social'}; "
        "print(sorted(m for m in sys.modules if m == 'dlt' or m.startswith("
        "('dlt.', 'orchestration.sources.pipeline', 'duckdb'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_an_unknown_source_is_refused(cfg: Settings) -> None:
    with pytest.raises(ValueError, match="unknown source 'crm'"):
        ingest("crm")


def test_a_failed_run_leaves_nothing_behind_and_the_next_one_loads_everything(
    cfg: Settings, urls: dict[str, str], expected: dict[str, Counter[str]]
) -> None:
    # the first page passes, the next request within the second is refused and not retried
    set_faults(urls["shop"], rate_limit_per_second=1)
    no_retries = HttpPolicy(max_attempts=1)
    with pytest.raises(IngestError, match=r"shop: HTTP 429 at http"):
        ingest("shop", policy=no_retries)
    assert stats(urls["shop"])["by_status"].get("200", 0) > 0, "fail after some pages, not before"
    requests.delete(f"{urls['shop']}/_sandbox/faults", timeout=10).raise_for_status()
    ingest("shop")
    assert raw_counts(cfg, "raw_shop") == dict(expected["shop"])


def test_a_new_warehouse_gets_a_full_load_despite_the_local_dlt_state(
    cfg: Settings, expected: dict[str, Counter[str]]
) -> None:
    ingest("social")
    cfg.warehouse_path.unlink()  # the warehouse is rebuilt; $OMNI_HOME/dlt still has cursors
    result = ingest("social")
    assert raw_counts(cfg, "raw_social") == dict(expected["social"])
    assert result["rows"] == dict(expected["social"])


def test_lost_local_dlt_state_is_restored_from_the_warehouse(
    cfg: Settings, expected: dict[str, Counter[str]]
) -> None:
    ingest("social")
    shutil.rmtree(cfg.omni_home / "dlt")  # e.g. a fresh Airflow worker
    result = ingest("social")
    assert result["rows"] == {}, "the cursors come back from raw_social._dlt_pipeline_state"
    assert raw_counts(cfg, "raw_social") == dict(expected["social"])

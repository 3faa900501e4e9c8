"""An independent reader of the sandbox APIs, to know what the connectors should have loaded.

Plain ``requests`` (no dlt): it follows each API's paging to the end and counts the records
of every resource and, the way section 3 of the contract describes dlt's flattening, the
rows of every child table (a list inside a record becomes ``<parent>__<path>``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
import requests

from orchestration import settings
from orchestration.settings import SANDBOX_TOKENS, Settings

Record = dict[str, Any]
END_DATE = date(2026, 11, 1)

SHOP_ENDPOINTS = {
    "customers": "customers.json",
    "orders": "orders.json?status=any",
    "checkouts": "checkouts.json",
    "products": "products.json",
    "marketplace_listings": "marketplace_listings.json",
}
SOCIAL_EDGES = {
    "comments": "me/comments",
    "mentions": "me/mentions",
    "messages": "me/messages",
    "contacts": "me/contacts",
}


def _check(response: requests.Response) -> requests.Response:
    response.raise_for_status()
    return response


def shop_records(base_url: str, name: str) -> Iterator[Record]:
    session = requests.Session()
    session.headers["X-Shopify-Access-Token"] = SANDBOX_TOKENS["shop"]
    path = SHOP_ENDPOINTS[name]
    separator = "&" if "?" in path else "?"
    url: str | None = f"{base_url}/admin/api/2024-07/{path}{separator}limit=250"
    while url:
        response = _check(session.get(url, timeout=30))
        yield from response.json()[name]
        url = response.links.get("next", {}).get("url")


def social_records(base_url: str, name: str) -> Iterator[Record]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {SANDBOX_TOKENS['social']}"
    url: str | None = f"{base_url}/v19.0/{SOCIAL_EDGES[name]}?limit=100"
    while url:
        page = _check(session.get(url, timeout=30)).json()
        yield from page["data"]
        url = page.get("paging", {}).get("next")


def pos_records(base_url: str, name: str) -> Iterator[Record]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {SANDBOX_TOKENS['pos']}"
    if name == "locations":
        yield from _check(session.get(f"{base_url}/v2/locations", timeout=30)).json()["locations"]
        return
    if name == "catalog_objects":
        cursor: str | None = ""
        while cursor is not None:
            params = {"types": "ITEM_VARIATION", **({"cursor": cursor} if cursor else {})}
            page = _check(session.get(f"{base_url}/v2/catalog/list", params=params)).json()
            yield from page.get("objects", [])
            cursor = page.get("cursor")
        return
    path, key, body = {
        "orders": (
            "v2/orders/search",
            "orders",
            {"location_ids": [loc["id"] for loc in pos_records(base_url, "locations")]},
        ),
        "inventory_counts": ("v2/inventory/counts/batch-retrieve", "counts", {}),
        "customers": ("v2/customers/search", "customers", {}),
        "loyalty_accounts": ("v2/loyalty/accounts/search", "loyalty_accounts", {}),
    }[name]
    ids = body.get("location_ids")
    batches = [ids[i : i + 10] for i in range(0, len(ids), 10)] if ids else [None]
    for batch in batches:
        cursor = None
        while True:
            request: Record = {"limit": 100}
            if batch is not None:
                request["location_ids"] = batch
            if cursor:
                request["cursor"] = cursor
            page = _check(session.post(f"{base_url}/{path}", json=request, timeout=30)).json()
            yield from page.get(key, [])
            cursor = page.get("cursor")
            if not cursor:
                break


def _count_children(table: str, record: Record, counts: Counter[str]) -> None:
    for key, value in record.items():
        if isinstance(value, dict):
            _count_children(table, _prefixed(key, value), counts)
        elif isinstance(value, list) and value:
            child = f"{table}__{key}"
            counts[child] += len(value)
            for item in value:
                if isinstance(item, dict):
                    _count_children(child, item, counts)


def _prefixed(prefix: str, nested: Record) -> Record:
    """A nested object flattens into its parent row: ``a: {b: [...]}`` -> ``a__b``."""
    return {f"{prefix}__{key}": value for key, value in nested.items()}


def table_counts(table: str, records: Iterator[Record]) -> Counter[str]:
    """Rows per raw table that ``records`` of ``table`` should produce (children included)."""
    counts: Counter[str] = Counter()
    for record in records:
        counts[table] += 1
        _count_children(table, record, counts)
    return counts


POS_RESOURCES = (
    "locations",
    "catalog_objects",
    "orders",
    "inventory_counts",
    "customers",
    "loyalty_accounts",
)
# source -> (reader of one resource's records, resource names)
RECORD_READERS: dict[str, tuple[Callable[[str, str], Iterator[Record]], Iterable[str]]] = {
    "shop": (shop_records, tuple(SHOP_ENDPOINTS)),
    "social": (social_records, tuple(SOCIAL_EDGES)),
    "pos": (pos_records, POS_RESOURCES),
}


def api_counts(source: str, base_url: str) -> Counter[str]:
    """Rows per raw table a full load of ``source`` should produce."""
    reader, names = RECORD_READERS[source]
    counts: Counter[str] = Counter()
    for name in names:
        counts.update(table_counts(name, reader(base_url, name)))
    return counts


# --- sandbox and warehouse helpers -------------------------------------------------


def generate_world(path: Path, customers: int, days: int, seed: int) -> Path:
    from orchestration.sandbox import world

    world.generate(path, customers, days, seed, end_date=END_DATE)
    return path


def point_at(monkeypatch: pytest.MonkeyPatch, home: Path, urls: dict[str, str]) -> Settings:
    monkeypatch.setenv("OMNI_HOME", str(home))
    for name, url in urls.items():
        monkeypatch.setenv(f"OMNI_{name.upper()}_URL", url)
    return settings.load()


def reset(url: str) -> None:
    requests.delete(f"{url}/_sandbox/faults", timeout=10).raise_for_status()
    requests.delete(f"{url}/_sandbox/stats", timeout=10).raise_for_status()


def set_faults(url: str, **faults: Any) -> None:
    requests.post(f"{url}/_sandbox/faults", json=faults, timeout=10).raise_for_status()


def stats(url: str) -> dict[str, Any]:
    response = requests.get(f"{url}/_sandbox/stats", timeout=10)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def raw_counts(cfg: Settings, dataset: str) -> dict[str, int]:
    """Rows per table of ``dataset`` in the warehouse (dlt's own tables left out)."""
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        tables = [
            row[0]
            for row in con.execute(
                "select table_name from information_schema.tables "
                "where table_schema = ? and table_name not like '\\_dlt%' escape '\\'",
                [dataset],
            ).fetchall()
        ]
        counts = {}
        for table in tables:
            row = con.execute(f'select count(*) from {dataset}."{table}"').fetchone()
            assert row is not None
            counts[table] = int(row[0])
    return counts

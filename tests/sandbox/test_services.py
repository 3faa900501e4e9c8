"""The sandbox services against a small generated world, through real HTTP.

Expected numbers come from the world's parquet files (read here with DuckDB, independently of
the services): every collection must page through exactly the latest version of every
record, in update-time order, within the page-size caps, and the fault injection must do
what ``docs/sandbox-api.md`` promises.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import pytest
import requests

from orchestration.settings import SANDBOX_TOKENS

Record = dict[str, Any]
END_DATE = date(2026, 11, 1)
SHOP = "/admin/api/2024-07"
SHOP_HEADERS = {"X-Shopify-Access-Token": SANDBOX_TOKENS["shop"]}
POS_HEADERS = {"Authorization": f"Bearer {SANDBOX_TOKENS['pos']}"}
SOCIAL_HEADERS = {"Authorization": f"Bearer {SANDBOX_TOKENS['social']}"}


def generate(world_dir: Path, customers: int, days: int, seed: int) -> Path:
    from orchestration.sandbox import world

    world.generate(world_dir, customers, days, seed, end_date=END_DATE)
    return world_dir


# -- independent API readers --------------------------------------------------------------
def shop_pages(base: str, resource: str, **params: Any) -> Iterator[list[Record]]:
    session = requests.Session()
    url: str | None = f"{base}{SHOP}/{resource}.json"
    query: dict[str, Any] | None = {"limit": 250, **params}
    while url:
        response = session.get(url, headers=SHOP_HEADERS, params=query, timeout=30)
        response.raise_for_status()
        yield response.json()[resource]
        url, query = response.links.get("next", {}).get("url"), None


POS_SEARCHES = {
    "orders": ("/v2/orders/search", "orders"),
    "inventory": ("/v2/inventory/counts/batch-retrieve", "counts"),
    "customers": ("/v2/customers/search", "customers"),
    "loyalty": ("/v2/loyalty/accounts/search", "loyalty_accounts"),
}


def pos_pages(base: str, collection: str, **body: Any) -> Iterator[list[Record]]:
    session = requests.Session()
    if collection == "catalog":
        params: dict[str, Any] = {"types": "ITEM_VARIATION", **body}
        while True:
            response = session.get(
                f"{base}/v2/catalog/list", headers=POS_HEADERS, params=params, timeout=30
            )
            response.raise_for_status()
            payload = response.json()
            yield payload["objects"]
            if "cursor" not in payload:
                return
            params["cursor"] = payload["cursor"]
    path, key = POS_SEARCHES[collection]
    while True:
        response = session.post(f"{base}{path}", headers=POS_HEADERS, json=body, timeout=30)
        response.raise_for_status()
        payload = response.json()
        yield payload[key]
        if "cursor" not in payload:
            return
        body = {**body, "cursor": payload["cursor"]}


def social_pages(base: str, edge: str, **params: Any) -> Iterator[list[Record]]:
    session = requests.Session()
    url: str | None = f"{base}/v19.0/me/{edge}"
    query: dict[str, Any] | None = {"limit": 100, **params}
    while url:
        response = session.get(url, headers=SOCIAL_HEADERS, params=query, timeout=30)
        response.raise_for_status()
        payload = response.json()
        yield payload["data"]
        url, query = payload.get("paging", {}).get("next"), None


def records(pages: Iterator[list[Record]]) -> list[Record]:
    return [record for page in pages for record in page]


def stamp(text: str) -> datetime:
    """An API timestamp (``+00:00`` or Graph's ``+0000``) as an aware datetime."""
    return datetime.strptime(text.replace("+00:00", "+0000"), "%Y-%m-%dT%H:%M:%S%z")


# -- what the world says ------------------------------------------------------------------
def query(sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect() as con:
        return con.execute(sql).fetchall()


def latest_count(world_dir: Path, table: str, key: str, where: str = "") -> int:
    """Distinct ids of a world table whose latest version satisfies ``where``."""
    source = f"read_parquet('{world_dir / table}/*.parquet', filename = true)"
    has_updated = "updated_at" in {row[0] for row in query(f"DESCRIBE SELECT * FROM {source}")}
    order = "updated_at DESC, filename DESC" if has_updated else "filename DESC"
    sql = (
        f"SELECT count(*) FROM (SELECT * FROM {source} "
        f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {order}) = 1)"
        + (f" WHERE {where}" if where else "")
    )
    return int(query(sql)[0][0])


class Collection(NamedTuple):
    service: str
    collection: str
    cursor_field: str
    cap: int
    table: str  # the world table and its key, with the filter on the latest version
    key: str
    where: str = ""


COLLECTIONS = {
    "shop_customers": Collection(
        "shop", "customers", "updated_at", 250, "shop_customers", "shop_customer_id"
    ),
    "shop_orders": Collection("shop", "orders", "updated_at", 250, "web_orders", "order_id"),
    "shop_checkouts": Collection(
        "shop", "checkouts", "updated_at", 250, "checkouts", "checkout_id",
        "outcome <> 'completed'",
    ),
    "shop_products": Collection("shop", "products", "updated_at", 250, "products", "product_id"),
    "shop_listings": Collection(
        "shop", "marketplace_listings", "updated_at", 250, "marketplace_listings", "listing_id"
    ),
    "pos_catalog": Collection("pos", "catalog", "updated_at", 100, "products", "product_id"),
    "pos_orders": Collection("pos", "orders", "updated_at", 500, "store_sales", "pos_order_id"),
    "pos_inventory": Collection(
        "pos", "inventory", "calculated_at", 100, "inventory_levels", "store_id, product_id"
    ),
    "pos_customers": Collection(
        "pos", "customers", "updated_at", 100, "pos_customers", "pos_customer_id"
    ),
    "pos_loyalty": Collection(
        "pos", "loyalty", "updated_at", 100, "pos_customers", "pos_customer_id",
        "loyalty_account_id IS NOT NULL",
    ),
    "social_contacts": Collection(
        "social", "contacts", "updated_time", 100, "social_profiles", "social_user_id",
        "email IS NOT NULL OR phone IS NOT NULL",
    ),
    **{
        f"social_{edge}s": Collection(
            "social", f"{edge}s", "updated_time", 100, "social_activities", "activity_id",
            f"kind = '{edge}'",
        )
        for edge in ("comment", "mention", "message")
    },
}  # fmt: skip

READERS: dict[str, Callable[..., Iterator[list[Record]]]] = {
    "shop": shop_pages,
    "pos": pos_pages,
    "social": social_pages,
}


def read(urls: dict[str, str], name: str, **filters: Any) -> list[list[Record]]:
    spec = COLLECTIONS[name]
    limit = {"limit": 1000}  # over every cap: the server must cap it
    return list(READERS[spec.service](urls[spec.service], spec.collection, **limit, **filters))


def key_of(record: Record, cursor_field: str) -> tuple[datetime, int | str]:
    """The paging key: update time, then id (inventory counts: location and variation)."""
    if "calculated_at" in record:
        return stamp(record[cursor_field]), f"{record['location_id']}:{record['catalog_object_id']}"
    return stamp(record[cursor_field]), record["id"]


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("services") / "world", 500, 30, 5)


@pytest.fixture(scope="module")
def urls(world_dir: Path) -> Iterator[dict[str, str]]:
    from orchestration.sandbox import services

    with services.running(world_dir) as running:
        yield running


@pytest.fixture(autouse=True)
def clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that uses the shared services starts with no faults and zero counters."""
    if "urls" not in request.fixturenames:
        yield
        return
    urls = request.getfixturevalue("urls")
    for url in urls.values():
        requests.delete(f"{url}/_sandbox/faults", timeout=10).raise_for_status()
        requests.delete(f"{url}/_sandbox/stats", timeout=10).raise_for_status()
    yield
    for url in urls.values():
        requests.delete(f"{url}/_sandbox/faults", timeout=10).raise_for_status()


def set_faults(url: str, **faults: Any) -> None:
    requests.post(f"{url}/_sandbox/faults", json=faults, timeout=10).raise_for_status()


# -- paging, ordering, caps ---------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(COLLECTIONS))
def test_collection_pages_through_every_latest_record_in_order(
    name: str, urls: dict[str, str], world_dir: Path
) -> None:
    spec = COLLECTIONS[name]
    pages = read(urls, name)
    served = [record for page in pages for record in page]
    expected = latest_count(world_dir, spec.table, spec.key, spec.where)
    assert expected > 0, f"the test world has no {spec.table}"
    assert len(served) == expected
    keys = [key_of(record, spec.cursor_field) for record in served]
    assert len(set(keys)) == len(keys), "a record was served twice"
    assert keys == sorted(keys), "not ordered by update time, then id"
    assert all(len(page) <= spec.cap for page in pages)
    if expected > spec.cap:
        assert len(pages[0]) == spec.cap, "a full first page is as large as the cap"


def test_pos_locations_list_every_store(urls: dict[str, str], world_dir: Path) -> None:
    response = requests.get(f"{urls['pos']}/v2/locations", headers=POS_HEADERS, timeout=10)
    locations = response.json()["locations"]
    assert len(locations) == latest_count(world_dir, "stores", "store_id")
    for location in locations:
        periods = location["business_hours"]["periods"]
        assert {period["day_of_week"] for period in periods} <= {
            "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN",
        }  # fmt: skip
        assert all(len(period["start_local_time"]) == 8 for period in periods)


def test_default_page_sizes(urls: dict[str, str]) -> None:
    shop = requests.get(f"{urls['shop']}{SHOP}/customers.json", headers=SHOP_HEADERS, timeout=10)
    assert len(shop.json()["customers"]) == 50
    social = requests.get(f"{urls['social']}/v19.0/me/contacts", headers=SOCIAL_HEADERS, timeout=10)
    assert len(social.json()["data"]) <= 25


# -- update-time filters ------------------------------------------------------------------
def _middle(records_: list[Record], field: str) -> datetime:
    stamps = sorted(stamp(record[field]) for record in records_)
    return stamps[len(stamps) // 2]


@pytest.mark.parametrize(
    ("name", "make_filter"),
    [
        ("shop_orders", lambda t: {"updated_at_min": t.isoformat()}),
        ("shop_customers", lambda t: {"updated_at_min": t.isoformat()}),
        (
            "pos_orders",
            lambda t: {
                "query": {
                    "filter": {"date_time_filter": {"updated_at": {"start_at": t.isoformat()}}},
                    "sort": {"sort_field": "UPDATED_AT", "sort_order": "ASC"},
                }
            },
        ),
        (
            "pos_customers",
            lambda t: {"query": {"filter": {"updated_at": {"start_at": t.isoformat()}}}},
        ),
        ("pos_inventory", lambda t: {"updated_after": t.isoformat()}),
        ("social_comments", lambda t: {"since": int(t.timestamp())}),
        ("social_contacts", lambda t: {"since": int(t.timestamp())}),
    ],
)
def test_update_time_filter_returns_only_rows_at_or_after_it(
    name: str, make_filter: Callable[[datetime], dict[str, Any]], urls: dict[str, str]
) -> None:
    cursor_field = COLLECTIONS[name].cursor_field
    everything = [record for page in read(urls, name) for record in page]
    middle = _middle(everything, cursor_field)
    newer = [record for page in read(urls, name, **make_filter(middle)) for record in page]
    wanted = [record for record in everything if stamp(record[cursor_field]) >= middle]
    assert 0 < len(newer) < len(everything)
    assert newer == wanted


def test_shop_page_info_keeps_the_filter_of_the_first_request(urls: dict[str, str]) -> None:
    everything = records(shop_pages(urls["shop"], "orders"))
    middle = _middle(everything, "updated_at")
    pages = list(shop_pages(urls["shop"], "orders", limit=7, updated_at_min=middle.isoformat()))
    assert len(pages) > 1
    served = [record for page in pages for record in page]
    assert all(stamp(record["updated_at"]) >= middle for record in served)
    assert len(served) == sum(stamp(r["updated_at"]) >= middle for r in everything)


def test_bad_parameters_are_400_with_the_api_error_shape(urls: dict[str, str]) -> None:
    shop = requests.get(
        f"{urls['shop']}{SHOP}/orders.json",
        headers=SHOP_HEADERS,
        params={"updated_at_min": "yesterday"},
        timeout=10,
    )
    assert shop.status_code == 400 and "errors" in shop.json()
    pos = requests.post(
        f"{urls['pos']}/v2/orders/search", headers=POS_HEADERS, json={"cursor": "nope"}, timeout=10
    )
    assert pos.status_code == 400
    assert pos.json()["errors"][0]["category"] == "INVALID_REQUEST_ERROR"
    too_many = {"location_ids": [f"L{number:04d}" for number in range(11)]}
    answer = requests.post(
        f"{urls['pos']}/v2/orders/search", headers=POS_HEADERS, json=too_many, timeout=10
    )
    assert answer.status_code == 400
    # a POS cursor (string ids) is not a shop page_info (integer ids)
    pos_cursor = requests.post(
        f"{urls['pos']}/v2/customers/search", headers=POS_HEADERS, json={"limit": 1}, timeout=10
    ).json()["cursor"]
    mixed = requests.get(
        f"{urls['shop']}{SHOP}/customers.json",
        headers=SHOP_HEADERS,
        params={"page_info": pos_cursor},
        timeout=10,
    )
    assert mixed.status_code == 400


# -- shapes -------------------------------------------------------------------------------------
def test_json_shapes_follow_the_real_apis(urls: dict[str, str], world_dir: Path) -> None:
    order = records(shop_pages(urls["shop"], "orders"))[0]
    (world_order,) = query(
        f"SELECT total, order_number FROM read_parquet('{world_dir}/web_orders/*.parquet') "
        f"WHERE order_id = {int(order['id'])} ORDER BY updated_at DESC LIMIT 1"
    )
    assert order["total_price"] == f"{world_order[0]:.2f}"  # Shopify money: strings
    assert order["name"] == f"#{world_order[1]}"
    assert order["created_at"].endswith("+00:00")
    assert all(isinstance(item["price"], str) for item in order["line_items"])

    sale = records(pos_pages(urls["pos"], "orders"))[0]
    (world_sale,) = query(
        f"SELECT total FROM read_parquet('{world_dir}/store_sales/*.parquet') "
        f"WHERE pos_order_id = '{sale['id']}' ORDER BY updated_at DESC LIMIT 1"
    )
    assert sale["total_money"] == {"amount": round(world_sale[0] * 100), "currency": "EUR"}
    assert all(isinstance(item["quantity"], str) for item in sale["line_items"])

    comment = records(social_pages(urls["social"], "comments"))[0]
    assert comment["created_time"].endswith("+0000")
    assert set(comment["from"]) == {"id", "username"}


# -- auth ----------------------------------------------------------------------------------------
AUTH_CASES = [
    ("shop", "get", f"{SHOP}/orders.json", "X-Shopify-Access-Token", "{token}"),
    ("pos", "post", "/v2/customers/search", "Authorization", "Bearer {token}"),
    ("social", "get", "/v19.0/me/comments", "Authorization", "Bearer {token}"),
]


@pytest.mark.parametrize(("service", "method", "path", "header", "template"), AUTH_CASES)
def test_missing_or_wrong_auth_is_401_with_a_json_error(
    service: str, method: str, path: str, header: str, template: str, urls: dict[str, str]
) -> None:
    url = f"{urls[service]}{path}"
    for headers in ({}, {header: template.format(token="wrong-token")}):
        response = requests.request(method, url, headers=headers, json={}, timeout=10)
        assert response.status_code == 401
        body = response.json()
        assert "errors" in body or "error" in body
    good = {header: template.format(token=SANDBOX_TOKENS[service])}
    assert requests.request(method, url, headers=good, json={}, timeout=10).status_code == 200


def test_graph_accepts_the_access_token_parameter(urls: dict[str, str]) -> None:
    url = f"{urls['social']}/v19.0/me/mentions"
    good = requests.get(url, params={"access_token": SANDBOX_TOKENS["social"]}, timeout=10)
    bad = requests.get(url, params={"access_token": "nope"}, timeout=10)
    assert (good.status_code, bad.status_code) == (200, 401)
    assert bad.json()["error"]["code"] == 190


# -- faults --------------------------------------------------------------------------------------
def _statuses(url: str, n: int) -> list[int]:
    session = requests.Session()
    return [
        session.get(f"{url}{SHOP}/products.json", headers=SHOP_HEADERS, timeout=10).status_code
        for _ in range(n)
    ]


def test_rate_limit_answers_429_with_retry_after(urls: dict[str, str]) -> None:
    set_faults(urls["shop"], rate_limit_per_second=1)
    session = requests.Session()
    started = time.monotonic()
    answers = [
        session.get(f"{urls['shop']}{SHOP}/products.json", headers=SHOP_HEADERS, timeout=10)
        for _ in range(8)
    ]
    elapsed = time.monotonic() - started
    limited = [answer for answer in answers if answer.status_code == 429]
    assert answers[0].status_code == 200
    # one request per second gets through: 1 now, 1 more per elapsed second
    assert len(answers) - len(limited) <= 1 + int(elapsed) + 1
    assert len(limited) >= 3
    assert all(int(answer.headers["Retry-After"]) >= 1 for answer in limited)
    assert "errors" in limited[0].json()
    time.sleep(1.2)  # the bucket refills
    assert _statuses(urls["shop"], 1) == [200]


def test_injected_errors_follow_the_rate_and_the_seed(urls: dict[str, str]) -> None:
    set_faults(urls["shop"], error_rate=0.25, error_status=503, seed=3)
    first = _statuses(urls["shop"], 200)
    failed = first.count(503)
    assert set(first) == {200, 503}
    assert 30 <= failed <= 70  # 50 expected
    set_faults(urls["shop"], error_rate=0.25, error_status=503, seed=3)  # restarts the count
    assert _statuses(urls["shop"], 200) == first
    set_faults(urls["shop"], seed=4)
    assert _statuses(urls["shop"], 200) != first


def test_injected_latency_slows_every_answer(urls: dict[str, str]) -> None:
    url = f"{urls['social']}/v19.0/me/comments"
    set_faults(urls["social"], latency_ms=600)
    started = time.perf_counter()
    requests.get(url, headers=SOCIAL_HEADERS, timeout=10)
    slow = time.perf_counter() - started
    requests.delete(f"{urls['social']}/_sandbox/faults", timeout=10)
    started = time.perf_counter()
    requests.get(url, headers=SOCIAL_HEADERS, timeout=10)
    fast = time.perf_counter() - started
    assert slow >= 0.6 > fast


def _damage(record: Record, original: Record) -> str | None:
    """Which contract damage a served record shows compared with the clean one (or None)."""
    if record == original:
        return None
    if "id" not in record:
        return "missing_id"
    if record.get("created_at") == "31/02/2026 25:00":
        return "bad_timestamp"
    text = json.dumps(record)
    if "lost_in_space" in text:
        return "unknown_enum"
    if '"latitude": 999' in text:
        return "bad_latitude"
    return "negative"


def test_malformed_records_appear_at_the_rate_and_keep_the_cursor_field(
    urls: dict[str, str],
) -> None:
    clean_records = records(shop_pages(urls["shop"], "orders"))
    clean_by_key = {(r["updated_at"], r["id"]): r for r in clean_records}
    set_faults(urls["shop"], malformed_rate=0.2, seed=11)
    damaged_records = records(shop_pages(urls["shop"], "orders"))
    assert len(damaged_records) == len(clean_records)  # paging is not affected
    damages = Counter()
    for clean, served in zip(clean_records, damaged_records, strict=True):
        assert served["updated_at"] == clean["updated_at"], "the cursor field is never damaged"
        damages[_damage(served, clean)] += 1
    rate = 1 - damages.pop(None, 0) / len(clean_records)
    assert 0.12 <= rate <= 0.28
    assert {"missing_id", "bad_timestamp", "unknown_enum", "negative"} <= set(damages)
    # Deterministic: the same records are damaged the same way on a second pass.
    assert records(shop_pages(urls["shop"], "orders")) == damaged_records
    assert len(clean_by_key) == len(clean_records)


def test_malformed_records_in_pos_and_social_never_touch_their_cursor_fields(
    urls: dict[str, str],
) -> None:
    for service, collection, field in [
        ("pos", "orders", "updated_at"),
        ("pos", "inventory", "calculated_at"),
        ("social", "messages", "updated_time"),
    ]:
        clean_records = records(READERS[service](urls[service], collection))
        set_faults(urls[service], malformed_rate=0.5, seed=2)
        served = records(READERS[service](urls[service], collection))
        requests.delete(f"{urls[service]}/_sandbox/faults", timeout=10)
        changed = sum(a != b for a, b in zip(clean_records, served, strict=True))
        assert 0.3 * len(served) <= changed <= 0.7 * len(served), collection
        assert [r[field] for r in served] == [r[field] for r in clean_records]


def test_fault_settings_are_validated(urls: dict[str, str]) -> None:
    for bad in ({"error_rate": 2}, {"nonsense": 1}, {"latency_ms": "slow"}):
        answer = requests.post(f"{urls['pos']}/_sandbox/faults", json=bad, timeout=10)
        assert answer.status_code == 400, bad
    answer = requests.post(f"{urls['pos']}/_sandbox/faults", json={"latency_ms": 5}, timeout=10)
    assert answer.json()["faults"]["latency_ms"] == 5
    answer = requests.delete(f"{urls['pos']}/_sandbox/faults", timeout=10)
    assert answer.json()["faults"]["latency_ms"] == 0


# -- stats -------------------------------------------------------------------------------------
def test_stats_count_requests_per_path_and_status(urls: dict[str, str]) -> None:
    base = urls["shop"]
    for _ in range(3):
        requests.get(f"{base}{SHOP}/orders.json", headers=SHOP_HEADERS, timeout=10)
    requests.get(f"{base}{SHOP}/orders.json", timeout=10)
    requests.get(f"{base}{SHOP}/customers.json", headers=SHOP_HEADERS, timeout=10)
    requests.get(f"{base}/_sandbox/health", timeout=10)
    stats = requests.get(f"{base}/_sandbox/stats", timeout=10).json()
    assert stats["paths"] == {
        f"{SHOP}/orders.json": {"200": 3, "401": 1},
        f"{SHOP}/customers.json": {"200": 1},
    }
    assert stats["total"] == 5
    assert stats["by_status"] == {"200": 4, "401": 1}


def test_health_describes_the_loaded_world(urls: dict[str, str], world_dir: Path) -> None:
    for name, url in urls.items():
        health = requests.get(f"{url}/_sandbox/health", timeout=10).json()
        assert health["status"] == "ok" and health["service"] == name
        assert health["world_dir"] == str(world_dir)
        assert health["world"]["customers"] == 500


# -- bulk export -------------------------------------------------------------------------------
def test_bulk_files_hold_what_the_api_serves(urls: dict[str, str], world_dir: Path) -> None:
    from orchestration.sandbox import services

    exported = services.export_bulk(world_dir)
    for resource in ("customers", "orders", "checkouts", "products", "marketplace_listings"):
        path = world_dir / "bulk" / f"shop_{resource}.jsonl"
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert lines == records(shop_pages(urls["shop"], resource)), resource
        assert exported[resource]["object_count"] == len(lines)


def test_bulk_operation_endpoint_streams_jsonl(urls: dict[str, str]) -> None:
    answer = requests.post(
        f"{urls['shop']}{SHOP}/bulk_operations.json",
        headers=SHOP_HEADERS,
        json={"resource": "orders"},
        timeout=60,
    )
    operation = answer.json()["bulk_operation"]
    assert operation["status"] == "COMPLETED"
    download = requests.get(operation["url"], timeout=60)
    lines = [json.loads(line) for line in download.text.splitlines()]
    assert len(lines) == operation["object_count"]
    assert lines == records(shop_pages(urls["shop"], "orders"))
    refused = requests.post(
        f"{urls['shop']}{SHOP}/bulk_operations.json", json={"resource": "orders"}, timeout=10
    )
    assert refused.status_code == 401


# -- reload after the world moves on -------------------------------------------------------------
def test_reload_serves_what_advance_added(tmp_path: Path) -> None:
    from orchestration.sandbox import services, world

    world_dir = generate(tmp_path / "world", 300, 10, 9)
    with services.running(world_dir, names=("shop", "pos")) as running:
        before = records(shop_pages(running["shop"], "orders"))
        latest = max(stamp(record["updated_at"]) for record in before)
        sales_before = len(records(pos_pages(running["pos"], "orders")))

        world.advance(world_dir, 2)
        assert records(shop_pages(running["shop"], "orders")) == before  # not reloaded yet
        answer = requests.post(f"{running['shop']}/_sandbox/reload", timeout=120).json()
        assert answer["reloaded"] is True
        again = requests.post(f"{running['pos']}/_sandbox/reload", timeout=120).json()
        assert again["reloaded"] is False  # one world behind both services, already fresh

        after = records(shop_pages(running["shop"], "orders"))
        after_latest = (latest + timedelta(seconds=1)).isoformat()
        newer = records(shop_pages(running["shop"], "orders", updated_at_min=after_latest))
        assert len(after) >= len(before) and newer
        assert all(stamp(record["updated_at"]) > latest for record in newer)
        assert {r["id"] for r in after} == {r["id"] for r in before} | {r["id"] for r in newer}
        assert len(records(pos_pages(running["pos"], "orders"))) > sales_before
        health = requests.get(f"{running['shop']}/_sandbox/health", timeout=10).json()
        assert health["world"]["parts"] == 2


def test_end_of_world_clock_is_utc(urls: dict[str, str]) -> None:
    everything = records(shop_pages(urls["shop"], "orders"))
    last = max(stamp(record["updated_at"]) for record in everything)
    assert last <= datetime(END_DATE.year, END_DATE.month, END_DATE.day, 23, 59, 59, tzinfo=UTC)

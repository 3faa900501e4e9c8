"""The sandbox loyalty API: idempotent cashback credits, balances, members, reconciliation."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
import requests

from orchestration.sandbox import services
from orchestration.settings import SANDBOX_TOKENS

HEADERS = {"Authorization": f"Bearer {SANDBOX_TOKENS['loyalty']}"}
MEMBER = "LA00001234"
BODY = {
    "amount_eur": 5,
    "offer_id": "cart_recovery:5eur",
    "valid_in": "store_only",
    "expires_at": "2099-12-31T23:59:59+00:00",
}


@pytest.fixture
def loyalty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    with services.running(tmp_path / "world", names=("loyalty",)) as urls:
        yield urls["loyalty"]


def credit(
    base: str, key: str | None, body: dict[str, Any] = BODY, member: str = MEMBER
) -> requests.Response:
    headers = {**HEADERS, **({"Idempotency-Key": key} if key else {})}
    return requests.post(f"{base}/v1/members/{member}/credits", json=body, headers=headers)


def balance(base: str, member: str = MEMBER, **params: str) -> dict[str, Any]:
    answer = requests.get(f"{base}/v1/members/{member}/balance", headers=HEADERS, params=params)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def test_same_key_credits_once_and_replays_the_original(loyalty: str) -> None:
    first = credit(loyalty, "dispatch-1")
    assert first.status_code == 201
    again = credit(loyalty, "dispatch-1", {**BODY, "amount_eur": "5.00"})  # same amount
    assert again.status_code == 200
    assert again.json() == first.json()
    assert balance(loyalty)["balance_eur"] == "5.00"
    assert balance(loyalty)["credits"] == 1


def test_same_key_with_another_body_or_member_is_422(loyalty: str) -> None:
    assert credit(loyalty, "k").status_code == 201
    changed = credit(loyalty, "k", {**BODY, "amount_eur": 6})
    assert changed.status_code == 422
    assert changed.json()["error"]["code"] == "idempotency_key_reused"
    assert credit(loyalty, "k", member="LA00009999").status_code == 422
    assert balance(loyalty)["balance_eur"] == "5.00"
    assert balance(loyalty, "LA00009999")["credits"] == 0


def test_concurrent_retries_of_one_key_credit_once(loyalty: str) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: credit(loyalty, "race"), range(24)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * 23 + [201]
    assert len({answer.json()["credit_id"] for answer in answers}) == 1
    assert balance(loyalty)["balance_eur"] == "5.00"
    listed = requests.get(f"{loyalty}/v1/credits", headers=HEADERS).json()
    assert listed["count"] == 1


def test_balances_split_by_validity_and_expiry(loyalty: str) -> None:
    assert credit(loyalty, "a", {**BODY, "amount_eur": 2.5}).status_code == 201
    assert credit(loyalty, "b", {**BODY, "valid_in": "everywhere"}).status_code == 201
    soon = {**BODY, "amount_eur": 1, "expires_at": "2030-01-01T00:00:00Z"}
    assert credit(loyalty, "c", soon).status_code == 201
    now = balance(loyalty)
    assert (now["store_only_eur"], now["everywhere_eur"]) == ("3.50", "5.00")
    assert (now["balance_eur"], now["expired_eur"]) == ("8.50", "0")
    later = balance(loyalty, as_of="2031-01-01T00:00:00Z")
    assert (later["balance_eur"], later["expired_eur"]) == ("7.50", "1.00")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**BODY, "amount_eur": 0}, "amount_eur"),
        ({**BODY, "amount_eur": 500.01}, "amount_eur"),
        ({**BODY, "amount_eur": "1.234"}, "amount_eur"),
        ({**BODY, "amount_eur": None}, "amount_eur"),
        ({**BODY, "amount_eur": True}, "amount_eur"),
        ({**BODY, "amount_eur": "NaN"}, "amount_eur"),
        ({**BODY, "valid_in": "online_only"}, "valid_in"),
        ({**BODY, "offer_id": ""}, "offer_id"),
        ({**BODY, "offer_id": "o" * 201}, "offer_id"),
        ({**BODY, "offer_id": 7}, "offer_id"),
        ({**BODY, "expires_at": "soon"}, "expires_at"),
        ({**BODY, "expires_at": "2099-12-31T23:59:59"}, "expires_at"),  # no offset: ambiguous
        ({**BODY, "expires_at": None}, "expires_at"),
        ({**BODY, "currency": "EUR"}, "currency"),  # not a field of the contract
    ],
)
def test_bad_credits_are_400_naming_the_field(
    loyalty: str, body: dict[str, Any], field: str
) -> None:
    answer = credit(loyalty, "bad", body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_request" and error["field"] == field and error["message"]
    assert credit(loyalty, "bad").status_code == 201  # a refused request does not burn a key


def test_what_is_at_a_limit_is_credited(loyalty: str) -> None:
    assert credit(loyalty, "max", {**BODY, "amount_eur": "500.00"}).status_code == 201
    assert credit(loyalty, "cent", {**BODY, "amount_eur": 0.01}).status_code == 201
    offset = {**BODY, "expires_at": "2099-12-31T23:59:59+0100"}  # Graph-style offset
    assert credit(loyalty, "offset", offset).status_code == 201
    assert credit(loyalty, "k" * 255).status_code == 201


def test_the_key_and_the_body_type_are_checked(loyalty: str) -> None:
    for key in ("with space", "k" * 256, "clé"):
        answer = requests.post(
            f"{loyalty}/v1/members/{MEMBER}/credits",
            json=BODY,
            headers={**HEADERS, "Idempotency-Key": key},
            timeout=10,
        )
        assert answer.status_code == 400, key
        assert answer.json()["error"]["field"] == "Idempotency-Key"
    form = requests.post(
        f"{loyalty}/v1/members/{MEMBER}/credits",
        data={"amount_eur": "5"},
        headers={**HEADERS, "Idempotency-Key": "form"},
        timeout=10,
    )
    assert form.status_code == 415
    assert form.json()["error"]["code"] == "unsupported_media_type"
    assert balance(loyalty)["credits"] == 0


def test_missing_key_and_unknown_members(loyalty: str) -> None:
    assert credit(loyalty, None).status_code == 400
    assert credit(loyalty, "x", member="customer-7").status_code == 404
    member = requests.get(f"{loyalty}/v1/members/{MEMBER}", headers=HEADERS)
    assert member.status_code == 200 and member.json()["member_id"] == MEMBER


def test_reconciliation_feed_pages_by_position_and_since(loyalty: str) -> None:
    for number in range(5):
        assert credit(loyalty, f"r{number}").status_code == 201
    url = f"{loyalty}/v1/credits"
    page = requests.get(url, headers=HEADERS, params={"limit": 3}).json()
    assert [c["idempotency_key"] for c in page["credits"]] == ["r0", "r1", "r2"]
    rest = requests.get(url, headers=HEADERS, params={"after": page["next_after"]}).json()
    assert [c["idempotency_key"] for c in rest["credits"]] == ["r3", "r4"]
    assert requests.get(url, headers=HEADERS, params={"since": "2099-01-01"}).json()["count"] == 0


def test_auth_and_faults(loyalty: str) -> None:
    assert requests.get(f"{loyalty}/v1/members/{MEMBER}/balance").status_code == 401
    assert credit(loyalty, "f", member=MEMBER).status_code == 201
    faults = f"{loyalty}/_sandbox/faults"
    requests.post(faults, json={"error_rate": 1.0, "error_status": 502}).raise_for_status()
    assert credit(loyalty, "g").status_code == 502
    requests.post(faults, json={"error_rate": 0, "rate_limit_per_second": 0.5})
    assert credit(loyalty, "g").status_code == 201
    limited = credit(loyalty, "h")
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    requests.delete(faults)
    assert balance(loyalty)["credits"] == 2


def test_members_are_the_worlds_loyalty_accounts_and_credits_persist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestration.sandbox import world

    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    world_dir = tmp_path / "world"
    world.generate(world_dir, 300, 3, 5, end_date=date(2026, 11, 1))
    parts = f"{world_dir.as_posix()}/pos_customers/*.parquet"
    with duckdb.connect() as con:
        row = con.execute(
            f"SELECT loyalty_account_id, pos_customer_id FROM read_parquet('{parts}') "
            "WHERE loyalty_account_id IS NOT NULL ORDER BY 1 LIMIT 1"
        ).fetchone()
        taken = con.execute(
            f"SELECT count(*) FROM read_parquet('{parts}') WHERE loyalty_account_id = 'LA99999999'"
        ).fetchone()
    assert row is not None and taken == (0,)
    account, customer = row
    with services.running(world_dir, names=("loyalty",)) as urls:
        base = urls["loyalty"]
        member = requests.get(f"{base}/v1/members/{account}", headers=HEADERS).json()
        assert member["pos_customer_id"] == customer
        assert requests.get(f"{base}/v1/members/LA99999999", headers=HEADERS).status_code == 404
        assert credit(base, "p", member=account).status_code == 201
    with services.running(world_dir, names=("loyalty",)) as urls:
        assert credit(urls["loyalty"], "p", member=account).status_code == 200  # key remembered
        assert balance(urls["loyalty"], account)["balance_eur"] == "5.00"

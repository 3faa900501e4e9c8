"""The closed loop: what the sandbox write APIs delivered changes what the world does next.

A small seeded world (300 customers) gets journal lines built by the write services' own
code (`sendgrid._recipients`, `loyalty.parse_credit`, `store.parse_offer`) with fixed times, a
known true effect in ``effects.json``, and is advanced: contacted persons must buy more than
comparable persons who were not contacted, an effect of 0 must change nothing, a credit is
redeemed once on its holder's next store sale (served as a Square order discount), an emailed
code is used online (served as Shopify ``discount_codes``), and what maps to nobody is skipped
with a log line. One test goes through the real services over HTTP; one ingests the POS and
shop APIs with dlt and builds the two staging models with dbt.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
import requests

from orchestration import settings
from orchestration.sandbox import world
from orchestration.sandbox.services import loyalty, sendgrid, store
from orchestration.sandbox.world import closed_loop

CUSTOMERS = 300
DAYS = 60
SEED = 41
END = date(2026, 11, 1)
CONTACT_AT = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
CAMPAIGN = "camp_big"
CODE = "TEST20"
ADVANCE = 14


# -- journal lines, shaped by the services' own code ------------------------------------------
def email_message(recipients: list[tuple[str, str]], at: datetime, campaign: str) -> dict[str, Any]:
    """A ``sendgrid_messages.jsonl`` record: one personalization per (email, customer_id)."""
    payload: dict[str, Any] = {
        "from": {"email": "hola@omni.example"},
        "subject": "Vuelve",
        "content": [{"type": "text/plain", "value": f"Tu código {CODE}"}],
        "personalizations": [
            {
                "to": [{"email": email}],
                "custom_args": {
                    "dispatch_id": f"d-{customer}",
                    "campaign_id": campaign,
                    "customer_id": customer,
                    "offer_id": "test_code",
                    "offer_code": CODE,
                    "offer_kind": "discount_code",
                    "offer_value": "20",
                    "offer_valid_in": "everywhere",
                    "offer_valid_until": (at.date() + timedelta(days=21)).isoformat(),
                },
            }
            for email, customer in recipients
        ],
    }
    assert sendgrid.validate(payload, at.timestamp()) == []
    return {
        "message_id": f"m-{campaign}",
        "accepted_at": int(at.timestamp()),
        "request": payload,
        "recipients": sendgrid._recipients(payload, f"m-{campaign}"),
        "events": [],
    }


def credit_record(member: str, number: int, at: datetime, amount: str = "15.00") -> dict[str, Any]:
    """A ``loyalty_credits.jsonl`` record as the loyalty service writes it."""
    expires = (at + timedelta(days=60)).isoformat()
    body = {"amount_eur": amount, "offer_id": "test_cashback", "valid_in": "store_only"}
    fields = loyalty.parse_credit({**body, "expires_at": expires})
    return {
        "credit_id": f"cr_test{number:04d}",
        "member_id": member,
        **fields,
        "currency": "EUR",
        "status": "active",
        "idempotency_key": f"contact-{number}",
        "created_at": at.replace(tzinfo=None).isoformat(timespec="seconds") + "+00:00",
    }


def offer_record(store_id: str, customer: str, conditions: Any, at: datetime) -> dict[str, Any]:
    """A ``store_offers.jsonl`` record as the store service writes it."""
    body = {
        "customer_id": customer,
        "offer_id": "test_code",
        "code": CODE,
        "conditions": conditions,
        "valid_until": (at.date() + timedelta(days=7)).isoformat(),
    }
    stamp = at.isoformat(timespec="seconds")
    return {
        "store_id": store_id,
        "offer_key": f"k-{customer}",
        **store.parse_offer(body),
        "status": "active",
        "version": 1,
        "created_at": stamp,
        "updated_at": stamp,
    }


def write_jsonl(path: Path, records: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def table(world_dir: Path, name: str) -> list[dict[str, Any]]:
    """Every row of every part of a world table."""
    paths = sorted((world_dir / name).glob("part-*.parquet"))
    return [row for path in paths for row in pq.read_table(path).to_pylist()]


def latest_rows(world_dir: Path, name: str, key: str) -> dict[Any, dict[str, Any]]:
    rows = world.latest(world_dir, name, key, "updated_at").to_pylist()
    return {row[key]: row for row in rows}


# -- the worlds ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Loop:
    base: Path  # the generated world, never advanced
    world_dir: Path  # advanced twice with the journals and a large effect
    sandbox: Path
    treated: set[int]  # person ids emailed by CAMPAIGN
    control: set[int]  # comparable persons (web customers) not contacted
    credited: dict[str, int]  # credit_id -> person_id
    summaries: list[dict[str, Any]]


def persons_by_channel(world_dir: Path) -> tuple[dict[int, dict[str, Any]], dict[int, Any]]:
    shop = latest_rows(world_dir, "shop_customers", "shop_customer_id")
    pos = latest_rows(world_dir, "pos_customers", "pos_customer_id")
    return (
        {row["person_id"]: row for row in shop.values()},
        {row["person_id"]: row for row in pos.values()},
    )


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Loop:
    root = tmp_path_factory.mktemp("closed_loop")
    base = root / "base"
    world.generate(base, CUSTOMERS, DAYS, SEED, end_date=END)
    shop, pos = persons_by_channel(base)
    web_persons = sorted(shop)
    treated = {p for p in web_persons if p % 2 == 0}
    control = set(web_persons) - treated
    sandbox = root / "sandbox"
    recipients = [(shop[p]["email"].strip().lower(), f"cust-{p}") for p in sorted(treated)]
    write_jsonl(sandbox / closed_loop.MESSAGES, [email_message(recipients, CONTACT_AT, CAMPAIGN)])
    holders = [p for p in sorted(treated) if p in pos]
    credits = [
        credit_record(pos[p]["loyalty_account_id"], number, CONTACT_AT)
        for number, p in enumerate(holders)
    ]
    write_jsonl(sandbox / closed_loop.CREDITS, credits)
    world_dir = root / "world"
    shutil.copytree(base, world_dir)
    effects = {"default": 0.0, CAMPAIGN: 3.0, "code_redemption_rate": 1.0}
    (world_dir / "effects.json").write_text(json.dumps(effects))
    summaries = [world.advance(world_dir, ADVANCE, sandbox_dir=sandbox) for _ in range(2)]
    credited = {credit["credit_id"]: p for credit, p in zip(credits, holders, strict=True)}
    return Loop(base, world_dir, sandbox, treated, control, credited, summaries)


def simulated_by_the_loop(loop: Loop, counter: str) -> int:
    """The last id of `counter` the generation used: higher ids were simulated by `advance`."""
    state = json.loads((loop.base / "_state" / "state.json").read_text())
    return int(state["counters"][counter])


def order_times(world_dir: Path) -> dict[int, list[datetime]]:
    """person_id -> creation times of their web orders and identified store sales."""
    shop, pos = persons_by_channel(world_dir)
    person_of_shop = {row["shop_customer_id"]: p for p, row in shop.items()}
    person_of_pos = {row["pos_customer_id"]: p for p, row in pos.items()}
    times: dict[int, list[datetime]] = {}
    for row in latest_rows(world_dir, "web_orders", "order_id").values():
        person = person_of_shop.get(row["shop_customer_id"])
        if person is not None:
            times.setdefault(person, []).append(row["created_at"])
    for row in latest_rows(world_dir, "store_sales", "pos_order_id").values():
        person = person_of_pos.get(row["pos_customer_id"])
        if person is not None:
            times.setdefault(person, []).append(row["created_at"])
    return times


def rate(times: dict[int, list[datetime]], group: set[int], start: date, end: date) -> float:
    """Orders per person of `group` created on days start..end (inclusive)."""
    count = sum(1 for p in group for t in times.get(p, []) if start <= t.date() <= end)
    return count / len(group)


# -- the effect ----------------------------------------------------------------------------------
def test_contacted_persons_buy_more_than_comparable_ones(loop: Loop) -> None:
    times = order_times(loop.world_dir)
    effect_end = END + timedelta(days=closed_loop.DEFAULT_EFFECT_DAYS - 1)
    before = (END - timedelta(days=27), END)
    treated_before = rate(times, loop.treated, *before)
    control_before = rate(times, loop.control, *before)
    treated_after = rate(times, loop.treated, END + timedelta(days=1), effect_end)
    control_after = rate(times, loop.control, END + timedelta(days=1), effect_end)
    print(f"orders/person before {treated_before:.3f} vs {control_before:.3f}, ", end="")
    print(f"during the effect {treated_after:.3f} vs {control_after:.3f}")
    # The groups were comparable before the contact...
    assert 0.6 < treated_before / control_before < 1.6
    # ...and a +300 % purchase probability makes the contacted buy far more afterwards.
    assert treated_after > 2.0 * control_after
    assert loop.summaries[0]["closed_loop"]["contacted_persons"] == len(loop.treated)


def test_expected_conversion_is_reported_and_matches_what_happened(loop: Loop) -> None:
    """The truth to compare a measured lift with: expected conversion with and without effect."""
    first = loop.summaries[0]["closed_loop"]
    expected = first["expected_conversion"][CAMPAIGN]
    assert expected["persons"] == len(loop.treated)
    assert 0 < expected["rate_without"] < expected["rate_with"] < 1
    times = order_times(loop.world_dir)
    last = END + timedelta(days=closed_loop.DEFAULT_EFFECT_DAYS - 1)
    converted = sum(
        1 for p in loop.treated if any(END < t.date() <= last for t in times.get(p, []))
    )
    realized = converted / len(loop.treated)
    print(f"expected conversion {expected}, realized {realized:.3f}")
    assert abs(realized - expected["rate_with"]) < 0.15
    report = json.loads((loop.world_dir / closed_loop.REPORT_FILE).read_text())
    assert report == loop.summaries[1]["closed_loop"]  # the file holds the last advance
    assert report["expected_conversion"] == {}  # the second advance is past the effect window


def test_effect_window_ends_after_effect_days(loop: Loop) -> None:
    times = order_times(loop.world_dir)
    late = (END + timedelta(days=closed_loop.DEFAULT_EFFECT_DAYS + 1), END + timedelta(days=28))
    treated, control = rate(times, loop.treated, *late), rate(times, loop.control, *late)
    print(f"orders/person after the window {treated:.3f} vs {control:.3f}")
    assert treated < 2.0 * control


def test_zero_effect_changes_no_purchase(loop: Loop, tmp_path: Path) -> None:
    """Effect 0: every multiplier is 1 and only the redemption tables differ from no loop."""
    with_loop, without = tmp_path / "with", tmp_path / "without"
    shutil.copytree(loop.base, with_loop)
    shutil.copytree(loop.base, without)
    (with_loop / "effects.json").write_text(json.dumps({"default": 0.0, CAMPAIGN: 0.0}))
    customers = [
        world.latest(with_loop, "shop_customers", "shop_customer_id", "updated_at"),
        world.latest(with_loop, "pos_customers", "pos_customer_id", "updated_at"),
    ]
    persons = world.latest(with_loop, "persons", "person_id", "created_at")
    person_ids = np.sort(persons["person_id"].to_numpy())
    built = closed_loop.build(loop.sandbox, with_loop, person_ids, customers)
    assert built is not None and len(built.contacts) > len(loop.treated)  # emails and credits
    for offset in range(ADVANCE):
        multiplier = built.uplift(END + timedelta(days=offset), len(person_ids))
        assert np.array_equal(multiplier, np.ones(len(person_ids)))
    summary = world.advance(with_loop, 5, sandbox_dir=loop.sandbox)["closed_loop"]
    world.advance(without, 5)
    expected = summary["expected_conversion"][CAMPAIGN]
    assert expected["rate_with"] == expected["rate_without"] and expected["relative_lift"] == 0
    redemption_tables = {"store_sale_discounts", "web_order_discount_codes"}
    for name in world.TABLES:
        ours = pq.read_table(with_loop / name / "part-00001.parquet")
        theirs = pq.read_table(without / name / "part-00001.parquet")
        if name in redemption_tables:
            assert theirs.num_rows == 0
        else:
            assert ours.equals(theirs), name
    assert pq.read_table(with_loop / "store_sale_discounts" / "part-00001.parquet").num_rows > 0


def test_no_effects_file_means_no_effect(tmp_path: Path, loop: Loop) -> None:
    assert closed_loop.load_effects(tmp_path) is None
    built = closed_loop.build(loop.sandbox, tmp_path, np.arange(1, CUSTOMERS + 1), [])
    assert built is not None and built.effects == closed_loop.Effects()


@pytest.mark.parametrize(
    ("effects", "message"),
    [
        ([1, 2], "must be an object"),
        ({"camp": "big"}, "'camp' must be a number"),
        ({"camp": -2}, "at least -1"),
        ({"effect_days": 0}, "effect_days"),
        ({"code_redemption_rate": 1.5}, "code_redemption_rate"),
    ],
)
def test_bad_effects_are_a_clear_error(tmp_path: Path, effects: Any, message: str) -> None:
    (tmp_path / "effects.json").write_text(json.dumps(effects))
    with pytest.raises(closed_loop.EffectsError, match=message):
        closed_loop.load_effects(tmp_path)


def test_regenerating_keeps_effects_json(tmp_path: Path) -> None:
    world_dir = tmp_path / "world"
    world.generate(world_dir, 50, 3, 1, end_date=END)
    (world_dir / "effects.json").write_text('{"default": 0.2}')
    world.generate(world_dir, 50, 3, 1, end_date=END)
    assert closed_loop.load_effects(world_dir) == closed_loop.Effects(default=0.2)


# -- redemptions ---------------------------------------------------------------------------------
def test_a_credit_is_redeemed_once_on_one_of_its_holders_store_sales(loop: Loop) -> None:
    discounts = table(loop.world_dir, "store_sale_discounts")
    redeemed = [row["credit_id"] for row in discounts]
    assert len(redeemed) == len(set(redeemed)), "a credit was redeemed twice"
    assert set(redeemed) <= set(loop.credited)
    _, pos = persons_by_channel(loop.world_dir)
    generated = simulated_by_the_loop(loop, "store_sale")
    sales = [  # identified sales the loop simulated (generation knew no credits)
        row
        for row in latest_rows(loop.world_dir, "store_sales", "pos_order_id").values()
        if int(row["pos_order_id"][3:]) > generated and row["pos_customer_id"] is not None
    ]
    by_order = {row["pos_order_id"]: row for row in discounts}
    checked = 0
    for credit_id, person in loop.credited.items():
        customer = pos[person]["pos_customer_id"]
        mine = [s for s in sales if s["pos_customer_id"] == customer]
        assert all(s["created_at"] >= CONTACT_AT for s in mine)
        used = [by_order[s["pos_order_id"]] for s in mine if s["pos_order_id"] in by_order]
        if not mine:
            assert credit_id not in redeemed
            continue
        (discount,) = used  # the holder bought: the credit was used, on exactly one sale
        sale = next(s for s in mine if s["pos_order_id"] == discount["pos_order_id"])
        assert discount["credit_id"] == credit_id
        assert discount["amount"] == pytest.approx(min(15.0, sale["total"]))
        assert discount["loyalty_account_id"] == pos[person]["loyalty_account_id"]
        assert discount["name"] == "cashback test_cashback"
        checked += 1
    assert checked >= 10
    assert not any(by_order[o]["credit_id"] not in loop.credited for o in by_order)
    summaries = [s["closed_loop"]["credits_redeemed"] for s in loop.summaries]
    assert sum(summaries) == len(redeemed)


def test_an_emailed_code_is_used_online_within_its_validity(loop: Loop) -> None:
    codes = table(loop.world_dir, "web_order_discount_codes")
    shop, _ = persons_by_channel(loop.world_dir)
    person_of_shop = {row["shop_customer_id"]: p for p, row in shop.items()}
    orders = latest_rows(loop.world_dir, "web_orders", "order_id")
    used = {}
    for row in codes:
        order = orders[row["order_id"]]
        person = person_of_shop[order["shop_customer_id"]]
        assert person in loop.treated
        assert person not in used, "a person used the code twice"
        used[person] = row
        assert row["code"] == CODE and row["type"] == "percentage"
        assert row["amount"] == pytest.approx(round(order["subtotal"] * 0.2, 2))
    valid_until = END + timedelta(days=21)
    generated = simulated_by_the_loop(loop, "order")
    for person in loop.treated:  # code_redemption_rate 1: used on an order in its validity
        valid = [
            o
            for o in orders.values()
            if person_of_shop.get(o["shop_customer_id"]) == person
            and o["order_id"] - 5_200_000_000 > generated
            and CONTACT_AT <= o["created_at"]
            and o["created_at"].date() <= valid_until
        ]
        if valid:
            assert used[person]["order_id"] in {o["order_id"] for o in valid}
        else:
            assert person not in used
    assert len(used) >= 10


def test_services_serve_discounts_and_discount_codes(loop: Loop) -> None:
    from orchestration.sandbox import services

    discounts = {row["pos_order_id"]: row for row in table(loop.world_dir, "store_sale_discounts")}
    codes = {row["order_id"]: row for row in table(loop.world_dir, "web_order_discount_codes")}
    token = settings.load().tokens
    with services.running(loop.world_dir, names=("pos", "shop")) as urls:
        pos_orders = []
        body: dict[str, Any] = {"location_ids": [], "limit": 500}
        locations = requests.get(
            f"{urls['pos']}/v2/locations",
            headers={"Authorization": f"Bearer {token['pos']}"},
            timeout=30,
        ).json()["locations"]
        body["location_ids"] = [location["id"] for location in locations][:10]
        while True:
            page = requests.post(
                f"{urls['pos']}/v2/orders/search",
                json=body,
                headers={"Authorization": f"Bearer {token['pos']}"},
                timeout=30,
            ).json()
            pos_orders += page.get("orders", [])
            if not page.get("cursor"):
                break
            body["cursor"] = page["cursor"]
        shop_orders = []
        url: str | None = f"{urls['shop']}/admin/api/2024-07/orders.json?status=any&limit=250"
        while url:
            response = requests.get(
                url, headers={"X-Shopify-Access-Token": token["shop"]}, timeout=30
            )
            shop_orders += response.json()["orders"]
            url = response.links.get("next", {}).get("url")
    served = {order["id"]: order for order in pos_orders if order["discounts"]}
    assert set(served) == set(discounts)
    for order_id, order in served.items():
        (discount,) = order["discounts"]
        truth = discounts[order_id]
        cents = round(truth["amount"] * 100)
        assert discount["name"] == f"cashback {truth['offer_id']}"
        assert discount["type"] == "FIXED_AMOUNT"
        assert discount["amount_money"] == {"amount": cents, "currency": "EUR"}
        assert discount["applied_money"] == discount["amount_money"]
        assert discount["metadata"]["credit_id"] == truth["credit_id"]
        assert discount["metadata"]["loyalty_account_id"] == truth["loyalty_account_id"]
        assert order["total_discount_money"]["amount"] == cents
    with_codes = {o["id"]: o for o in shop_orders if o["discount_codes"]}
    assert with_codes and set(with_codes) <= set(codes)
    for order_id, order in with_codes.items():
        expected = {
            "code": CODE,
            "amount": f"{codes[order_id]['amount']:.2f}",
            "type": "percentage",
        }
        assert order["discount_codes"] == [expected]
        assert order["total_discounts"] == expected["amount"]
    assert all(o["total_discounts"] == "0.00" for o in shop_orders if not o["discount_codes"])


# -- bad input -----------------------------------------------------------------------------------
def test_unmappable_entries_are_skipped_with_a_log_line(
    loop: Loop, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world_dir = tmp_path / "world"
    shutil.copytree(loop.base, world_dir)
    _, pos = persons_by_channel(world_dir)
    someone = min(pos)
    sandbox = tmp_path / "sandbox"
    message = email_message([("nadie@ninguna-parte.es", "cust-x")], CONTACT_AT, CAMPAIGN)
    message["recipients"].append("not a recipient")
    shop, _ = persons_by_channel(world_dir)
    bounced = email_message([(shop[min(shop)]["email"].strip(), "cust-b")], CONTACT_AT, CAMPAIGN)
    sg_id = bounced["recipients"][0]["sg_message_id"]
    bounced["events"] = [{"event": "bounce", "sg_message_id": sg_id}]  # never seen: no effect
    write_jsonl(sandbox / closed_loop.MESSAGES, [message, {"recipients": None}, bounced])
    (sandbox / closed_loop.MESSAGES).open("a").write('{"torn": \n')
    credits = [
        credit_record("LA99999999", 1, CONTACT_AT),
        {**credit_record(pos[someone]["loyalty_account_id"], 2, CONTACT_AT), "created_at": "x"},
    ]
    write_jsonl(sandbox / closed_loop.CREDITS, credits)
    offers = [
        offer_record("L0001", "unknown-customer", "trae el código", CONTACT_AT),
        offer_record(
            "L0001",
            "cust-y",
            {"loyalty_account_id": pos[someone]["loyalty_account_id"]},
            CONTACT_AT,
        ),
    ]
    write_jsonl(sandbox / closed_loop.OFFERS, offers)
    with caplog.at_level(logging.WARNING, logger="orchestration.sandbox.world.closed_loop"):
        summary = world.advance(world_dir, 2, sandbox_dir=sandbox)
    skipped = summary["closed_loop"]["skipped"]
    assert skipped == {"email": 3, "loyalty_credit": 2, "store_offer": 1}
    assert summary["closed_loop"]["contacts"] == 1  # the offer mapped through its conditions
    assert summary["closed_loop"]["undelivered_emails"] == 1
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert any("nadie@ninguna-parte.es" in line for line in lines)
    assert any("LA99999999" in line for line in lines)
    assert any("unknown-customer" in line for line in lines)
    assert any("not JSON" in line for line in lines)


# -- through the real services -------------------------------------------------------------------
def test_real_services_journals_close_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Today's sends through the real write APIs are read back by `advance`."""
    from orchestration.sandbox import services

    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    cfg = settings.load()
    today = datetime.now(UTC).date()
    world.generate(cfg.world_dir, CUSTOMERS, 20, SEED, end_date=today)
    shop, pos = persons_by_channel(cfg.world_dir)
    both = sorted(set(shop) & set(pos))[:3]
    tokens = cfg.tokens
    with services.running(cfg.world_dir, names=("sendgrid", "loyalty", "store")) as urls:
        payload = {
            "from": {"email": "hola@omni.example"},
            "subject": "Hola",
            "content": [{"type": "text/plain", "value": "Hola"}],
            "personalizations": [
                {
                    "to": [{"email": shop[p]["email"].strip().lower()}],
                    "custom_args": {"campaign_id": CAMPAIGN, "customer_id": f"cust-{p}"},
                }
                for p in both
            ],
        }
        headers = {"Authorization": f"Bearer {tokens['sendgrid']}"}
        sent = requests.post(
            f"{urls['sendgrid']}/v3/mail/send", json=payload, headers=headers, timeout=30
        )
        assert sent.status_code == 202, sent.text
        expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
        for p in both[:2]:
            account = pos[p]["loyalty_account_id"]
            response = requests.post(
                f"{urls['loyalty']}/v1/members/{account}/credits",
                json={
                    "amount_eur": 10,
                    "offer_id": "o1",
                    "valid_in": "store_only",
                    "expires_at": expires,
                },
                headers={
                    "Authorization": f"Bearer {tokens['loyalty']}",
                    "Idempotency-Key": f"k{p}",
                },
                timeout=30,
            )
            assert response.status_code == 201, response.text
        store_id = "L0001"
        for customer in (f"cust-{both[0]}", "wh-unknown"):
            response = requests.put(
                f"{urls['store']}/v1/stores/{store_id}/offers/{customer}",
                json={
                    "customer_id": customer,
                    "offer_id": "o1",
                    "code": "X1",
                    "valid_until": (today + timedelta(days=7)).isoformat(),
                },
                headers={"Authorization": f"Bearer {tokens['store']}"},
                timeout=30,
            )
            assert response.status_code == 201, response.text
    (cfg.world_dir / "effects.json").write_text(json.dumps({CAMPAIGN: 1.0}))
    summary = world.advance(cfg.world_dir, 2, sandbox_dir=cfg.sandbox_dir)["closed_loop"]
    assert summary["contacts"] == 3 + 2 + 1
    assert summary["contacted_persons"] == 3
    assert summary["credits"] == 2
    assert summary["skipped"] == {"store_offer": 1}  # a warehouse id no email ever carried


# -- into the warehouse --------------------------------------------------------------------------
def test_redemptions_reach_the_staging_models(loop: Loop, tmp_path: Path) -> None:
    """dlt loads the new lists as child tables; the staging models hold one row each."""
    from orchestration.sandbox import services
    from orchestration.sources import ingest

    home = tmp_path / "omni"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMNI_HOME", str(home))
        cfg = settings.load()
        with services.running(loop.world_dir, names=("pos", "shop")) as urls:
            for source in ("pos", "shop"):
                ingest(source, base_url=urls[source], cfg=cfg)
    warehouse = str(home / "warehouse.duckdb")
    with duckdb.connect(warehouse, read_only=True) as con:
        raw = {
            name: con.execute(f"select count(*) from {name}").fetchall()[0][0]
            for name in ("raw_pos.orders__discounts", "raw_shop.orders__discount_codes")
        }
    assert raw["raw_pos.orders__discounts"] == len(table(loop.world_dir, "store_sale_discounts"))
    assert raw["raw_shop.orders__discount_codes"] == len(
        table(loop.world_dir, "web_order_discount_codes")
    )
    project = settings.REPO_ROOT / "dbt_project"
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("dbt")),
            "build",
            "--select",
            "+stg_pos__cashback_redemptions",
            "+stg_shop__order_discount_codes",
            "--indirect-selection",
            "cautious",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
            "--target-path",
            str(tmp_path / "target"),
            "--log-path",
            str(tmp_path / "target" / "logs"),
        ],
        env={**os.environ, "OMNI_HOME": str(home), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:]
    discounts = table(loop.world_dir, "store_sale_discounts")
    codes = table(loop.world_dir, "web_order_discount_codes")
    with duckdb.connect(warehouse, read_only=True) as con:
        redemptions = con.execute(
            "select credit_id, amount_eur, loyalty_account_id, pos_order_id "
            "from staging.stg_pos__cashback_redemptions order by credit_id"
        ).fetchall()
        honoured = con.execute(
            "select shop_order_id, discount_code, discount_type, amount_eur "
            "from staging.stg_shop__order_discount_codes order by shop_order_id"
        ).fetchall()
    expected = sorted(
        (r["credit_id"], r["amount"], r["loyalty_account_id"], r["pos_order_id"]) for r in discounts
    )
    assert [(c, float(a), la, o) for c, a, la, o in redemptions] == expected
    expected_codes = sorted((r["order_id"], r["code"], r["type"], r["amount"]) for r in codes)
    assert [(o, c, t, float(a)) for o, c, t, a in honoured] == expected_codes

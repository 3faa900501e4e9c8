"""One offer everywhere: the offer check before sending, on a real ledger and a hand-made
warehouse (prices in marts.dim_products) with the shipped campaign files."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dispatch_world import CAMPAIGN, build_warehouse, customer_id, handoff_rows

from orchestration import settings
from orchestration.dispatch import Channel, Ledger, State, contact_id_for
from orchestration.dispatch.offer_check import check_pending, load_prices


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    monkeypatch.delenv("OMNI_LEDGER_URL", raising=False)
    monkeypatch.delenv("OMNI_CAMPAIGNS_DIR", raising=False)
    build_warehouse(tmp_path / "warehouse.duckdb", 30)
    return tmp_path


@pytest.fixture
def ledger(home: Path) -> Iterator[Ledger]:
    with Ledger.from_settings(settings.load()) as opened:
        yield opened


def rows_of(*customers: int) -> list[dict[str, Any]]:
    wanted = {customer_id(n) for n in customers}
    return [row for row in handoff_rows(30) if row["customer_id"] in wanted]


def cid(n: int, channel: str) -> str:
    return contact_id_for(CAMPAIGN, customer_id(n), f"trg_{n:05d}", channel)


def state_and_reason(ledger: Ledger, n: int, channel: str) -> tuple[State, str | None]:
    contact = ledger.get(cid(n, channel))
    return contact.state, contact.last_error


def test_consistent_offers_and_prices_pass(ledger: Ledger) -> None:
    ledger.record_intents(rows_of(0, 1, 2, 3))
    counts = check_pending(ledger, settings.load())
    assert counts["checked"] == 12 and counts["passed"] == 12
    assert counts["suppressed"] == 0 and counts["prices_unchecked"] == 0
    assert ledger.counts()["pending"] == 12


def test_a_store_price_difference_blocks_the_contact_and_its_siblings(ledger: Ledger) -> None:
    ledger.record_intents(rows_of(23, 24))  # 24: a cap cheaper in store than online
    counts = check_pending(ledger, settings.load())
    state, reason = state_and_reason(ledger, 24, "in_store")
    assert state is State.SUPPRESSED
    assert reason == (
        "price_mismatch: item Gorra de algodón (GOR-0105) shows 19.95 but the store price is 17.95"
    )
    for channel in ("email", "loyalty_cashback"):  # the email shows the web price: right there
        state, reason = state_and_reason(ledger, 24, channel)
        assert state is State.SUPPRESSED
        assert reason is not None and reason.startswith(
            f"offer_mismatch: sibling in_store contact {cid(24, 'in_store')} blocked: "
            "price_mismatch: item Gorra"
        )
    assert all(state_and_reason(ledger, 23, c)[0] is State.PENDING for c in ("email", "in_store"))
    assert counts == {
        "checked": 6,
        "passed": 3,
        "suppressed": 3,
        "offer_mismatch": 0,
        "price_mismatch": 1,
        "sibling": 2,
        "prices_unchecked": 0,
    }


def test_an_email_price_other_than_the_web_price_is_blocked(ledger: Ledger) -> None:
    rows = rows_of(0)
    email_row = next(row for row in rows if row["channel"] == "email")
    trigger = json.loads(email_row["payload_json"])
    trigger["cart_items"][0]["unit_price"] = 49.95  # product 101 costs 39.95 online
    email_row["payload_json"] = json.dumps(trigger)
    ledger.record_intents(rows)
    counts = check_pending(ledger, settings.load())
    assert state_and_reason(ledger, 0, "email") == (
        State.SUPPRESSED,
        "price_mismatch: item Camiseta de lino (CAM-0101) shows 49.95 but the web price is 39.95",
    )
    assert state_and_reason(ledger, 0, "in_store")[0] is State.SUPPRESSED
    assert counts["price_mismatch"] == 1 and counts["sibling"] == 2


def test_channels_disagreeing_on_the_amount_are_all_blocked(ledger: Ledger) -> None:
    rows = rows_of(1)
    next(row for row in rows if row["channel"] == "loyalty_cashback")["offer_value"] = 15.0
    ledger.record_intents(rows)
    counts = check_pending(ledger, settings.load())
    for channel in ("email", "loyalty_cashback", "in_store"):
        state, reason = state_and_reason(ledger, 1, channel)
        assert state is State.SUPPRESSED
        assert reason is not None and reason.startswith("offer_mismatch: the channels disagree:")
        assert "loyalty_cashback has offer cesta_tienda_cashback_10 code - amount 15.0" in reason
    assert counts["offer_mismatch"] == 3


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"offer_id": "cesta_old"}, "offer id cesta_old but the campaign's offer is "),
        ({"offer_value": 5.0}, "amount 5.0 but the campaign's offer value is 10.0"),
        ({"offer_code": "CESTA5"}, "code CESTA5 but the campaign's is none"),
        ({"offer_kind": "cashback_amount"}, "offer kind cashback_amount but the campaign's is"),
        ({"offer_valid_in": "everywhere"}, "valid in everywhere but the campaign's offer is"),
    ],
)
def test_an_offer_other_than_the_campaigns_current_one_is_blocked(
    ledger: Ledger, change: dict[str, Any], expected: str
) -> None:
    ledger.record_intents([{**row, **change} for row in rows_of(2)])
    counts = check_pending(ledger, settings.load())
    for channel in ("email", "loyalty_cashback", "in_store"):
        state, reason = state_and_reason(ledger, 2, channel)
        assert state is State.SUPPRESSED
        assert reason is not None and reason.startswith(f"offer_mismatch: {channel} contact has ")
        assert expected in reason
    assert counts["offer_mismatch"] == 3 and counts["passed"] == 0


def test_a_campaign_without_a_valid_file_is_blocked(ledger: Ledger) -> None:
    ledger.record_intents([{**row, "campaign_id": "gone_campaign"} for row in rows_of(3)])
    check_pending(ledger, settings.load())
    reasons = {contact.last_error for contact in ledger.list_contacts()}
    assert reasons == {"offer_mismatch: campaign gone_campaign has no valid campaign file"}


def test_a_sibling_already_sent_stays_sent_and_failed_ones_are_checked(ledger: Ledger) -> None:
    ledger.record_intents(rows_of(24))
    [email] = ledger.claim(Channel.EMAIL, 10)
    ledger.mark_sent(email.contact_id, "msg-1")
    [credit] = ledger.claim(Channel.LOYALTY_CASHBACK, 10)
    ledger.mark_failed(credit.contact_id, "HTTP 503", True)
    counts = check_pending(ledger, settings.load())
    assert state_and_reason(ledger, 24, "email")[0] is State.SENT
    assert state_and_reason(ledger, 24, "loyalty_cashback")[0] is State.SUPPRESSED
    assert state_and_reason(ledger, 24, "in_store")[0] is State.SUPPRESSED
    assert counts["checked"] == 2 and counts["suppressed"] == 2


def test_without_a_warehouse_only_the_price_check_is_skipped(ledger: Ledger, home: Path) -> None:
    (home / "warehouse.duckdb").unlink()
    rows = rows_of(24) + [{**row, "offer_value": 5.0} for row in rows_of(2)]
    ledger.record_intents(rows)
    counts = check_pending(ledger, settings.load())
    assert counts["prices_unchecked"] == 1
    assert state_and_reason(ledger, 24, "in_store")[0] is State.PENDING  # price unknown
    assert state_and_reason(ledger, 2, "email")[0] is State.SUPPRESSED  # offer still checked
    assert counts["passed"] == 3 and counts["offer_mismatch"] == 3


def test_a_warehouse_without_products_skips_prices(ledger: Ledger, home: Path) -> None:
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    con.execute("drop table marts.dim_products")
    con.close()
    ledger.record_intents(rows_of(24))
    assert check_pending(ledger, settings.load())["prices_unchecked"] == 1
    assert ledger.counts()["pending"] == 3


def test_only_the_given_campaign_is_checked(ledger: Ledger) -> None:
    other = [{**row, "campaign_id": "loyalty_cashback_300"} for row in rows_of(5)]
    ledger.record_intents(other + rows_of(24))
    counts = check_pending(ledger, settings.load(), campaign_id=CAMPAIGN)
    assert counts["checked"] == 3 and counts["suppressed"] == 3
    assert ledger.counts(campaign_id="loyalty_cashback_300")["pending"] == 3


def test_the_warehouse_is_read_only_and_closed_after(ledger: Ledger, home: Path) -> None:
    ledger.record_intents(rows_of(24))
    prices = load_prices(settings.load())
    assert prices is not None and prices.by_product["105"].store_price == 17.95
    check_pending(ledger, settings.load())
    # A writer can open the file at once: no connection of the check is left open.
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    con.execute("update marts.dim_products set store_price = web_price")
    con.close()


def post_purchase_email(n: int, shown_price: float) -> dict[str, Any]:
    """A post-purchase email whose matching product shows ``shown_price`` (web: 39.95) and
    whose past order line shows what was paid then (not a current price: never checked)."""
    trigger = {
        "order": {"order_id": "9001", "order_number": 9001, "total": 80.0},
        "order_items": [{"product_id": "102", "title": "Pantalón chino", "unit_price": 80.0}],
        "matching_products": [
            {
                "product_id": "101",
                "sku": "CAM-0101",
                "title": "Camiseta de lino",
                "price": shown_price,
            }
        ],
        "survey_url": "https://encuestas.example.com/s/9001",
        "newsletter_url": "",
    }
    return {
        "campaign_id": "post_purchase_follow_up",
        "customer_id": customer_id(n),
        "trigger_key": f"pp_{n}",
        "channel": "email",
        "offer_id": "gracias_10",
        "offer_kind": "discount_code",
        "offer_value": 10.0,
        "offer_code": "GRACIAS10",
        "offer_valid_in": "everywhere",
        "email": f"cliente{n}@example.com",
        "payload_json": json.dumps(trigger),
    }


@pytest.mark.parametrize(
    ("include_matching", "expected"), [(True, "suppressed"), (False, "pending")]
)
def test_only_the_products_the_email_shows_are_checked(
    ledger: Ledger,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    include_matching: bool,
    expected: str,
) -> None:
    campaigns = home / "campaigns"
    shutil.copytree(settings.REPO_ROOT / "campaigns", campaigns)
    config = campaigns / "post_purchase_follow_up.yml"
    text = config.read_text(encoding="utf-8")
    switched = text.replace(
        "include_matching_products: true",
        f"include_matching_products: {str(include_matching).lower()}",
    )
    config.write_text(switched, encoding="utf-8")
    monkeypatch.setenv("OMNI_CAMPAIGNS_DIR", str(campaigns))
    ledger.record_intents([post_purchase_email(1, 44.95), post_purchase_email(2, 39.95)])
    check_pending(ledger, settings.load())
    first, second = (
        ledger.get(contact_id_for("post_purchase_follow_up", customer_id(n), f"pp_{n}", "email"))
        for n in (1, 2)
    )
    assert first.state.value == expected
    if include_matching:
        assert first.last_error == (
            "price_mismatch: item Camiseta de lino (CAM-0101) shows 44.95 but the web price "
            "is 39.95"
        )
    assert second.state is State.PENDING  # the right price; its order line is history

"""The GX activation checks catch each violation and pass good audiences; the hand-off is
written once per run.

A small hand-made warehouse has the shapes the checks read: ``marts.dim_customers`` (consent
columns) and the three ``activation.sync_*`` audiences. The good audience follows the rules the
dbt models apply (consent per channel, one contact per key, the stable hash holdout of
``preview.is_holdout``, a cost under the budget); each test breaks one rule on a copy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from orchestration import settings
from orchestration.campaigns import Campaign, load_campaign
from orchestration.campaigns.handoff import (
    HandoffError,
    hand_to_dispatch,
    handoff_path,
    read_handoff_metadata,
    write_handoff,
)
from orchestration.campaigns.preview import is_holdout
from orchestration.quality.activation import (
    MIN_HOLDOUT_SAMPLE,
    ActivationCheckFailed,
    check_audience,
    holdout_tolerance,
    read_audience,
)

CAMPAIGN_FILE = settings.REPO_ROOT / "campaigns" / "abandoned_cart_nearby_store.yml"
CUSTOMERS = 500
COST_EUR = 5.0  # per decision: ~450 treated x 5 EUR stays under the 3,000 EUR cap


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    loaded = load_campaign(CAMPAIGN_FILE)
    assert loaded.holdout_percent == 10 and loaded.offer.budget_cap_eur == 3000
    return loaded


def _customers() -> pd.DataFrame:
    ids = [f"C{number:05d}" for number in range(CUSTOMERS)]
    return pd.DataFrame(
        {
            "customer_id": ids,
            "email": [f"{customer.lower()}@example.com" for customer in ids],
            "phone": [None] * CUSTOMERS,
            "has_email_consent": [True] * CUSTOMERS,
            "is_loyalty_member": [True] * CUSTOMERS,
            "loyalty_account_id": [f"L{customer}" for customer in ids],
        }
    )


def _audiences(campaign: Campaign, customers: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Email and cashback for everyone, an in-store card for every other customer."""
    frames = {}
    for channel, table in (
        ("email", "sync_email_audience"),
        ("loyalty_cashback", "sync_loyalty_cashback_audience"),
        ("in_store", "sync_store_offers_audience"),
    ):
        chosen = customers if channel != "in_store" else customers.iloc[::2]
        ids = chosen["customer_id"].tolist()
        frame = pd.DataFrame(
            {
                "contact_id": [f"{campaign.id}:{customer}:cart1:{channel}" for customer in ids],
                "campaign_id": campaign.id,
                "customer_id": ids,
                "trigger_key": [f"cart-{customer}" for customer in ids],
                "channel": channel,
                "offer_id": campaign.offer.id,
                "estimated_cost_eur": COST_EUR,
                "is_holdout": [
                    is_holdout(campaign.id, customer, campaign.holdout_percent) for customer in ids
                ],
            }
        )
        if channel == "email":
            frame["email"] = chosen["email"].tolist()
        elif channel == "in_store":
            frame["store_id"] = "S001"
        else:
            frame["loyalty_account_id"] = chosen["loyalty_account_id"].tolist()
        frames[table] = frame
    # another campaign's rows in the same tables must not count
    other = frames["sync_email_audience"].head(5).copy()
    other["campaign_id"] = "some_other_campaign"
    frames["sync_email_audience"] = pd.concat([frames["sync_email_audience"], other])
    return frames


Mutation = Callable[[pd.DataFrame, dict[str, pd.DataFrame]], None]


@pytest.fixture
def build(tmp_path: Path, campaign: Campaign) -> Callable[..., settings.Settings]:
    """Write the warehouse (optionally broken by ``mutate``) in a private OMNI_HOME."""

    def make(mutate: Mutation | None = None) -> settings.Settings:
        customers = _customers()
        audiences = _audiences(campaign, customers)
        if mutate is not None:
            mutate(customers, audiences)
        home = tmp_path / "omni"
        home.mkdir(exist_ok=True)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("OMNI_HOME", str(home))
            cfg = settings.load()
        con = duckdb.connect(str(cfg.warehouse_path))
        try:
            con.execute("create schema if not exists marts")
            con.execute("create schema if not exists activation")
            con.register("customers_frame", customers)
            con.execute("create or replace table marts.dim_customers as from customers_frame")
            for table, frame in audiences.items():
                con.register("frame", frame)
                con.execute(f"create or replace table activation.{table} as from frame")
                con.unregister("frame")
        finally:
            con.close()
        return cfg

    return make


def _failed_checks(error: ActivationCheckFailed) -> set[str]:
    return {check["name"] for check in error.summary["checks"] if not check["passed"]}


def test_good_audience_passes_every_check(
    build: Callable[..., settings.Settings], campaign: Campaign
) -> None:
    cfg = build()
    summary = check_audience(cfg, campaign)
    assert summary["passed"]
    assert {check["name"] for check in summary["checks"]} == {
        "consent", "duplicates", "holdout_share", "budget"
    }  # fmt: skip
    assert not any(check["skipped"] for check in summary["checks"])
    assert summary["decisions"] == CUSTOMERS
    assert summary["contacts"] == CUSTOMERS * 2 + CUSTOMERS // 2  # other campaign left out
    assert (cfg.quality_dir / "activation" / f"{campaign.id}-latest.json").exists()


def test_a_customer_without_email_consent_is_caught(
    build: Callable[..., settings.Settings], campaign: Campaign
) -> None:
    def withdraw(customers: pd.DataFrame, _: dict[str, pd.DataFrame]) -> None:
        customers.loc[customers["customer_id"] == "C00007", "has_email_consent"] = False

    with pytest.raises(ActivationCheckFailed) as failed:
        check_audience(build(withdraw), campaign)
    assert _failed_checks(failed.value) == {"consent"}
    assert "C00007 on email (no_email_consent)" in str(failed.value)
    assert "Nothing was handed to dispatch" in str(failed.value)


def test_cashback_to_a_customer_without_loyalty_account_is_caught(
    build: Callable[..., settings.Settings], campaign: Campaign
) -> None:
    def leave_programme(customers: pd.DataFrame, _: dict[str, pd.DataFrame]) -> None:
        customers.loc[customers["customer_id"] == "C00003", "is_loyalty_member"] = False

    with pytest.raises(ActivationCheckFailed) as failed:
        check_audience(build(leave_programme), campaign)
    assert _failed_checks(failed.value) == {"consent"}
    assert "C00003 on loyalty_cashback (not_loyalty_member)" in str(failed.value)


def test_a_duplicate_contact_is_caught(
    build: Callable[..., settings.Settings], campaign: Campaign
) -> None:
    def duplicate(_: pd.DataFrame, audiences: dict[str, pd.DataFrame]) -> None:
        email = audiences["sync_email_audience"]
        copy = email.iloc[[10]].copy()
        copy["contact_id"] = "a-second-id-for-the-same-contact"
        audiences["sync_email_audience"] = pd.concat([email, copy])

    with pytest.raises(ActivationCheckFailed) as failed:
        check_audience(build(duplicate), campaign)
    assert _failed_checks(failed.value) == {"duplicates"}
    assert "C00010 on email" in str(failed.value)


def test_a_skewed_holdout_is_caught(
    build: Callable[..., settings.Settings], campaign: Campaign
) -> None:
    def skew(_: pd.DataFrame, audiences: dict[str, pd.DataFrame]) -> None:
        for frame in audiences.values():  # a quarter of the customers more held out: ~35 %
            frame.loc[frame["customer_id"] < "C00125", "is_holdout"] = True

    with pytest.raises(ActivationCheckFailed) as failed:
        check_audience(build(skew), campaign)
    assert _failed_checks(failed.value) == {"holdout_share"}
    assert "configured 10.0%" in str(failed.value)


def test_cost_over_the_budget_is_caught(
    build: Callable[..., settings.Settings], campaign: Campaign
) -> None:
    def expensive(_: pd.DataFrame, audiences: dict[str, pd.DataFrame]) -> None:
        for frame in audiences.values():
            frame["estimated_cost_eur"] = 10.0  # ~450 treated decisions x 10 EUR > 3,000 EUR

    with pytest.raises(ActivationCheckFailed) as failed:
        check_audience(build(expensive), campaign)
    assert _failed_checks(failed.value) == {"budget"}
    assert "budget cap of 3,000.00 EUR" in str(failed.value)


def test_holdout_share_is_not_checked_on_a_small_audience(
    build: Callable[..., settings.Settings], campaign: Campaign
) -> None:
    def small_and_skewed(customers: pd.DataFrame, audiences: dict[str, pd.DataFrame]) -> None:
        for table, frame in audiences.items():
            kept = frame[frame["customer_id"] < f"C{MIN_HOLDOUT_SAMPLE - 1:05d}"].copy()
            kept["is_holdout"] = kept["customer_id"] < "C00100"  # half held out
            audiences[table] = kept

    summary = check_audience(build(small_and_skewed), campaign)
    holdout = next(check for check in summary["checks"] if check["name"] == "holdout_share")
    assert holdout["skipped"] and holdout["passed"]


def test_holdout_tolerance_shrinks_with_the_audience() -> None:
    assert holdout_tolerance(10, 10_000) < holdout_tolerance(10, 400) < 0.07
    assert holdout_tolerance(0, 400) == pytest.approx(0.5 / 400)


def test_missing_audiences_fail_readably(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    cfg = settings.load()
    with pytest.raises(ActivationCheckFailed, match="no warehouse"):
        read_audience(cfg, "anything")
    duckdb.connect(str(cfg.warehouse_path)).close()
    with pytest.raises(ActivationCheckFailed, match="sync_email_audience"):
        read_audience(cfg, "anything")


# --- hand-off -------------------------------------------------------------------------------


def test_handoff_is_written_once_per_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    cfg = settings.load()
    run_id = "asset_triggered__2026-11-22T10:00:00+00:00"
    first = pd.DataFrame({"contact_id": ["a", "b"], "channel": ["email", "in_store"]})
    path = write_handoff(cfg, "spring", run_id, first)
    assert path == handoff_path(cfg, "spring", run_id)
    assert path.parent == tmp_path / "outbox" / "spring" and ":" not in path.name
    written = path.read_bytes()
    again = write_handoff(cfg, "spring", run_id, first.head(1))  # a retry of the same run
    assert again == path and path.read_bytes() == written
    assert pd.read_parquet(path)["contact_id"].tolist() == ["a", "b"]
    assert read_handoff_metadata(path)["run_id"] == run_id
    other = write_handoff(cfg, "spring", "manual__2", first.head(1))
    assert other != path and len(pd.read_parquet(other)) == 1
    assert sorted(item.name for item in path.parent.iterdir()) == sorted([path.name, other.name])


def test_hand_to_dispatch_sends_the_checked_treated_contacts_once(
    build: Callable[..., settings.Settings], campaign: Campaign
) -> None:
    cfg = build()
    checked = check_audience(cfg, campaign)
    dry = hand_to_dispatch(cfg, campaign.id, "run-1", checked, dry_run=True)
    assert dry["path"] is None and not handoff_path(cfg, campaign.id, "run-1").exists()
    result = hand_to_dispatch(cfg, campaign.id, "run-1", checked)
    handed = pd.read_parquet(result["path"])
    treated = sum(checked["treated_by_channel"].values())
    # treated and holdout rows (flagged) are handed off; the ledger never sends the holdouts
    assert (~handed["is_holdout"]).sum() == result["treated_contacts"] == treated > 0
    assert handed["is_holdout"].sum() == result["holdout_contacts"] > 0
    assert set(handed["campaign_id"]) == {campaign.id}
    assert result["treated_by_channel"] == checked["treated_by_channel"]
    assert result["holdout_decisions"] > 0
    again = hand_to_dispatch(cfg, campaign.id, "run-1", checked)
    assert again["path"] == result["path"] and again.get("kept")
    stale = {**checked, "fingerprint": "0" * 16}
    with pytest.raises(HandoffError, match="changed since it was checked"):
        hand_to_dispatch(cfg, campaign.id, "run-2", stale)


def test_no_holdout_configured_means_nobody_held_out_even_when_small(
    build: Callable[..., settings.Settings], campaign: Campaign
) -> None:
    def small(customers: pd.DataFrame, audiences: dict[str, pd.DataFrame]) -> None:
        for table, frame in audiences.items():
            kept = frame[frame["customer_id"] < "C00020"].copy()
            kept["is_holdout"] = kept["customer_id"] == "C00001"
            audiences[table] = kept

    no_holdout = campaign.model_copy(update={"holdout_percent": 0.0})
    with pytest.raises(ActivationCheckFailed) as failed:
        check_audience(build(small), no_holdout)
    assert _failed_checks(failed.value) == {"holdout_share"}


def test_an_empty_audience_passes_and_hands_off_an_empty_file(
    build: Callable[..., settings.Settings], campaign: Campaign
) -> None:
    def nobody(_: pd.DataFrame, audiences: dict[str, pd.DataFrame]) -> None:
        for table, frame in audiences.items():
            audiences[table] = frame[frame["campaign_id"] != campaign.id]

    cfg = build(nobody)
    summary = check_audience(cfg, campaign)
    assert summary["passed"] and summary["contacts"] == 0 and summary["checks"] == []
    result = hand_to_dispatch(cfg, campaign.id, "run-empty", summary)
    assert result["treated_contacts"] == 0
    assert len(pd.read_parquet(result["path"])) == 0

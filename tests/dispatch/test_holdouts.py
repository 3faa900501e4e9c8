"""Holdouts in the dispatch ledger: a hand-off file's held-out rows are recorded once per
decision in ``holdouts``, exported for the warehouse, and can never be claimed or sent (the
last test runs the whole dispatch against the sandbox SendGrid, loyalty and store APIs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from dispatch_world import CAMPAIGN, contact_ids, customer_id, handoff_rows, sandbox_home

from orchestration import settings
from orchestration.campaigns.handoff import write_handoff
from orchestration.dispatch import Channel, Ledger, contact_id_for
from orchestration.dispatch.ledger import HOLDOUT_COLUMNS

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CHANNELS = ("email", "loyalty_cashback", "in_store")


def handoff_frame(customers: int, held_out: set[int], campaign: str = "cmp_h") -> pd.DataFrame:
    """A run's hand-off: every decision on every channel (as the sync_* audiences give it),
    the held-out decisions flagged; each channel is due a few minutes apart."""
    rows = []
    for index in range(customers):
        for offset, channel in enumerate(CHANNELS):
            customer, trigger = f"cus_{index:04d}", f"trg_{index:04d}"
            rows.append(
                {
                    "contact_id": contact_id_for(campaign, customer, trigger, channel),
                    "campaign_id": campaign,
                    "customer_id": customer,
                    "trigger_key": trigger,
                    "channel": channel,
                    "offer_id": f"{campaign}_offer",
                    "offer_code": "SAVE10",
                    "offer_value": 10.0,
                    "scheduled_send_at": NOW - timedelta(minutes=10 - offset),
                    "is_transactional": False,
                    "estimated_cost_eur": 2.5,
                    "email": f"c{index}@example.test",
                    "is_holdout": index in held_out,
                }
            )
    frame = pd.DataFrame(rows)
    frame["scheduled_send_at"] = pd.to_datetime(frame["scheduled_send_at"], utc=True)
    return frame


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> settings.Settings:
    monkeypatch.setenv("OMNI_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OMNI_LEDGER_URL", raising=False)
    return settings.load()


def test_handoff_records_treated_contacts_and_holdouts_apart(cfg: settings.Settings) -> None:
    held_out = {1, 4, 7}
    frame = handoff_frame(10, held_out)
    path = write_handoff(cfg, "cmp_h", "run-1", frame)
    with Ledger.from_settings(cfg) as ledger:
        first = ledger.record_handoff(path, now=NOW)
        assert first == {
            "recorded": 7 * len(CHANNELS),
            "already_recorded": 0,
            "holdouts_recorded": 3,  # one per decision, whatever its channels
            "holdouts_already_recorded": 0,
        }
        assert ledger.record_handoff(path, now=NOW + timedelta(hours=1)) == {
            "recorded": 0,
            "already_recorded": 7 * len(CHANNELS),
            "holdouts_recorded": 0,
            "holdouts_already_recorded": 3,
        }
        exported = ledger.export_holdouts()
        contacted = {row.customer_id for row in ledger.list_contacts()}
        payloads = [row.payload for row in ledger.list_contacts()]
    assert all(tuple(row) == HOLDOUT_COLUMNS for row in exported)
    assert [row["customer_id"] for row in exported] == [f"cus_{i:04d}" for i in sorted(held_out)]
    assert {row["trigger_key"] for row in exported} == {f"trg_{i:04d}" for i in held_out}
    # the earliest would-be send time of the decision; the first recording is kept
    earliest = (NOW - timedelta(minutes=10)).replace(tzinfo=None)
    assert {row["would_contact_at"] for row in exported} == {earliest}
    assert {row["recorded_at"] for row in exported} == {NOW.replace(tzinfo=None)}
    assert contacted.isdisjoint({row["customer_id"] for row in exported})
    assert len(contacted) == 7
    assert all("is_holdout" not in payload for payload in payloads)  # not a channel field


def test_holdouts_are_never_claimed(cfg: settings.Settings) -> None:
    frame = handoff_frame(6, held_out={0, 2, 3, 5})
    path = write_handoff(cfg, "cmp_h", "run-1", frame)
    with Ledger.from_settings(cfg) as ledger:
        ledger.record_handoff(path, now=NOW)
        claimed = [
            contact
            for channel in Channel
            for contact in ledger.claim(channel, 1000, now=NOW + timedelta(days=30))
        ]
        held = {(row["customer_id"], row["trigger_key"]) for row in ledger.export_holdouts()}
        assert len(claimed) == 2 * len(CHANNELS)  # the two treated decisions, every channel
        assert {(c.customer_id, c.trigger_key) for c in claimed}.isdisjoint(held)
        assert len(held) == 4
        # a holdout row given as an intent is refused, so nothing can put it in the send queue
        holdout_row = frame[frame["is_holdout"]].iloc[0].to_dict()
        with pytest.raises(ValueError, match="holdout row is never a contact"):
            ledger.record_intents([holdout_row])
        assert sum(ledger.counts().values()) == 2 * len(CHANNELS)


def test_a_bad_holdout_row_records_nothing(cfg: settings.Settings) -> None:
    frame = handoff_frame(4, held_out={1})
    frame.loc[frame["is_holdout"], "trigger_key"] = None
    path = write_handoff(cfg, "cmp_h", "run-bad", frame)
    with Ledger.from_settings(cfg) as ledger:
        with pytest.raises(ValueError, match="holdout row lacks trigger_key"):
            ledger.record_handoff(path, now=NOW)
        assert sum(ledger.counts().values()) == 0
        assert ledger.export_holdouts() == []


def test_a_file_without_holdout_flags_is_all_contacts(cfg: settings.Settings) -> None:
    frame = handoff_frame(3, held_out=set()).drop(columns=["is_holdout"])
    path = write_handoff(cfg, "cmp_h", "run-old", frame)
    with Ledger.from_settings(cfg) as ledger:
        counts: dict[str, Any] = ledger.record_handoff(path, now=NOW)
        assert counts == {"recorded": 3 * len(CHANNELS), "already_recorded": 0}
        assert ledger.export_holdouts() == []


def test_export_holdouts_filters_by_campaign(cfg: settings.Settings) -> None:
    with Ledger.from_settings(cfg) as ledger:
        for campaign in ("cmp_a", "cmp_b"):
            frame = handoff_frame(3, held_out={0, 1, 2}, campaign=campaign)
            ledger.record_holdouts(frame.to_dict("records"), now=NOW)
        assert {row["campaign_id"] for row in ledger.export_holdouts("cmp_b")} == {"cmp_b"}
        assert len(ledger.export_holdouts()) == 6


def test_a_dispatch_run_sends_nothing_to_held_out_customers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real run (outbox -> ledger -> offer check -> every channel) on a hand-off whose
    customers 3, 7 and 11 are held out: the sandbox services never hear of them."""
    from orchestration.dispatch.run import dispatch

    customers, held_out = 14, {3, 7, 11}
    with sandbox_home(tmp_path / "home", monkeypatch, customers) as (sandbox, cfg):
        rows = handoff_rows(customers)
        for row in rows:
            row["is_holdout"] = int(row["customer_id"].removeprefix("cus_")) in held_out
        write_handoff(cfg, CAMPAIGN, "run_1", pd.DataFrame(rows))
        result = dispatch(cfg)
        with Ledger.from_settings(cfg) as ledger:
            exported = ledger.export_holdouts()
        ids = contact_ids(customers)
        reached = {
            ids[key][0]
            for key in [
                *sandbox.deliveries_by_dispatch_id(),
                *(credit["idempotency_key"] for credit in sandbox.credits()),
                *(offer["offer_key"] for offer in sandbox.offers()),
            ]
        }
    assert result["prepare"]["handoffs"]["recorded"] == 3 * (customers - len(held_out))
    assert reached and reached.isdisjoint(held_out)
    assert {row["customer_id"] for row in exported} == {customer_id(n) for n in held_out}

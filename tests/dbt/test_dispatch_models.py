"""The contact history closes the loop: ledger -> ``load_dispatch`` -> dbt -> the audiences.

On the small world of ``test_dbt_build`` (its ``built`` fixture: simulator, sandbox, dlt,
staging/intermediate/marts), the shipped campaigns are published live and the dispatch,
trigger and activation models built once with no ledger at all (the ``dispatch`` sources do
not exist yet). Then a real dispatch ledger records what happened to a few customers who
were in an audience: an email that bounced, one that was unsubscribed from, three delivered
emails this week, a held-out decision; SendGrid events are stored in the ledger database as
the email channel stores them; ``load_dispatch`` copies it all into the warehouse and dbt
builds the dispatch and activation models again (data and unit tests included). The
audiences must now read that history: email blocked after a bounce or an unsubscribe, the
frequency cap reached by delivered contacts, the held-out decision not offered again.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, insert
from test_dbt_build import Built, built, run_dbt  # noqa: F401 (built: the world fixture)

from orchestration import settings
from orchestration.campaigns import load_all
from orchestration.campaigns.publish import publish_configs
from orchestration.dispatch import Ledger
from orchestration.dispatch.warehouse_load import load_dispatch

MODELS = ("path:models/dispatch", "path:models/triggers", "path:models/activation")
EARLIER = "earlier_campaign"  # the history's campaign: the cap spans campaigns


@dataclass(frozen=True)
class Decision:
    campaign_id: str
    customer_id: str
    trigger_key: str


@dataclass(frozen=True)
class Dispatched:
    cfg: settings.Settings
    built: Built
    as_of_at: datetime
    before: dict[tuple[str, str], tuple[Any, ...]]
    bounced: Decision
    unsubscribed: Decision
    capped: Decision
    held_out: Decision
    loaded: dict[str, int]


def query(cfg: settings.Settings, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def decisions(cfg: settings.Settings) -> dict[tuple[str, str], tuple[Any, ...]]:
    """(campaign, customer) -> (trigger_key, suppression_reason, email_check, contacts_7d)."""
    rows = query(
        cfg,
        "select campaign_id, customer_id, trigger_key, suppression_reason, email_check, "
        "contacts_last_7_days from activation.int_campaign_eligibility",
    )
    return {(row[0], row[1]): tuple(row[2:]) for row in rows}


def live_campaigns(directory: Path) -> Path:
    """The shipped campaigns, active over the whole simulated period."""
    shutil.copytree(settings.REPO_ROOT / "campaigns", directory)
    for path in directory.glob("*.yml"):
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"(?m)^status: .*$", "status: active", text)
        text = re.sub(r"(?m)^start_date: .*$", "start_date: 2026-01-01", text)
        text = re.sub(r"(?m)^end_date: .*$", "end_date: 2027-12-31", text)
        path.write_text(text, encoding="utf-8")
    return directory


def email_events_table(ledger: Ledger) -> Table:
    """The ``email_events`` table of the ledger database, as the contract defines it."""
    table = Table(
        "email_events",
        MetaData(),
        Column("sg_event_id", Text, primary_key=True),
        Column("event", Text),
        Column("email", Text),
        Column("occurred_at", DateTime),
        Column("sg_message_id", Text),
        Column("dispatch_id", String(32)),
        Column("campaign_id", String(200)),
        Column("customer_id", String(200)),
        Column("reason", Text),
        Column("url", Text),
        Column("received_at", DateTime),
    )
    table.create(ledger.engine, checkfirst=True)
    return table


def record_history(cfg: settings.Settings, picks: list[Decision], as_of: datetime) -> None:
    """Email contacts of an earlier campaign, sent through the ledger, with their events."""
    bounced, unsubscribed, capped, held_out = picks
    sends = [  # customer, trigger, days before now, events
        (bounced.customer_id, "hist_a", 2, ["bounce"]),
        (unsubscribed.customer_id, "hist_b", 2, ["delivered", "open", "unsubscribe"]),
        *((capped.customer_id, f"hist_c{day}", day, ["delivered"]) for day in (1, 2, 3)),
    ]
    with Ledger.from_settings(cfg) as ledger:
        rows = [
            {
                "campaign_id": EARLIER,
                "customer_id": customer,
                "trigger_key": trigger,
                "channel": "email",
                "scheduled_send_at": as_of - timedelta(days=days),
                "estimated_cost_eur": 1.0,
            }
            for customer, trigger, days, _ in sends
        ]
        ledger.record_intents(rows, now=as_of - timedelta(days=4))
        claimed = {c.trigger_key: c for c in ledger.claim("email", 100, now=as_of)}
        assert len(claimed) == len(sends)
        events = []
        for customer, trigger, days, kinds in sends:
            sent_at = as_of - timedelta(days=days)
            contact = ledger.mark_sent(claimed[trigger].contact_id, f"msg-{trigger}", now=sent_at)
            for minute, kind in enumerate(kinds, start=1):
                events.append(
                    {
                        "sg_event_id": f"ev-{trigger}-{kind}",
                        "event": kind,
                        "email": f"{customer}@example.test",
                        "occurred_at": (sent_at + timedelta(minutes=minute)).replace(tzinfo=None),
                        "sg_message_id": f"msg-{trigger}.0",
                        "dispatch_id": contact.contact_id,
                        "campaign_id": EARLIER,
                        "customer_id": customer,
                        "received_at": (sent_at + timedelta(hours=1)).replace(tzinfo=None),
                    }
                )
        table = email_events_table(ledger)
        with ledger.engine.begin() as conn:
            conn.execute(insert(table), events)
        ledger.record_holdouts(
            [
                {
                    "campaign_id": held_out.campaign_id,
                    "customer_id": held_out.customer_id,
                    "trigger_key": held_out.trigger_key,
                    "scheduled_send_at": as_of - timedelta(hours=1),
                }
            ],
            now=as_of,
        )


@pytest.fixture(scope="module")
def dispatched(built: Built) -> Iterator[Dispatched]:  # noqa: F811 (the imported fixture)
    home = built.warehouse.parent
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMNI_HOME", str(home))
        patch.delenv("OMNI_LEDGER_URL", raising=False)
        cfg = settings.load()
        campaigns, errors = load_all(live_campaigns(home.parent / "campaigns"))
        assert not errors
        publish_configs(cfg, campaigns)
        first = run_dbt(home, built.target_dir, "build", "--select", *MODELS)
        assert first.returncode == 0, first.stdout[-6000:]
        assert query(cfg, "select count(*) from marts.fct_campaign_contacts") == [(0,)]
        before = decisions(cfg)
        eligible = query(
            cfg,
            "select campaign_id, customer_id, trigger_key from activation.int_campaign_eligibility "
            "where is_in_audience and not is_holdout and not is_transactional "
            "and email_check = 'ok' order by campaign_id, customer_id",
        )
        picks: list[Decision] = []
        for campaign_id, customer_id, trigger_key in eligible:
            if customer_id not in {pick.customer_id for pick in picks}:
                picks.append(Decision(campaign_id, customer_id, trigger_key))
        assert len(picks) >= 4, eligible
        picks = picks[:4]
        (clock,) = query(cfg, "select as_of_at from triggers.triggers_clock")
        as_of = clock[0].replace(tzinfo=UTC)
        record_history(cfg, picks, as_of)
        loaded = load_dispatch(cfg)
        # the webhook may deliver an event twice: the copy must not count twice
        with duckdb.connect(str(cfg.warehouse_path)) as con:
            con.execute(
                "insert into dispatch.email_events select * from dispatch.email_events "
                "where sg_event_id = 'ev-hist_c1-delivered'"
            )
        second = run_dbt(
            home, built.target_dir, "build", "--select", "path:models/dispatch",
            "path:models/activation",
        )  # fmt: skip
        assert second.returncode == 0, second.stdout[-6000:]
        yield Dispatched(cfg, built, as_of, before, *picks, loaded=loaded)


def test_the_ledger_loads_and_refines_into_the_contact_history(dispatched: Dispatched) -> None:
    assert dispatched.loaded == {"contacts": 5, "holdouts": 1, "email_events": 7}
    statuses = query(
        dispatched.cfg,
        "select customer_id, status, ledger_status, event_count, bounced_at is not null, "
        "unsubscribed_at is not null, delivered_at is not null from marts.fct_campaign_contacts "
        "order by customer_id, contact_id",
    )
    by_customer: dict[str, list[tuple[Any, ...]]] = {}
    for customer, *rest in statuses:
        by_customer.setdefault(customer, []).append(tuple(rest))
    assert by_customer == {
        dispatched.bounced.customer_id: [("bounced", "sent", 1, True, False, False)],
        dispatched.unsubscribed.customer_id: [("unsubscribed", "sent", 3, False, True, True)],
        dispatched.capped.customer_id: [("delivered", "sent", 1, False, False, True)] * 3,
    }
    held = query(
        dispatched.cfg,
        "select campaign_id, customer_id, trigger_key, would_contact_at "
        "from marts.fct_campaign_holdouts",
    )
    pick = dispatched.held_out
    expected_at = (dispatched.as_of_at - timedelta(hours=1)).replace(tzinfo=None)
    assert held == [(pick.campaign_id, pick.customer_id, pick.trigger_key, expected_at)]


def test_a_bounce_or_an_unsubscribe_blocks_the_email_channel(dispatched: Dispatched) -> None:
    blocks = dict(
        query(
            dispatched.cfg,
            "select customer_id, block_reason from activation.int_customer_channel_blocks "
            "where channel = 'email'",
        )
    )
    assert blocks.get(dispatched.bounced.customer_id) == "email_bounced"
    assert blocks.get(dispatched.unsubscribed.customer_id) == "email_unsubscribed"
    assert dispatched.capped.customer_id not in blocks  # delivered: still reachable
    after = decisions(dispatched.cfg)
    for pick, reason in (
        (dispatched.bounced, "email_bounced"),
        (dispatched.unsubscribed, "email_unsubscribed"),
    ):
        key = (pick.campaign_id, pick.customer_id)
        assert dispatched.before[key][2] == "ok"
        assert after[key][2] == reason  # the audience no longer emails them


def test_delivered_contacts_count_toward_the_frequency_cap(dispatched: Dispatched) -> None:
    key = (dispatched.capped.campaign_id, dispatched.capped.customer_id)
    assert dispatched.before[key][1] is None and dispatched.before[key][3] == 0
    _, reason, _, contacts_last_7_days = decisions(dispatched.cfg)[key]
    assert (reason, contacts_last_7_days) == ("frequency_cap", 3)


def test_a_held_out_decision_is_not_offered_again(dispatched: Dispatched) -> None:
    pick = dispatched.held_out
    key = (pick.campaign_id, pick.customer_id)
    assert dispatched.before[key][1] is None
    trigger_key, reason, *_ = decisions(dispatched.cfg)[key]
    assert (trigger_key, reason) == (pick.trigger_key, "re_entry_same_trigger")
    suppressed = query(
        dispatched.cfg,
        "select count(*) from activation.sync_email_audience "
        f"where campaign_id = '{pick.campaign_id}' and customer_id = '{pick.customer_id}'",
    )
    assert suppressed == [(0,)]

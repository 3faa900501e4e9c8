"""`omni customer ID` and the measurement steps on a small warehouse built through the real chain.

simulator (300 customers) -> in-process sandbox services -> dlt ingest of the three sources ->
campaign configs published -> the (empty) ledger loaded -> ``dbt build`` of every model (private
OMNI_HOME, target and logs). Then a contact history is made the way dispatch makes it: intents
recorded in the real ledger, an email claimed and marked sent, a SendGrid "open" event stored
in the ledger database, a holdout recorded; the measurement DAG's steps
(:mod:`orchestration.measurement.pipeline`) poll the sandbox SendGrid feed, load the ledger and
rebuild the dispatch and measurement models. The expected history is read from the marts
directly and compared with what the command prints.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from orchestration import cli, settings
from orchestration.measurement import pipeline
from orchestration.measurement.customer import UnknownCustomer, customer_history

from .builders import marks, parse_report, run_dbt

CUSTOMERS = 300
DAYS = 60
SEED = 7
END_DATE = date(2026, 11, 1)
CONTACTED_CAMPAIGN = "abandoned_cart_nearby_store"
HELD_OUT_CAMPAIGN = "win_back_recovery"


@dataclass(frozen=True)
class Built:
    home: Path
    world_dir: Path
    target_dir: Path
    customer_id: str  # a customer with orders on several days, contacted later in the test
    sendgrid_url: str


def query(home: Path, sql: str, parameters: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql, parameters or []).fetchall()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    from orchestration.campaigns.publish import publish_campaign_files
    from orchestration.dispatch.warehouse_load import load_dispatch
    from orchestration.sandbox import services, world
    from orchestration.sources import ingest

    root = tmp_path_factory.mktemp("measurement_history")
    home = root / "omni"
    world_dir = home / "world"
    target_dir = root / "target"
    world.generate(world_dir, CUSTOMERS, DAYS, SEED, end_date=END_DATE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMNI_HOME", str(home))
        patch.delenv("OMNI_LEDGER_URL", raising=False)
        with services.running(world_dir, ("shop", "pos", "social", "sendgrid")) as urls:
            patch.setenv("OMNI_SENDGRID_URL", urls["sendgrid"])
            cfg = settings.load()
            for source in ("shop", "pos", "social"):
                ingest(source, base_url=urls[source], cfg=cfg)
            publish_campaign_files(cfg)
            load_dispatch(cfg)
            result = run_dbt(home, target_dir, "build")
            assert result.returncode == 0, result.stdout[-6000:]
            ((customer_id,),) = query(
                home,
                "select customer_id from marts.fct_orders where customer_id is not null "
                "group by customer_id having count(distinct order_date) >= 3 "
                "order by count(*) desc, customer_id limit 1",
            )
            yield Built(home, world_dir, target_dir, str(customer_id), urls["sendgrid"])


@pytest.fixture
def cfg(built: Built, monkeypatch: pytest.MonkeyPatch) -> settings.Settings:
    monkeypatch.setenv("OMNI_HOME", str(built.home))
    monkeypatch.setenv("OMNI_SENDGRID_URL", built.sendgrid_url)
    monkeypatch.delenv("OMNI_LEDGER_URL", raising=False)
    return settings.load()


def test_history_holds_every_record_order_cart_and_interaction(
    built: Built, cfg: settings.Settings
) -> None:
    history = customer_history(cfg, built.customer_id)
    records = query(
        built.home,
        "select record_key from intermediate.int_customers_unified where customer_id = ?",
        [built.customer_id],
    )
    assert sorted(r["record_key"] for r in history["identities"]) == sorted(r[0] for r in records)
    orders = query(
        built.home,
        "select order_id from marts.fct_orders where customer_id = ?",
        [built.customer_id],
    )
    shown = [e for e in history["timeline"] if e["kind"] == "order"]
    assert sorted(e["detail"]["order_id"] for e in shown) == sorted(r[0] for r in orders)
    lines = query(
        built.home,
        "select count(*) from marts.fct_order_lines where customer_id = ?",
        [built.customer_id],
    )
    assert sum(len(e["detail"]["lines"]) for e in shown) == lines[0][0]
    carts = query(
        built.home,
        "select count(*) from marts.fct_abandoned_carts where customer_id = ?",
        [built.customer_id],
    )
    assert history["counts"].get("abandoned_cart", 0) == carts[0][0]
    others = query(
        built.home,
        "select count(*) from marts.fct_customer_interactions where customer_id = ? "
        "and interaction_type not in ('web_order', 'store_sale', 'checkout')",
        [built.customer_id],
    )
    kinds = ("order", "abandoned_cart", "contact", "holdout")
    assert sum(1 for e in history["timeline"] if e["kind"] not in kinds) == others[0][0]
    stamps = [e["at"] for e in history["timeline"]]
    assert stamps == sorted(stamps), "the history is in time order"


def test_unknown_customer_is_exit_2_and_a_source_key_resolves(
    built: Built, cfg: settings.Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["customer", "no-such-customer"]) == 2
    assert "unknown customer 'no-such-customer'" in capsys.readouterr().err
    with pytest.raises(UnknownCustomer):
        customer_history(cfg, "")
    ((record_key,),) = query(
        built.home,
        "select min(record_key) from intermediate.int_customers_unified where customer_id = ?",
        [built.customer_id],
    )
    assert customer_history(cfg, record_key)["customer_id"] == built.customer_id


def test_contacts_with_status_outcome_and_holdouts_after_measurement(
    built: Built, cfg: settings.Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before dispatch: "no contacts yet". After: the contact, its status and its outcome."""
    assert cli.main(["customer", built.customer_id]) == 0
    assert "contacts: no contacts yet" in capsys.readouterr().out

    from sqlalchemy import insert

    from orchestration.dispatch import Ledger
    from orchestration.dispatch.email_events import email_events, ensure_tables, event_row

    # The contact happens one day before the customer's last order: that order is its outcome.
    ((last_order_id, last_ordered_at),) = query(
        built.home,
        "select order_id, ordered_at from marts.fct_orders where customer_id = ? "
        "order by ordered_at desc limit 1",
        [built.customer_id],
    )
    sent_at = last_ordered_at - timedelta(days=1)
    trigger_key = f"test:{built.customer_id}"
    with Ledger.from_settings(cfg) as ledger:
        ledger.record_intents(
            [
                {
                    "campaign_id": CONTACTED_CAMPAIGN,
                    "customer_id": built.customer_id,
                    "trigger_key": trigger_key,
                    "channel": channel,
                    "offer_code": "SHOP10",
                    "scheduled_send_at": sent_at,
                }
                for channel in ("email", "in_store")
            ],
            now=sent_at,
        )
        ledger.record_holdouts(
            [
                {
                    "campaign_id": HELD_OUT_CAMPAIGN,
                    "customer_id": built.customer_id,
                    "trigger_key": trigger_key,
                    "scheduled_send_at": sent_at,
                }
            ],
            now=sent_at,
        )
        (email,) = ledger.claim("email", 10, sent_at)
        ledger.mark_sent(email.contact_id, "msg-1", now=sent_at)
        ensure_tables(ledger)
        with ledger.engine.begin() as conn:
            conn.execute(
                insert(email_events),
                [
                    event_row(
                        {
                            "sg_event_id": "evt-open-1",
                            "event": "open",
                            "timestamp": int((sent_at + timedelta(hours=2)).timestamp()),
                            "dispatch_id": email.contact_id,
                            "campaign_id": CONTACTED_CAMPAIGN,
                            "customer_id": built.customer_id,
                        },
                        datetime.now(),
                    )
                ],
            )
    # The measurement DAG's steps (dbt with a private target instead of the checkout's).
    polled = pipeline.poll_email_events(cfg)
    assert polled["fetched"] == 0  # nothing was sent to the sandbox SendGrid
    assert pipeline.load_dispatch(cfg)["contacts"] == 2
    result = run_dbt(built.home, built.target_dir, "build", "--select", *pipeline.DBT_SELECT)
    assert result.returncode == 0, result.stdout[-6000:]

    assert cli.main(["customer", built.customer_id, "--json"]) == 0
    history = json.loads(capsys.readouterr().out)
    contacts = {contact["channel"]: contact for contact in history["contacts"]}
    assert contacts["email"]["status"] == "opened"
    assert contacts["in_store"]["status"] == "queued"  # recorded, not sent yet
    assert last_order_id in contacts["email"]["attributed_order_ids"]
    (holdout,) = history["holdouts"]
    assert holdout["campaign_id"] == HELD_OUT_CAMPAIGN
    assert last_order_id in holdout["attributed_order_ids"]
    kinds = [event["kind"] for event in history["timeline"]]
    assert kinds.count("contact") == 2 and kinds.count("holdout") == 1
    outcome = next(
        index
        for index, event in enumerate(history["timeline"])
        if event["kind"] == "order" and event["detail"]["order_id"] == last_order_id
    )
    assert kinds.index("contact") < outcome, "the contact precedes its outcome order"

    assert cli.main(["customer", built.customer_id]) == 0
    text = capsys.readouterr().out
    assert f"{CONTACTED_CAMPAIGN}: opened, offer SHOP10" in text
    assert f"bought within the attribution window: {last_order_id}" in text
    assert "contacts: 2 (1 opened, 1 queued)" in text

    # The report on the real measurement schema: one lift interval per measured campaign.
    path = Path(pipeline.write_report(cfg))
    measured = query(
        built.home,
        "select distinct campaign_id from measurement.measurement_campaign_lift "
        "where dimension = 'overall'",
    )
    assert {CONTACTED_CAMPAIGN, HELD_OUT_CAMPAIGN} <= {row[0] for row in measured}
    drawn = marks(parse_report(path.read_text()), "lift")
    assert sorted(mark.attrs["data-label"] for mark in drawn) == sorted(r[0] for r in measured)
    assert "small sample, not significant" in path.read_text()

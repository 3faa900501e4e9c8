"""The email channel against the sandbox SendGrid: rendering, tracking, batching and faults.

Each test gets its own OMNI_HOME, a copy of the shipped campaigns, a small warehouse holding
the two marts the renderer reads (``marts.dim_customers``, ``marts.dim_stores``), a ledger and
a sandbox SendGrid on a free port. What SendGrid accepted is read back from the sandbox
(``/_sandbox/messages``), never from the code under test.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import requests

from orchestration import settings
from orchestration.dispatch import Ledger, State
from orchestration.dispatch.email import EmailAuthError, send_due
from orchestration.sandbox import services
from orchestration.settings import REPO_ROOT, Settings

CAMPAIGN = "abandoned_cart_nearby_store"
OFFER = "cesta_tienda_cashback_10"
TRIGGER_TYPE = "abandoned_cart_nearby_stock"
FIRST_NAMES = ("Lucía", "Mateo", "Carmen", "Hugo", "Martina", "Pablo", "Sofía", "Álvaro")


@dataclass
class EmailWorld:
    """One test's OMNI_HOME, ledger and sandbox SendGrid."""

    cfg: Settings
    ledger: Ledger
    sendgrid: str
    home: Path

    def faults(self, **values: Any) -> None:
        answer = requests.post(f"{self.sendgrid}/_sandbox/faults", json=values, timeout=10)
        answer.raise_for_status()

    def clear_faults(self) -> None:
        requests.delete(f"{self.sendgrid}/_sandbox/faults", timeout=10).raise_for_status()

    def messages(self, **filters: str) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.sendgrid}/_sandbox/messages", params=filters, timeout=10)
        answer.raise_for_status()
        return list(answer.json()["messages"])

    def recipients(self) -> list[dict[str, Any]]:
        return [recipient for message in self.messages() for recipient in message["recipients"]]

    def add_customers(self, customers: list[dict[str, Any]]) -> None:
        """Put these customers in the warehouse's ``marts.dim_customers``."""
        with duckdb.connect(str(self.cfg.warehouse_path)) as con:
            for customer in customers:
                con.execute(
                    "insert into marts.dim_customers values (?, ?, ?, ?, ?, ?, ?)",
                    [
                        customer["customer_id"],
                        customer["first_name"],
                        "García",
                        customer["email"],
                        "Valencia",
                        "S1",
                        2.4,
                    ],
                )

    def add_contacts(
        self,
        count: int,
        *,
        start: int = 0,
        same_content: bool = False,
        emails: dict[int, str] | None = None,
        campaign_id: str = CAMPAIGN,
        offer_id: str = OFFER,
        scheduled: datetime | None = None,
        in_warehouse: bool = True,
    ) -> list[str]:
        """Record ``count`` email intents (and their customers); returns their contact ids.

        ``same_content``: every contact renders to the same email (same name, store, cart),
        so they can share one request. ``emails``: addresses by index (others are valid).
        """
        due = scheduled or datetime.now(UTC) - timedelta(minutes=5)
        rows, customers = [], []
        for index in range(start, start + count):
            customer_id = f"cus_{index:05d}"
            first_name = "Ana" if same_content else FIRST_NAMES[index % len(FIRST_NAMES)]
            email = (emails or {}).get(index, f"customer{index}@example.test")
            title = "Zapatillas running" if same_content else f"Zapatillas modelo {index}"
            cart = {"checkout_id": 9000 + index, "total": 64.85, "shipping_cost": 4.95}
            items = [{"product_id": 501, "title": title, "quantity": 1, "unit_price": 59.9}]
            customers.append({"customer_id": customer_id, "first_name": first_name, "email": email})
            rows.append(
                {
                    "campaign_id": campaign_id,
                    "customer_id": customer_id,
                    "trigger_key": f"cart:{9000 + index}",
                    "channel": "email",
                    "trigger_type": TRIGGER_TYPE,
                    "offer_id": offer_id,
                    "offer_code": None,
                    "offer_kind": "cashback_percent",
                    "offer_value": 10.0,
                    "offer_valid_until": (due.date() + timedelta(days=7)).isoformat(),
                    "scheduled_send_at": due,
                    "email": email,
                    "first_name": first_name,
                    "store_id": "S1",
                    "timezone": "Europe/Madrid",
                    "estimated_cost_eur": 1.5,
                    "payload_json": json.dumps({"cart": cart, "cart_items": items}),
                }
            )
        if in_warehouse:
            self.add_customers(customers)
        self.ledger.record_intents(rows)
        return [
            contact.contact_id
            for contact in self.ledger.list_contacts(channel="email")
            if contact.customer_id in {row["customer_id"] for row in rows}
        ]


def build_warehouse(path: Path) -> None:
    """The two marts the renderer reads, with one store."""
    with duckdb.connect(str(path)) as con:
        con.execute("create schema marts")
        con.execute(
            "create table marts.dim_customers (customer_id varchar, first_name varchar, "
            "last_name varchar, email varchar, city varchar, nearest_store_id varchar, "
            "nearest_store_distance_km double)"
        )
        con.execute(
            "create table marts.dim_stores (store_id varchar, store_name varchar, city varchar, "
            "postal_code varchar, opens_local varchar, closes_local varchar)"
        )
        con.execute(
            "insert into marts.dim_stores values "
            "('S1', 'Omni Valencia Centro', 'Valencia', '46002', '10:00', '21:00')"
        )


@pytest.fixture
def email_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmailWorld]:
    home = tmp_path / "omni"
    home.mkdir()
    campaigns = tmp_path / "campaigns"
    shutil.copytree(REPO_ROOT / "campaigns", campaigns)
    monkeypatch.setenv("OMNI_HOME", str(home))
    monkeypatch.setenv("OMNI_CAMPAIGNS_DIR", str(campaigns))
    monkeypatch.setenv("OMNI_SENDGRID_ASM_GROUP_ID", "7")
    monkeypatch.delenv("OMNI_LEDGER_URL", raising=False)
    monkeypatch.delenv("OMNI_SENDGRID_TOKEN", raising=False)
    build_warehouse(home / "warehouse.duckdb")
    with services.running(home / "world", names=("sendgrid",)) as urls:
        monkeypatch.setenv("OMNI_SENDGRID_URL", urls["sendgrid"])
        cfg = settings.load()
        with Ledger.from_settings(cfg) as ledger:
            yield EmailWorld(cfg=cfg, ledger=ledger, sendgrid=urls["sendgrid"], home=home)


def wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def naive(stamp: datetime) -> datetime:
    return stamp.astimezone(UTC).replace(tzinfo=None)


# -- sending and rendering -------------------------------------------------------------------


def test_a_batch_is_rendered_tracked_and_sent_once(email_world: EmailWorld) -> None:
    ids = email_world.add_contacts(6)
    counts = send_due(email_world.ledger, email_world.cfg)
    assert counts == {"claimed": 6, "sent": 6, "failed": 0, "dead_lettered": 0, "unknown": 0}

    for contact_id in sorted(ids):
        contact = email_world.ledger.get(contact_id)
        assert contact.state is State.SENT and contact.provider_message_id
        found = email_world.messages(dispatch_id=contact_id)
        assert len(found) == 1, "exactly one message per contact"
        message = found[0]
        assert message["message_id"] == contact.provider_message_id
        (recipient,) = message["matching_recipients"]
        first_name = contact.payload["first_name"]
        assert recipient["email"] == contact.payload["email"]
        assert first_name in recipient["subject"] and "Omni Valencia Centro" in recipient["subject"]
        assert recipient["custom_args"] == {
            "dispatch_id": contact_id,
            "campaign_id": CAMPAIGN,
            "customer_id": contact.customer_id,
            "offer_id": OFFER,
        }
        request = message["request"]
        assert request["categories"] == ["omni", CAMPAIGN, TRIGGER_TYPE]
        assert request["asm"] == {"group_id": 7}
        assert request["from"]["email"] == "hola@omni.example"
        (person,) = [
            item
            for item in request["personalizations"]
            if item["to"][0]["email"] == recipient["email"]
        ]
        unsubscribe = person["headers"]["List-Unsubscribe"]
        assert (
            "mailto:" in unsubscribe
            and f"https://omni.example/unsubscribe/{contact_id}" in unsubscribe
        )
        assert person["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        content = {block["type"]: block["value"] for block in request["content"]}
        assert first_name in content["text/html"] and first_name in content["text/plain"]
        assert "10 % de cashback" in content["text/plain"]  # the campaign's offer label
        title = json.loads(contact.payload["payload_json"])["cart_items"][0]["title"]
        assert title in content["text/plain"]

    again = send_due(email_world.ledger, email_world.cfg)
    assert again["claimed"] == 0
    assert len(email_world.recipients()) == 6, "nothing was sent twice"


def test_identical_content_shares_a_request_and_a_bad_address_is_isolated(
    email_world: EmailWorld,
) -> None:
    shared = email_world.add_contacts(5, same_content=True, emails={2: "ana.at.example.test"})
    personal = email_world.add_contacts(3, start=10, emails={11: "luis@@example"})
    counts = send_due(email_world.ledger, email_world.cfg)
    assert counts == {"claimed": 8, "sent": 6, "failed": 0, "dead_lettered": 2, "unknown": 0}

    bad = {
        contact.contact_id: contact
        for contact in email_world.ledger.list_contacts(state=State.DEAD_LETTERED)
    }
    assert {contact.payload["email"] for contact in bad.values()} == {
        "ana.at.example.test",
        "luis@@example",
    }
    for contact in bad.values():
        assert contact.last_error and "Does not contain a valid address" in contact.last_error
        assert "to.0.email" in contact.last_error  # SendGrid's field, as it named it
        assert email_world.messages(dispatch_id=contact.contact_id) == []

    sent_shared = [cid for cid in shared if cid not in bad]
    messages = {email_world.messages(dispatch_id=cid)[0]["message_id"] for cid in sent_shared}
    assert len(messages) == 1, "contacts with identical content share one request"
    (message,) = email_world.messages(dispatch_id=sent_shared[0])
    assert len(message["recipients"]) == 4
    for contact_id in [*sent_shared, *(cid for cid in personal if cid not in bad)]:
        assert email_world.ledger.get(contact_id).state is State.SENT


def test_a_contact_that_cannot_be_rendered_is_dead_lettered_and_the_rest_go(
    email_world: EmailWorld,
) -> None:
    good = email_world.add_contacts(2)
    orphan = email_world.add_contacts(1, start=20, campaign_id="campaign_without_file")
    stranger = email_world.add_contacts(1, start=30, in_warehouse=False)
    other_offer = email_world.add_contacts(1, start=40, offer_id="some_other_offer")
    counts = send_due(email_world.ledger, email_world.cfg)
    assert counts["sent"] == 2 and counts["dead_lettered"] == 3

    reasons = {
        cid: email_world.ledger.get(cid).last_error or ""
        for cid in [*orphan, *stranger, *other_offer]
    }
    assert "no valid campaign file" in reasons[orphan[0]]
    assert "no customer 'cus_00030'" in reasons[stranger[0]]
    assert "offer mismatch" in reasons[other_offer[0]]
    assert {r["custom_args"]["dispatch_id"] for r in email_world.recipients()} == set(good)


# -- faults ----------------------------------------------------------------------------------


def test_an_injected_429_waits_for_the_reset_then_sends(email_world: EmailWorld) -> None:
    ids = email_world.add_contacts(3)
    email_world.faults(error_rate=1.0, error_status=429)
    start = datetime.now(UTC)
    counts = send_due(email_world.ledger, email_world.cfg, now=start)
    assert counts == {"claimed": 3, "sent": 0, "failed": 3, "dead_lettered": 0, "unknown": 0}
    for contact_id in ids:
        contact = email_world.ledger.get(contact_id)
        assert contact.state is State.FAILED and "429" in (contact.last_error or "")
        # X-RateLimit-Reset is about a second ahead: not due before it
        assert contact.next_attempt_at is not None
        assert start < contact.next_attempt_at <= start + timedelta(seconds=3)
    assert email_world.recipients() == []

    email_world.clear_faults()
    early = send_due(email_world.ledger, email_world.cfg, now=start)
    assert early["claimed"] == 0, "not retried before the reset"
    later = send_due(email_world.ledger, email_world.cfg, now=start + timedelta(seconds=5))
    assert later["sent"] == 3
    assert len(email_world.recipients()) == 3


def test_a_rate_limit_paces_the_requests_and_delays_only_the_rejected(
    email_world: EmailWorld,
) -> None:
    ids = email_world.add_contacts(8)
    email_world.faults(rate_limit_per_second=5)  # one request every 0.2 s, no burst
    start = datetime.now(UTC)
    for round_ in range(10):
        now = start + timedelta(seconds=5 * round_)
        counts = send_due(email_world.ledger, email_world.cfg, now=now, workers=4)
        for contact in email_world.ledger.list_contacts(state=State.FAILED):
            # a 429 is a wait, not a failure: no attempt used, due again at Retry-After
            assert "SendGrid 429" in (contact.last_error or "")
            assert contact.attempts == 0
            assert contact.next_attempt_at is not None
            assert now + timedelta(seconds=1) <= contact.next_attempt_at
            assert contact.next_attempt_at <= now + timedelta(seconds=3)
        if counts["failed"] == 0:
            break
    assert email_world.ledger.counts(channel="email")["sent"] == 8
    assert sorted(r["custom_args"]["dispatch_id"] for r in email_world.recipients()) == sorted(ids)
    stats = requests.get(f"{email_world.sendgrid}/_sandbox/stats", timeout=10).json()
    rejected = stats["by_status"].get("429", 0)
    # the first 429 pauses every request until Retry-After and each one slows the pace: a few
    # rejections, not one per contact and retry (those of the first wave were in flight)
    assert 0 < rejected <= 8


def test_a_5xx_is_retried_with_backoff(email_world: EmailWorld) -> None:
    (contact_id,) = email_world.add_contacts(1)
    email_world.faults(error_rate=1.0, error_status=503)
    start = datetime.now(UTC)
    counts = send_due(email_world.ledger, email_world.cfg, now=start)
    assert counts["failed"] == 1
    contact = email_world.ledger.get(contact_id)
    assert contact.state is State.FAILED and "SendGrid 503" in (contact.last_error or "")
    assert contact.next_attempt_at == start + timedelta(seconds=2)  # 2 ** attempts

    email_world.clear_faults()
    assert send_due(email_world.ledger, email_world.cfg, now=start)["claimed"] == 0
    counts = send_due(email_world.ledger, email_world.cfg, now=start + timedelta(seconds=2))
    assert counts["sent"] == 1
    assert email_world.ledger.get(contact_id).attempts == 2
    assert len(email_world.messages(dispatch_id=contact_id)) == 1


def test_a_refused_connection_is_retried(
    email_world: EmailWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    (contact_id,) = email_world.add_contacts(1)
    monkeypatch.setenv("OMNI_SENDGRID_URL", "http://127.0.0.1:9")  # discard port: refused
    counts = send_due(email_world.ledger, settings.load())
    assert counts["failed"] == 1
    contact = email_world.ledger.get(contact_id)
    assert contact.state is State.FAILED and "unreachable" in (contact.last_error or "")


def test_a_timeout_is_unknown_and_never_resent(email_world: EmailWorld) -> None:
    (slow,) = email_world.add_contacts(1)
    email_world.faults(latency_ms=1500)
    counts = send_due(email_world.ledger, email_world.cfg, timeout=0.5)
    assert counts == {"claimed": 1, "sent": 0, "failed": 0, "dead_lettered": 0, "unknown": 1}
    assert email_world.ledger.get(slow).state is State.UNKNOWN
    email_world.clear_faults()
    # SendGrid did accept it, after the client gave up
    wait_for(lambda: len(email_world.messages(dispatch_id=slow)) == 1)

    later = datetime.now(UTC) + timedelta(days=3)
    again = send_due(email_world.ledger, email_world.cfg, now=later)
    assert again["claimed"] == 0
    time.sleep(0.3)
    assert len(email_world.messages(dispatch_id=slow)) == 1, "never sent twice"
    assert email_world.ledger.get(slow).state is State.UNKNOWN


def test_a_wrong_api_key_stops_the_run_and_dead_letters_nobody(
    email_world: EmailWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    email_world.add_contacts(3)
    monkeypatch.setenv("OMNI_SENDGRID_TOKEN", "not-the-key")
    with pytest.raises(EmailAuthError, match="401"):
        send_due(email_world.ledger, settings.load())
    assert email_world.ledger.counts(channel="email")["failed"] == 3
    assert email_world.ledger.counts(channel="email")["dead_lettered"] == 0


def test_limit_and_campaign_filter(email_world: EmailWorld) -> None:
    email_world.add_contacts(5)
    other = email_world.add_contacts(2, start=50, campaign_id="campaign_without_file")
    counts = send_due(
        email_world.ledger, email_world.cfg, limit=3, batch_size=2, campaign_id=CAMPAIGN
    )
    assert counts["claimed"] == 3 and counts["sent"] == 3
    assert all(email_world.ledger.get(cid).state is State.PENDING for cid in other)
    rest = send_due(email_world.ledger, email_world.cfg, campaign_id=CAMPAIGN)
    assert rest["sent"] == 2


def test_a_send_time_ahead_of_the_real_clock_is_scheduled(email_world: EmailWorld) -> None:
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    (contact_id,) = email_world.add_contacts(1, scheduled=ahead)
    send_due(email_world.ledger, email_world.cfg, now=ahead)  # a simulated clock ahead
    (message,) = email_world.messages(dispatch_id=contact_id)
    assert message["recipients"][0]["send_at"] == int(ahead.timestamp())


def test_an_email_is_sending_only_while_its_own_request_is_in_flight(
    email_world: EmailWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestration.dispatch import email

    ids = email_world.add_contacts(12)
    email_world.faults(latency_ms=30)
    seen: list[tuple[set[str], set[str]]] = []
    original = email.send_request

    def watched(client: Any, message: dict[str, Any]) -> Any:
        mine = {p["custom_args"]["dispatch_id"] for p in message["personalizations"]}
        sending = {c.contact_id for c in email_world.ledger.list_contacts(state=State.SENDING)}
        seen.append((mine, sending))
        return original(client, message)

    monkeypatch.setattr(email, "send_request", watched)
    counts = send_due(email_world.ledger, email_world.cfg, workers=3)
    assert counts["sent"] == 12 and len(seen) == 12
    for mine, sending in seen:
        assert mine <= sending  # its own contacts are sending while it goes
        assert len(sending) <= 3  # and only the requests in flight are (3 workers)
    assert {r["custom_args"]["dispatch_id"] for r in email_world.recipients()} == set(ids)

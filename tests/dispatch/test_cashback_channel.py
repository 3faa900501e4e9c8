"""The loyalty cashback channel against the sandbox loyalty API: exactly one credit per contact
through re-runs, a crash between credit and ledger, 429/5xx faults and timeouts; dead letters
with the API's reason; the amount rule; and the shared HTTP outcome classification."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from orchestration import settings
from orchestration.dispatch import Channel, Ledger, State, cashback, http
from orchestration.sandbox import services
from orchestration.settings import SANDBOX_TOKENS

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
HEADERS = {"Authorization": f"Bearer {SANDBOX_TOKENS['loyalty']}"}


@dataclass
class World:
    url: str
    cfg: settings.Settings
    ledger: Ledger

    def credits(self) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/v1/credits", headers=HEADERS, timeout=10)
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()["credits"]
        return found

    def faults(self, **settings_: Any) -> None:
        requests.post(f"{self.url}/_sandbox/faults", json=settings_, timeout=10).raise_for_status()

    def clear_faults(self) -> None:
        requests.delete(f"{self.url}/_sandbox/faults", timeout=10).raise_for_status()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    with services.running(tmp_path / "world", names=("loyalty",)) as urls:
        monkeypatch.setenv("OMNI_LOYALTY_URL", urls["loyalty"])
        with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as ledger:
            yield World(urls["loyalty"], settings.load(), ledger)


def cashback_rows(
    count: int, *, kind: str = "cashback_amount", start: int = 0, **overrides: Any
) -> list[dict[str, Any]]:
    """Hand-off rows shaped like sync_loyalty_cashback_audience, due before NOW."""
    rows = []
    for index in range(start, start + count):
        row: dict[str, Any] = {
            "campaign_id": "loyalty_test",
            "customer_id": f"cus_{index:05d}",
            "trigger_key": f"trg_{index:05d}",
            "trigger_type": "loyalty_cashback_milestone",
            "channel": "loyalty_cashback",
            "loyalty_account_id": f"LA{index:08d}",
            "first_name": "Lucía",
            "store_id": "7",
            "offer_id": "loyalty_5eur",
            "offer_kind": kind,
            "offer_value": 5.0 if kind == "cashback_amount" else 10.0,
            "cashback_max_reward_eur": None if kind == "cashback_amount" else 15.0,
            "offer_valid_in": "store_only",
            "offer_valid_until": "2026-11-27",
            "estimated_cost_eur": 5.0,
            "scheduled_send_at": NOW - timedelta(minutes=1),
            "is_transactional": False,
            "payload_json": '{"milestone": {"kind": "spend", "threshold": 300}}',
        }
        row.update(overrides)
        rows.append(row)
    return rows


def test_credits_land_once_even_when_send_due_runs_twice(world: World) -> None:
    world.ledger.record_intents(cashback_rows(30))
    first = cashback.send_due(world.ledger, world.cfg, now=NOW, batch_size=7)
    assert first == {"claimed": 30, "sent": 30, "failed": 0, "dead_lettered": 0, "unknown": 0}
    again = cashback.send_due(world.ledger, world.cfg, now=NOW + timedelta(hours=1))
    assert again["claimed"] == 0
    credits = world.credits()
    assert len(credits) == 30
    by_key = {credit["idempotency_key"]: credit for credit in credits}
    for contact in world.ledger.list_contacts(channel=Channel.LOYALTY_CASHBACK):
        assert contact.state is State.SENT
        credit = by_key[contact.contact_id]
        assert contact.provider_message_id == credit["credit_id"]
        assert credit["member_id"] == contact.payload["loyalty_account_id"]
        assert credit["amount_eur"] == "5.00"
        assert credit["valid_in"] == "store_only"
        # the end of the valid-until day in Madrid (UTC+1 in November)
        assert credit["expires_at"] == "2026-11-27T22:59:59+00:00"


def test_limit_and_campaign_filter(world: World) -> None:
    world.ledger.record_intents(cashback_rows(10) + cashback_rows(5, campaign_id="other"))
    limited = cashback.send_due(
        world.ledger, world.cfg, now=NOW, limit=4, batch_size=3, campaign_id="loyalty_test"
    )
    assert limited["claimed"] == 4 and limited["sent"] == 4
    other = cashback.send_due(world.ledger, world.cfg, now=NOW, campaign_id="other")
    assert other["sent"] == 5
    pending = world.ledger.list_contacts(state=State.PENDING)
    assert len(pending) == 6 and {c.campaign_id for c in pending} == {"loyalty_test"}


def test_crash_after_the_credit_is_replayed_not_credited_again(world: World) -> None:
    world.ledger.record_intents(cashback_rows(12))
    # A dispatcher claims and credits, then dies before writing the outcome to the ledger.
    claimed = world.ledger.claim(Channel.LOYALTY_CASHBACK, 100, NOW)
    with http.session(world.cfg.tokens["loyalty"]) as client:
        for contact in claimed:
            prepared = cashback.credit_request(contact, world.url)
            assert isinstance(prepared, http.PreparedRequest)
            answer = client.request(
                prepared.method, prepared.url, json=prepared.body, headers=prepared.headers
            )
            assert answer.status_code == 201
    first_ids = {credit["idempotency_key"]: credit["credit_id"] for credit in world.credits()}
    assert world.ledger.counts(channel=Channel.LOYALTY_CASHBACK)["sending"] == 12

    later = NOW + timedelta(minutes=30)
    moved = world.ledger.recover_stale(Channel.LOYALTY_CASHBACK, timedelta(minutes=10), later)
    assert moved == {"pending": 12}
    result = cashback.send_due(world.ledger, world.cfg, now=later)
    assert result["sent"] == 12
    assert len(world.credits()) == 12  # replayed (200), never a second credit
    for contact in world.ledger.list_contacts(channel=Channel.LOYALTY_CASHBACK):
        assert contact.state is State.SENT
        assert contact.provider_message_id == first_ids[contact.contact_id]
        assert contact.attempts == 2


def test_unknown_member_and_missing_account_are_dead_lettered_with_the_reason(
    world: World,
) -> None:
    rows = cashback_rows(3)
    rows[0]["loyalty_account_id"] = "XX-no-such-member"
    rows[1]["loyalty_account_id"] = None
    world.ledger.record_intents(rows)
    result = cashback.send_due(world.ledger, world.cfg, now=NOW)
    assert result == {"claimed": 3, "sent": 1, "failed": 0, "dead_lettered": 2, "unknown": 0}
    dead = {c.customer_id: c for c in world.ledger.list_contacts(state=State.DEAD_LETTERED)}
    assert dead["cus_00000"].last_error == "HTTP 404: member 'XX-no-such-member' not found"
    assert dead["cus_00001"].last_error == "no loyalty_account_id to credit"
    assert len(world.credits()) == 1


def test_amount_rules(world: World) -> None:
    rows = [
        # percent: the eligibility model's estimate (10 % of the cart, capped) rounded to cents
        *cashback_rows(1, kind="cashback_percent", estimated_cost_eur=7.455),
        # percent without an estimate: 10 % of the cart subtotal 200, capped at 15
        *cashback_rows(
            1,
            kind="cashback_percent",
            start=1,
            estimated_cost_eur=None,
            payload_json='{"cart": {"subtotal": 200.0, "total": 204.95}}',
        ),
        # an amount offer: the offer's euros
        *cashback_rows(1, start=2, offer_value=12.5, estimated_cost_eur=12.5),
        # nothing to compute from: dead-lettered, not credited with a guess
        *cashback_rows(1, kind="cashback_percent", start=3, estimated_cost_eur=None),
        # not a cashback offer
        *cashback_rows(1, kind="discount_code", start=4),
    ]
    world.ledger.record_intents(rows)
    result = cashback.send_due(world.ledger, world.cfg, now=NOW)
    assert result["sent"] == 3 and result["dead_lettered"] == 2
    amounts = {credit["member_id"]: credit["amount_eur"] for credit in world.credits()}
    assert amounts == {"LA00000000": "7.46", "LA00000001": "15.00", "LA00000002": "12.50"}
    reasons = {c.customer_id: c.last_error for c in world.ledger.list_contacts()}
    assert "cart/order value" in str(reasons["cus_00003"])
    assert "not a cashback offer" in str(reasons["cus_00004"])


def test_rate_limit_and_server_errors_fail_then_send(world: World) -> None:
    world.ledger.record_intents(cashback_rows(40))
    world.faults(error_rate=0.3, error_status=503, seed=3, rate_limit_per_second=40)
    first = cashback.send_due(world.ledger, world.cfg, now=NOW)
    assert first["claimed"] == 40 and first["failed"] > 0 and first["dead_lettered"] == 0
    failed = world.ledger.list_contacts(state=State.FAILED)
    errors = {str(contact.last_error).split(":")[0] for contact in failed}
    assert errors <= {"HTTP 429", "HTTP 503"} and errors
    for contact in failed:
        assert contact.next_attempt_at is not None
        wait = contact.next_attempt_at - NOW
        if contact.last_error and contact.last_error.startswith("HTTP 503"):
            assert wait == timedelta(seconds=2)  # 2 ** attempts after the first attempt
        else:
            assert timedelta(seconds=1) <= wait <= timedelta(seconds=2)  # Retry-After
    # not retried before its time
    assert cashback.send_due(world.ledger, world.cfg, now=NOW)["claimed"] == 0
    world.clear_faults()
    second = cashback.send_due(world.ledger, world.cfg, now=NOW + timedelta(minutes=5))
    assert second["sent"] == first["failed"]
    assert world.ledger.counts(channel=Channel.LOYALTY_CASHBACK)["sent"] == 40
    assert len(world.credits()) == 40


def test_an_outage_is_retried_across_runs_until_the_retry_horizon(world: World) -> None:
    world.ledger.record_intents(cashback_rows(2))
    world.faults(error_rate=1.0, error_status=500)
    horizon = world.ledger.retry_horizon
    assert horizon == timedelta(hours=24)  # the settings' default
    # runs during the outage, hours apart: the contacts wait, nothing is given up
    for hours in (0, 1, 6, 23):
        cashback.send_due(world.ledger, world.cfg, now=NOW + timedelta(hours=hours))
        counts = world.ledger.counts(channel=Channel.LOYALTY_CASHBACK)
        assert counts["failed"] == 2 and counts["dead_lettered"] == 0, hours
    for contact in world.ledger.list_contacts():
        assert contact.attempts == 4 and contact.retrying_since == NOW
    # past the horizon since the first refusal: dead letters, with the reason and the count
    cashback.send_due(world.ledger, world.cfg, now=NOW + horizon + timedelta(minutes=1))
    dead = world.ledger.list_contacts(state=State.DEAD_LETTERED)
    assert len(dead) == 2
    assert all("gave up after 5 attempts over 24.0 h" in str(c.last_error) for c in dead)
    world.clear_faults()
    assert world.credits() == []


def test_timeouts_are_retried_safely(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.ledger.record_intents(cashback_rows(10))
    world.faults(latency_ms=700)
    monkeypatch.setattr(http, "TIMEOUT", (5.0, 0.2))
    first = cashback.send_due(world.ledger, world.cfg, now=NOW)
    assert first["failed"] == 10 and first["unknown"] == 0
    assert all("ReadTimeout" in str(c.last_error) for c in world.ledger.list_contacts())
    deadline = time.monotonic() + 10  # the API still credits what it received
    while len(world.credits()) < 10 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(world.credits()) == 10
    world.clear_faults()
    monkeypatch.setattr(http, "TIMEOUT", (5.0, 30.0))
    second = cashback.send_due(world.ledger, world.cfg, now=NOW + timedelta(minutes=5))
    assert second["sent"] == 10
    credits = {credit["idempotency_key"]: credit["credit_id"] for credit in world.credits()}
    assert len(credits) == 10
    for contact in world.ledger.list_contacts():
        assert contact.provider_message_id == credits[contact.contact_id]


def test_refused_connection_is_retryable(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OMNI_LOYALTY_URL", f"http://127.0.0.1:{port}")
    world.ledger.record_intents(cashback_rows(2))
    result = cashback.send_due(world.ledger, settings.load(), now=NOW)
    assert result["failed"] == 2
    for contact in world.ledger.list_contacts():
        assert contact.state is State.FAILED
        assert "ConnectionError" in str(contact.last_error)


def test_a_wrong_token_stops_the_run_without_dead_letters(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNI_LOYALTY_TOKEN", "wrong")
    world.ledger.record_intents(cashback_rows(3))
    with pytest.raises(http.ProviderAuthError, match="HTTP 401"):
        cashback.send_due(world.ledger, settings.load(), now=NOW)
    assert world.ledger.counts(channel=Channel.LOYALTY_CASHBACK)["failed"] == 3


# -- the outcome classification, unit by unit ------------------------------------------------


def response(
    status: int, body: bytes = b"", headers: dict[str, str] | None = None
) -> requests.Response:
    made = requests.Response()
    made.status_code = status
    made._content = body
    made.headers.update(headers or {})
    return made


def test_classify_statuses_and_retry_times() -> None:
    assert http.classify(response(201, b'{"credit_id": "cr_1"}'), 1, now=NOW).body == {
        "credit_id": "cr_1"
    }
    limited = http.classify(response(429, headers={"Retry-After": "7"}), 1, now=NOW)
    assert limited.kind == "retryable" and limited.retry_at == NOW + timedelta(seconds=7)
    reset = str(int(time.time()) + 60)
    by_reset = http.classify(response(429, headers={"X-RateLimit-Reset": reset}), 1, now=NOW)
    assert by_reset.retry_at is not None
    assert timedelta(seconds=55) <= by_reset.retry_at - NOW <= timedelta(seconds=61)
    assert http.classify(response(429), 3, now=NOW).retry_at == NOW + timedelta(seconds=8)
    assert http.classify(response(502), 2, now=NOW).retry_at == NOW + timedelta(seconds=4)
    assert http.classify(response(503), 20, now=NOW).retry_at == NOW + timedelta(seconds=300)
    refused = http.classify(response(422, b'{"error": {"code": "x", "message": "reused"}}'), 1)
    assert (refused.kind, refused.error) == ("permanent", "HTTP 422: reused")
    sendgrid = http.classify(
        response(400, b'{"errors": [{"message": "bad", "field": "from.email"}]}'), 1
    )
    assert sendgrid.error == "HTTP 400: from.email: bad"
    assert http.classify(response(401), 1).is_auth_error


def test_classify_exceptions_by_channel_kind() -> None:
    timeout = requests.ReadTimeout("read timed out")
    assert http.classify(timeout, 1, now=NOW).kind == "retryable"
    assert http.classify(timeout, 1, idempotent=False).kind == "unknown"
    refused = requests.ConnectionError("Failed to establish a new connection: refused")
    assert http.classify(refused, 1, idempotent=False).kind == "retryable"
    assert http.classify(requests.ConnectTimeout("slow"), 1, idempotent=False).kind == "retryable"
    dropped = requests.ConnectionError("Connection aborted: RemoteDisconnected")
    assert http.classify(dropped, 1, idempotent=False).kind == "unknown"


def test_credit_amount_is_decimal_cents() -> None:
    # the pure rule, outside HTTP: half up to cents, the cap wins
    from orchestration.dispatch.ledger import Contact

    base = dict(
        contact_id="c",
        campaign_id="k",
        customer_id="u",
        trigger_key="t",
        channel="loyalty_cashback",
        offer_id="o",
        offer_code=None,
        amount=10.0,
        scheduled_send_at=None,
        state=State.PENDING,
        attempts=0,
        provider_message_id=None,
        last_error=None,
        created_at=NOW,
        updated_at=NOW,
        state_changed_at=NOW,
        sent_at=None,
        next_attempt_at=None,
        retrying_since=None,
        is_transactional=False,
    )
    percent = '{"offer_kind": "cashback_percent", "cashback_max_reward_eur": 15}'
    capped = Contact(**base, estimated_cost_eur=15.004, payload_json=percent)  # type: ignore[arg-type]
    assert cashback.credit_amount(capped) == Decimal("15.00")
    half = Contact(**base, estimated_cost_eur=2.345, payload_json=percent)  # type: ignore[arg-type]
    assert cashback.credit_amount(half) == Decimal("2.35")


# -- sending only while in flight; a crash uses no attempt of the contacts not tried ---------


def test_a_contact_is_sending_only_while_its_own_request_is_in_flight(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.ledger.record_intents(cashback_rows(24))
    world.faults(latency_ms=30)
    seen: list[tuple[str, set[str]]] = []
    original = http._TimeoutSession.request

    def watched(self: Any, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        sending = {c.contact_id for c in world.ledger.list_contacts(state=State.SENDING)}
        seen.append((kwargs["headers"]["Idempotency-Key"], sending))
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(http._TimeoutSession, "request", watched)
    assert cashback.send_due(world.ledger, world.cfg, now=NOW)["sent"] == 24
    assert len(seen) == 24
    for key, sending in seen:
        assert key in sending  # its own contact is sending while its request goes
        assert len(sending) <= 8  # and only the requests in flight are (8 workers)


def test_a_crash_mid_run_leaves_only_the_requests_in_flight(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.ledger.record_intents(cashback_rows(30))
    original = http._TimeoutSession.request
    calls = 0

    class Crash(BaseException):
        """The dispatcher dies (as on SIGKILL, nothing after it runs)."""

    def dying(self: Any, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 12:
            raise Crash
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(http._TimeoutSession, "request", dying)
    with pytest.raises(Crash):
        cashback.send_due(world.ledger, world.cfg, now=NOW, batch_size=100)
    counts = world.ledger.counts(channel=Channel.LOYALTY_CASHBACK)
    assert 1 <= counts["sending"] <= 8  # the requests in flight when it died
    assert counts["sent"] + counts["sending"] + counts["pending"] == 30
    untried = world.ledger.list_contacts(state=State.PENDING)
    assert untried and all(contact.attempts == 0 for contact in untried)
    # each success was recorded as it came; the API may hold more: requests in flight
    assert counts["sent"] <= len(world.credits()) <= counts["sent"] + counts["sending"]

    monkeypatch.setattr(http._TimeoutSession, "request", original)
    later = NOW + timedelta(minutes=15)
    assert world.ledger.recover_stale(Channel.LOYALTY_CASHBACK, timedelta(minutes=10), later)
    again = cashback.send_due(world.ledger, world.cfg, now=later)
    assert again["sent"] == 30 - counts["sent"] and again["dead_lettered"] == 0
    assert len(world.credits()) == 30
    assert all(
        c.attempts == 1
        for c in world.ledger.list_contacts()
        if c.contact_id in {u.contact_id for u in untried}
    )

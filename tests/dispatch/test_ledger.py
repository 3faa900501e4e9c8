"""The dispatch ledger: ids, idempotent intents, the state machine, exclusive claims across
processes, per-channel crash recovery, reconciliation, counts, the warehouse export and the
audit log."""

from __future__ import annotations

import multiprocessing
import queue
import sqlite3
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from orchestration import settings
from orchestration.campaigns.handoff import write_handoff
from orchestration.dispatch import (
    EXPORT_COLUMNS,
    STALE_SENDING_RECOVERY,
    TRANSITIONS,
    WAREHOUSE_STATUS,
    Channel,
    ConcurrentChange,
    IllegalTransition,
    Ledger,
    State,
    UnknownContact,
    contact_id_for,
)
from orchestration.dispatch.ledger import contact_events, contacts

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
# The statuses the warehouse contract accepts (int_campaign_contact_history's YAML).
CONTRACT_STATUSES = {
    "queued",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "bounced",
    "unsubscribed",
    "failed",
    "cancelled",
    "holdout",
}


def intents(
    count: int, channel: str = "email", campaign: str = "cmp_a", start: int = 0
) -> list[dict[str, Any]]:
    """Hand-off-like rows: due one minute before NOW, offer fields, extra template fields."""
    return [
        {
            "campaign_id": campaign,
            "customer_id": f"cus_{index:05d}",
            "trigger_key": f"trg_{index:05d}",
            "channel": channel,
            "offer_id": f"{campaign}_offer",
            "offer_code": "SAVE10",
            "offer_value": 10.0,
            "scheduled_send_at": NOW - timedelta(minutes=1),
            "is_transactional": False,
            "estimated_cost_eur": 2.5,
            "email": f"customer{index}@example.test",
        }
        for index in range(start, start + count)
    ]


@pytest.fixture
def ledger(tmp_path: Path) -> Any:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as opened:
        yield opened


def assert_audit_complete(ledger: Ledger) -> None:
    """Every row's events chain from its recording to its current state, without gaps."""
    by_contact: dict[str, list[Any]] = {}
    for logged in ledger.events():
        by_contact.setdefault(logged.contact_id, []).append(logged)
    rows = ledger.list_contacts()
    assert set(by_contact) == {row.contact_id for row in rows}
    for row in rows:
        chain = by_contact[row.contact_id]
        assert chain[0].from_state is None and chain[0].to_state is State.PENDING
        for before, after in zip(chain, chain[1:], strict=False):
            assert after.from_state is before.to_state
            assert after.to_state in TRANSITIONS[before.to_state]
        assert chain[-1].to_state is row.state
        claims = sum(1 for logged in chain if logged.to_state is State.SENDING)
        given_back = sum(1 for logged in chain if "not counted as an attempt" in str(logged.detail))
        assert claims - given_back == row.attempts


# -- ids and intents -----------------------------------------------------------------------


def test_contact_id_is_the_warehouse_key() -> None:
    """The same md5 as the dbt macro triggers_key over campaign|customer|trigger|channel."""
    parts = ("cmp_a", "cus_1", "trg_9", "email")
    expected = (
        duckdb.connect()
        .execute(
            "select md5(coalesce(cast('cmp_a' as varchar), '') || '|' || "
            "coalesce(cast('cus_1' as varchar), '') || '|' || "
            "coalesce(cast('trg_9' as varchar), '') || '|' || "
            "coalesce(cast('email' as varchar), ''))"
        )
        .fetchall()[0][0]
    )
    assert contact_id_for(*parts) == expected
    assert contact_id_for(*parts) == contact_id_for(*parts)
    others = {contact_id_for("cmp_a", "cus_1", "trg_9", channel.value) for channel in Channel}
    assert len(others) == 3
    assert contact_id_for("cmp_a", "cus_1", "trg_8", "email") != expected


def test_record_intents_is_idempotent(ledger: Ledger) -> None:
    rows = intents(300)
    assert ledger.record_intents(rows, now=NOW) == {"recorded": 300, "already_recorded": 0}
    assert ledger.record_intents(rows, now=NOW) == {"recorded": 0, "already_recorded": 300}
    # a later hand-off overlapping the first: only the new contacts are recorded
    again = intents(50, start=280)
    assert ledger.record_intents(again, now=NOW) == {"recorded": 30, "already_recorded": 20}
    # the same contact twice in one call is recorded once
    twice = intents(1, start=900) * 2
    assert ledger.record_intents(twice, now=NOW) == {"recorded": 1, "already_recorded": 1}
    assert ledger.counts()[State.PENDING] == 331
    assert len(ledger.events()) == 331
    assert_audit_complete(ledger)

    row = ledger.get(contact_id_for("cmp_a", "cus_00007", "trg_00007", "email"))
    assert (row.offer_id, row.offer_code, row.amount) == ("cmp_a_offer", "SAVE10", 10.0)
    assert row.scheduled_send_at == NOW - timedelta(minutes=1)
    assert row.payload["email"] == "customer7@example.test"
    assert row.state is State.PENDING and row.attempts == 0


def test_record_intents_rejects_bad_rows(ledger: Ledger) -> None:
    good = intents(1)[0]
    with pytest.raises(ValueError, match="does not match"):
        ledger.record_intents([{**good, "contact_id": "0" * 32}])
    with pytest.raises(ValueError):
        ledger.record_intents([{**good, "channel": "sms"}])
    with pytest.raises(ValueError, match="lacks trigger_key"):
        ledger.record_intents([{**good, "trigger_key": None}])
    # all or nothing: a bad row among good ones records nothing
    with pytest.raises(ValueError):
        ledger.record_intents([*intents(5), {**good, "channel": "fax"}])
    assert sum(ledger.counts().values()) == 0


def test_record_handoff_reads_an_outbox_file(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("OMNI_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OMNI_LEDGER_URL", raising=False)
    cfg = settings.load()
    assert cfg.ledger_url == f"sqlite:///{tmp_path / 'home' / 'ledger.sqlite'}"
    frame = pd.DataFrame(intents(40, channel="loyalty_cashback"))
    frame["contact_id"] = [
        contact_id_for(row.campaign_id, row.customer_id, row.trigger_key, row.channel)
        for row in frame.itertuples()
    ]
    frame["scheduled_send_at"] = pd.to_datetime(frame["scheduled_send_at"], utc=True)
    frame.loc[3, "estimated_cost_eur"] = None  # optional cost
    path = write_handoff(cfg, "cmp_a", "manual__2026-03-02", frame)
    with Ledger.from_settings(cfg) as ledger:
        assert ledger.record_handoff(path, now=NOW) == {"recorded": 40, "already_recorded": 0}
        assert ledger.record_handoff(path, now=NOW) == {"recorded": 0, "already_recorded": 40}
        rows = ledger.list_contacts(channel="loyalty_cashback")
        assert {row.contact_id for row in rows} == set(frame["contact_id"])
        assert all(row.scheduled_send_at == NOW - timedelta(minutes=1) for row in rows)
        assert sorted(row.estimated_cost_eur is None for row in rows) == [False] * 39 + [True]
    assert (tmp_path / "home" / "ledger.sqlite").exists()


def test_ledger_url_setting_overrides_the_default(tmp_path: Path, monkeypatch: Any) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'my.sqlite'}"
    monkeypatch.setenv("OMNI_LEDGER_URL", url)
    cfg = settings.load()
    assert cfg.ledger_url == url
    assert url not in repr(cfg)  # a Postgres URL may carry a password
    with Ledger.from_settings(cfg) as ledger:
        ledger.record_intents(intents(2))
    assert (tmp_path / "elsewhere" / "my.sqlite").exists()


# -- claims ------------------------------------------------------------------------------


def test_claim_takes_due_rows_of_its_channel_once(ledger: Ledger) -> None:
    ledger.record_intents(intents(30), now=NOW)
    ledger.record_intents(intents(10, channel="in_store"), now=NOW)
    later = [
        {**row, "scheduled_send_at": NOW + timedelta(hours=2)}
        for row in intents(5, "email", "cmp_b")
    ]
    ledger.record_intents(later, now=NOW)

    first = ledger.claim("email", 20, now=NOW)
    second = ledger.claim(Channel.EMAIL, 20, now=NOW)
    assert len(first) == 20 and len(second) == 10  # the 5 later ones are not due yet
    assert not {row.contact_id for row in first} & {row.contact_id for row in second}
    assert all(row.state is State.SENDING and row.attempts == 1 for row in first + second)
    assert all(row.channel == "email" and row.campaign_id == "cmp_a" for row in first + second)
    assert ledger.claim("email", 20, now=NOW) == []
    assert len(ledger.claim("email", 20, now=NOW + timedelta(hours=2))) == 5
    assert ledger.counts(channel="in_store")[State.PENDING] == 10
    assert ledger.claim("email", 0, now=NOW) == []
    assert_audit_complete(ledger)


def _claim_worker(url: str, barrier: Any, results: Any, name: str) -> None:
    """One dispatcher process: its own engine, claims small batches until none are left."""
    ledger = Ledger(url)
    barrier.wait()
    mine: list[str] = []
    first = True
    while batch := ledger.claim("email", 7, now=NOW):
        if first:  # both hold a claim before either goes on (a busy machine may start one late)
            barrier.wait()
            first = False
        for row in batch:
            ledger.mark_sent(row.contact_id, f"{name}-{row.contact_id}")
            mine.append(row.contact_id)
    ledger.close()
    results.put((name, mine))


def test_claim_is_exclusive_across_two_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger(url) as ledger:
        ledger.record_intents(intents(600), now=NOW)
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    results = context.Queue()
    workers = [
        context.Process(target=_claim_worker, args=(url, barrier, results, name))
        for name in ("one", "two")
    ]
    for worker in workers:
        worker.start()
    claimed: dict[str, list[str]] = {}
    deadline = time.monotonic() + 60
    while len(claimed) < len(workers):
        try:
            name, ids = results.get(timeout=0.2)
        except queue.Empty:
            failed = [worker.exitcode for worker in workers if worker.exitcode not in (None, 0)]
            assert not failed, f"a dispatcher process failed (exit codes {failed})"
            assert time.monotonic() < deadline, "the dispatchers did not finish in 60 s"
            continue
        claimed[name] = ids
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0

    one, two = claimed["one"], claimed["two"]
    assert one and two, "both dispatchers should have claimed work"
    assert len(one) == len(set(one)) and len(two) == len(set(two))
    assert not set(one) & set(two)
    with Ledger(url) as ledger:
        every = {row.contact_id for row in ledger.list_contacts()}
        assert set(one) | set(two) == every
        assert ledger.counts()[State.SENT] == 600
        assert all(row.attempts == 1 for row in ledger.list_contacts())
        # the provider id was written by the process that claimed the row
        owner = {contact_id: "one" for contact_id in one} | {c: "two" for c in two}
        for row in ledger.list_contacts():
            assert row.provider_message_id == f"{owner[row.contact_id]}-{row.contact_id}"
        assert_audit_complete(ledger)


def test_compare_and_set_refuses_a_stale_read(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger(url) as first, Ledger(url) as second:
        first.record_intents(intents(1), now=NOW)
        seen = first.get(first.list_contacts()[0].contact_id)  # pending, as first saw it
        assert [row.contact_id for row in second.claim("email", 5, now=NOW)] == [seen.contact_id]
        with pytest.raises(ConcurrentChange), first.engine.begin() as conn:
            Ledger._apply(conn, seen, State.SUPPRESSED, {State.PENDING}, "late", {}, NOW)
        assert first.get(seen.contact_id).state is State.SENDING


# -- the state machine ---------------------------------------------------------------------


def _contact_in(ledger: Ledger, state: State, index: int) -> str:
    """A fresh contact driven (through the public API) to ``state``."""
    ledger.record_intents(intents(1, start=index), now=NOW)
    contact_id = contact_id_for("cmp_a", f"cus_{index:05d}", f"trg_{index:05d}", "email")
    if state is State.PENDING:
        return contact_id
    if state is State.SUPPRESSED:
        ledger.suppress(contact_id, "test")
        return contact_id
    claimed = ledger.claim("email", 10, now=NOW)
    assert [row.contact_id for row in claimed] == [contact_id]
    if state is State.SENT:
        ledger.mark_sent(contact_id, "msg")
    elif state is State.FAILED:
        ledger.mark_failed(contact_id, "503", retryable=True, retry_at=NOW)
    elif state is State.DEAD_LETTERED:
        ledger.mark_failed(contact_id, "400 bad address", retryable=False)
    elif state is State.UNKNOWN:
        ledger.mark_unknown(contact_id, "timeout")
    assert ledger.get(contact_id).state is state
    return contact_id


# method -> the states from which it is legal (every other state must raise)
OPERATIONS: dict[str, tuple[set[State], Any]] = {
    "mark_sent": ({State.SENDING}, lambda ledger, cid: ledger.mark_sent(cid, "m")),
    "mark_failed": ({State.SENDING}, lambda ledger, cid: ledger.mark_failed(cid, "5xx", True)),
    "mark_unknown": ({State.SENDING}, lambda ledger, cid: ledger.mark_unknown(cid, "timeout")),
    "suppress": ({State.PENDING, State.FAILED}, lambda ledger, cid: ledger.suppress(cid, "r")),
    "dead_letter": (
        {State.SENDING, State.FAILED, State.PENDING},
        lambda ledger, cid: ledger.dead_letter(cid, "r"),
    ),
    "reconcile": ({State.UNKNOWN}, lambda ledger, cid: ledger.reconcile(cid, True, "m")),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_transitions_legal_and_illegal(ledger: Ledger, operation: str) -> None:
    legal, call = OPERATIONS[operation]
    for index, state in enumerate(State):
        contact_id = _contact_in(ledger, state, index)
        events_before = len(ledger.events(contact_id))
        if state in legal:
            after = call(ledger, contact_id)
            assert after.state in TRANSITIONS[state]
            assert len(ledger.events(contact_id)) == events_before + 1
        else:
            with pytest.raises(IllegalTransition):
                call(ledger, contact_id)
            assert ledger.get(contact_id).state is state  # unchanged
            assert len(ledger.events(contact_id)) == events_before  # nothing logged
        # leave nothing claimable or in flight for the next state's claim
        for row in ledger.list_contacts(state=State.PENDING):
            ledger.suppress(row.contact_id, "cleanup")
        for row in ledger.list_contacts(state=State.SENDING):
            ledger.mark_sent(row.contact_id, "cleanup")
        for row in ledger.list_contacts(state=State.FAILED):
            ledger.dead_letter(row.contact_id, "cleanup")
    with pytest.raises(UnknownContact):
        call(ledger, "f" * 32)
    assert_audit_complete(ledger)


def test_terminal_states_have_no_exit() -> None:
    assert TRANSITIONS[State.SENT] == TRANSITIONS[State.SUPPRESSED] == frozenset()
    # only an operator brings a dead letter back (omni dispatch retry), to pending
    assert TRANSITIONS[State.DEAD_LETTERED] == frozenset({State.PENDING})
    # an unknown email is never claimed as it is: reconciliation settles it first
    assert State.SENDING not in TRANSITIONS[State.UNKNOWN]
    assert TRANSITIONS[State.UNKNOWN] == frozenset({State.SENT, State.PENDING})


def test_failed_is_retried_after_its_time_then_dead_lettered(tmp_path: Path) -> None:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}", max_attempts=3) as ledger:
        ledger.record_intents(intents(1), now=NOW)
        (row,) = ledger.claim("email", 5, now=NOW)
        failed = ledger.mark_failed(
            row.contact_id, "429", True, retry_at=NOW + timedelta(minutes=5)
        )
        assert failed.state is State.FAILED and failed.last_error == "429"
        assert ledger.claim("email", 5, now=NOW + timedelta(minutes=4)) == []  # Retry-After
        (again,) = ledger.claim("email", 5, now=NOW + timedelta(minutes=5))
        assert again.attempts == 2
        ledger.mark_failed(row.contact_id, "503", True)
        (third,) = ledger.claim("email", 5, now=NOW + timedelta(minutes=6))
        assert third.attempts == 3
        given_up = ledger.mark_failed(row.contact_id, "503", True)
        assert given_up.state is State.DEAD_LETTERED
        assert "gave up after 3" in (given_up.last_error or "")
        assert ledger.claim("email", 5, now=NOW + timedelta(days=1)) == []
        assert_audit_complete(ledger)


def test_a_rate_limit_delays_without_using_up_attempts(tmp_path: Path) -> None:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}", max_attempts=2) as ledger:
        ledger.record_intents(intents(2), now=NOW)
        assert ledger.next_retry_at("email") is None
        for minute in range(1, 6):  # five 429s in a row: more than max_attempts
            claimed = ledger.claim("email", 5, now=NOW + timedelta(minutes=minute))
            assert [row.attempts for row in claimed] == [1, 1]
            retry = NOW + timedelta(minutes=minute, seconds=30)
            for row in claimed:
                waiting = ledger.mark_failed(
                    row.contact_id, "HTTP 429", True, retry_at=retry, counts_as_attempt=False
                )
                assert waiting.state is State.FAILED and waiting.attempts == 0
            assert ledger.next_retry_at("email") == retry
            assert ledger.next_retry_at("email", campaign_id="other") is None
        # a real failure still counts
        (first, _) = ledger.claim("email", 5, now=NOW + timedelta(hours=1))
        assert ledger.mark_failed(first.contact_id, "HTTP 503", True).attempts == 1
        assert_audit_complete(ledger)


def test_due_reads_and_start_takes_only_what_is_still_due(ledger: Ledger) -> None:
    ledger.record_intents(intents(4), now=NOW)
    due = ledger.due("email", 10, now=NOW)
    assert len(due) == 4 and {row.state for row in due} == {State.PENDING}
    assert ledger.counts()["sending"] == 0  # reading claims nothing: a crash loses nothing
    first, second, third, fourth = (row.contact_id for row in due)
    (taken,) = ledger.start([first], now=NOW)
    assert taken.state is State.SENDING and taken.attempts == 1
    assert ledger.start([first], now=NOW) == []  # in flight: not taken twice
    ledger.mark_failed(first, "503", True, retry_at=NOW + timedelta(minutes=5), now=NOW)
    assert ledger.start([first], now=NOW + timedelta(minutes=4)) == []  # not before its time
    ledger.suppress(second, "offer mismatch")
    # one request's rows together: only those still due are taken, in the order given
    started = ledger.start([fourth, second, third, first], now=NOW + timedelta(minutes=5))
    assert [row.contact_id for row in started] == [fourth, third, first]
    assert [row.attempts for row in started] == [1, 1, 2]
    assert ledger.due("email", 10, now=NOW + timedelta(days=1)) == []
    assert_audit_complete(ledger)


def test_retryable_failures_wait_until_the_retry_horizon(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger(url, retry_horizon=timedelta(hours=2)) as ledger:
        ledger.record_intents(intents(1), now=NOW)
        moment = NOW
        for _ in range(12):  # many refusals within the horizon: still retried
            (row,) = ledger.claim("email", 5, now=moment)
            failed = ledger.mark_failed(row.contact_id, "HTTP 503", True, now=moment)
            assert failed.state is State.FAILED and failed.retrying_since == NOW
            moment += timedelta(minutes=10)
        (row,) = ledger.claim("email", 5, now=NOW + timedelta(hours=2))
        given_up = ledger.mark_failed(
            row.contact_id, "HTTP 503", True, now=NOW + timedelta(hours=2)
        )
        assert given_up.state is State.DEAD_LETTERED
        assert given_up.last_error == "HTTP 503 (gave up after 13 attempts over 2.0 h)"
        assert_audit_complete(ledger)


def test_requeue_brings_dead_letters_back_by_campaign_channel_and_reason(ledger: Ledger) -> None:
    ledger.record_intents(intents(3) + intents(2, campaign="cmp_b", start=10), now=NOW)
    ledger.record_intents(intents(1, channel="in_store", start=20), now=NOW)
    reasons = ["HTTP 503 (gave up after 9 attempts over 24.0 h)", "HTTP 400: bad address"]
    for row in ledger.list_contacts():  # customers 0, 2, 10, 20: gave up; 1, 11: refused
        ledger.start([row.contact_id], now=NOW)
        reason = reasons[int(row.customer_id[-1]) % 2]
        ledger.mark_failed(row.contact_id, reason, False, now=NOW)
    assert ledger.counts()["dead_lettered"] == 6
    assert len(ledger.dead_letters(reason="GAVE UP")) == 4
    assert len(ledger.dead_letters(campaign_id="cmp_b", channel="email")) == 2
    requeued = ledger.requeue(campaign_id="cmp_a", channel="email", reason="gave up", now=NOW)
    assert len(requeued) == 2
    for contact_id in requeued:
        row = ledger.get(contact_id)
        assert row.state is State.PENDING and row.attempts == 1  # history is kept
        assert row.retrying_since is None and row.next_attempt_at is None
        assert "requeued by an operator (was: HTTP 503" in (
            ledger.events(contact_id)[-1].detail or ""
        )
    assert ledger.counts()["dead_lettered"] == 4
    assert {row.contact_id for row in ledger.due("email", 10, now=NOW)} == set(requeued)
    assert ledger.requeue(campaign_id="cmp_a", channel="email", reason="gave up") == []
    assert len(ledger.requeue()) == 4
    assert_audit_complete(ledger)


def test_a_ledger_from_before_a_new_column_gets_it(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with Ledger(f"sqlite:///{path}") as ledger:
        ledger.record_intents(intents(1), now=NOW)
    with sqlite3.connect(path) as con:  # the ledger as an older version made it
        con.execute("ALTER TABLE contacts DROP COLUMN retrying_since")
    with Ledger(f"sqlite:///{path}") as ledger:
        (row,) = ledger.claim("email", 1, now=NOW)
        failed = ledger.mark_failed(row.contact_id, "HTTP 503", True, now=NOW)
        assert failed.retrying_since == NOW


# -- crash recovery and reconciliation -------------------------------------------------------


def test_stale_sending_recovery_per_channel(tmp_path: Path) -> None:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}", max_attempts=2) as ledger:
        for channel in Channel:
            ledger.record_intents(intents(4, channel=channel.value), now=NOW)
            ledger.claim(channel, 3, now=NOW)  # 3 in flight when the dispatcher "dies"
            ledger.claim(channel, 1, now=NOW + timedelta(minutes=20))  # 1 recent claim
        later = NOW + timedelta(minutes=30)

        assert ledger.recover_stale("email", timedelta(minutes=15), now=later) == {"unknown": 3}
        assert ledger.counts(channel="email")[State.UNKNOWN] == 3
        assert ledger.counts(channel="email")[State.SENDING] == 1  # the recent one stays
        assert ledger.claim("email", 10, now=later) == []  # an unknown email is not resent

        for channel in (Channel.LOYALTY_CASHBACK, Channel.IN_STORE):
            assert STALE_SENDING_RECOVERY[channel] is State.PENDING
            moved = ledger.recover_stale(channel, timedelta(minutes=15), now=later)
            assert moved == {"pending": 3}
            retried = ledger.claim(channel, 10, now=later)
            assert len(retried) == 3 and all(row.attempts == 2 for row in retried)
            assert all(row.scheduled_send_at == NOW - timedelta(minutes=1) for row in retried)
            # the retry dies too: attempts are used up, it is dead-lettered, not retried forever
            moved = ledger.recover_stale(
                channel, timedelta(minutes=15), now=later + timedelta(hours=1)
            )
            # the 3 retried are dead-lettered; the one claimed at +20 min had attempts left
            assert moved == {"dead_lettered": 3, "pending": 1}
        # running recovery again changes nothing
        assert ledger.recover_stale("email", timedelta(minutes=15), now=later) == {}
        assert_audit_complete(ledger)


def test_reconcile_settles_unknown_contacts(ledger: Ledger) -> None:
    ledger.record_intents(intents(3), now=NOW)
    first, second, third = ledger.claim("email", 3, now=NOW)
    for row in (first, second):
        ledger.mark_unknown(row.contact_id, "read timeout")
    delivered = ledger.reconcile(first.contact_id, delivered=True, provider_message_id="sg-1")
    assert delivered.state is State.SENT and delivered.provider_message_id == "sg-1"
    assert delivered.sent_at is not None
    lost = ledger.reconcile(second.contact_id, delivered=False)
    # the provider never saw it: pending again, so the next run sends it (once)
    assert lost.state is State.PENDING and lost.sent_at is None
    (resent,) = ledger.claim("email", 3, now=NOW)
    assert resent.contact_id == second.contact_id and resent.attempts == 2
    with pytest.raises(IllegalTransition):  # only unknown contacts are reconciled
        ledger.reconcile(third.contact_id, delivered=True)
    with pytest.raises(IllegalTransition):  # a reconciled contact is settled for good
        ledger.reconcile(first.contact_id, delivered=False)
    details = [logged.detail or "" for logged in ledger.events(first.contact_id)]
    assert details[-1].startswith("reconciled")
    assert_audit_complete(ledger)


# -- counts, export, audit -------------------------------------------------------------------


def test_counts_by_campaign_and_channel(ledger: Ledger) -> None:
    ledger.record_intents(intents(10, campaign="cmp_a"), now=NOW)
    ledger.record_intents(intents(6, campaign="cmp_b", channel="in_store"), now=NOW)
    for row in ledger.claim("email", 4, now=NOW):
        ledger.mark_sent(row.contact_id, "m")
    (row,) = ledger.claim("in_store", 1, now=NOW)
    ledger.mark_failed(row.contact_id, "500", True)
    pending_b = ledger.list_contacts(campaign_id="cmp_b", state="pending")
    ledger.suppress(pending_b[0].contact_id, "offer price mismatch")

    total = ledger.counts()
    assert set(total) == {state.value for state in State}
    assert sum(total.values()) == 16
    assert ledger.counts("cmp_a") == {**dict.fromkeys(total, 0), "pending": 6, "sent": 4}
    assert ledger.counts("cmp_b") == {
        **dict.fromkeys(total, 0),
        "pending": 4,
        "failed": 1,
        "suppressed": 1,
    }
    assert ledger.counts(channel="in_store") == ledger.counts("cmp_b")


def test_export_has_the_warehouse_contract_shape(ledger: Ledger) -> None:
    ledger.record_intents(intents(7), now=NOW)
    rows = ledger.list_contacts()
    ledger.suppress(rows[0].contact_id, "unsubscribed meanwhile")
    claimed = ledger.claim("email", 5, now=NOW)
    sent_at = NOW + timedelta(seconds=3)
    ledger.mark_sent(claimed[0].contact_id, "m", now=sent_at)
    ledger.mark_failed(claimed[1].contact_id, "400 invalid email", retryable=False)
    ledger.mark_failed(claimed[2].contact_id, "503", retryable=True)
    ledger.mark_unknown(claimed[3].contact_id, "timeout")  # claimed[4] stays in sending

    exported = ledger.export_contacts()
    assert all(tuple(row) == EXPORT_COLUMNS for row in exported)
    assert {row["status"] for row in exported} <= CONTRACT_STATUSES
    states = {row.contact_id: row.state for row in ledger.list_contacts()}
    for row in exported:
        assert row["status"] == WAREHOUSE_STATUS[states[row["contact_id"]]]
    status = Counter(row["status"] for row in exported)
    assert status == {"queued": 4, "sent": 1, "failed": 1, "cancelled": 1}
    by_id = {row["contact_id"]: row for row in exported}
    assert by_id[claimed[0].contact_id]["contacted_at"] == sent_at.replace(tzinfo=None)
    scheduled = (NOW - timedelta(minutes=1)).replace(tzinfo=None)
    assert by_id[claimed[1].contact_id]["contacted_at"] == scheduled
    assert ledger.export_contacts("cmp_other") == []

    # it loads as the warehouse source and reads through the contract's columns and types
    con = duckdb.connect()
    frame = pd.DataFrame(exported, columns=list(EXPORT_COLUMNS))  # noqa: F841 (read by duckdb)
    con.execute("create schema dispatch")
    con.execute(
        "create table dispatch.contacts as select contact_id, campaign_id, customer_id, "
        "trigger_key, channel, status, cast(contacted_at as timestamp) as contacted_at, "
        "cast(is_transactional as boolean) as is_transactional, "
        "cast(estimated_cost_eur as double) as estimated_cost_eur from frame"
    )
    counted = con.execute(
        "select count(*) filter (where status in ('queued', 'sent')), "
        "count(distinct contact_id), sum(estimated_cost_eur) from dispatch.contacts"
    ).fetchall()[0]
    assert counted == (5, 7, 7 * 2.5)


def test_every_change_writes_one_event(ledger: Ledger) -> None:
    ledger.record_intents(intents(4), now=NOW)
    assert len(ledger.events()) == 4
    a, b, c = ledger.claim("email", 3, now=NOW)
    assert len(ledger.events()) == 7
    ledger.mark_sent(a.contact_id, "m1")
    ledger.mark_failed(b.contact_id, "503", True)
    ledger.mark_unknown(c.contact_id, "timeout")
    ledger.reconcile(c.contact_id, delivered=True)
    assert len(ledger.events()) == 11
    (b_again,) = [
        row for row in ledger.claim("email", 5, now=NOW) if row.contact_id == b.contact_id
    ]
    ledger.dead_letter(b_again.contact_id, "given up by hand")
    trail = [(e.from_state, e.to_state) for e in ledger.events(b.contact_id)]
    assert trail == [
        (None, State.PENDING),
        (State.PENDING, State.SENDING),
        (State.SENDING, State.FAILED),
        (State.FAILED, State.SENDING),
        (State.SENDING, State.DEAD_LETTERED),
    ]
    assert ledger.events(b.contact_id)[2].detail == "503"
    # the tables hold exactly what the API reports
    with ledger.engine.connect() as conn:
        assert len(conn.execute(contact_events.select()).all()) == len(ledger.events()) == 14
        assert len(conn.execute(contacts.select()).all()) == 4
    assert_audit_complete(ledger)


def test_mark_sent_many_is_all_or_nothing(ledger: Ledger) -> None:
    ledger.record_intents(intents(250), now=NOW)
    batch = ledger.claim("email", 200, now=NOW)
    (straggler,) = ledger.claim("email", 1, now=NOW)
    sent = {row.contact_id: "sg-batch-1" for row in batch[:150]}
    sent |= {row.contact_id: f"sg-{row.contact_id}" for row in batch[150:]}
    # one row of the batch is not in sending (never claimed): nothing is marked
    pending = ledger.list_contacts(state="pending")[0].contact_id
    with pytest.raises(IllegalTransition):
        ledger.mark_sent_many({**sent, pending: "sg-x"})
    assert ledger.counts()[State.SENT] == 0
    assert ledger.mark_sent_many(sent, now=NOW) == 200
    counts = ledger.counts()
    assert (counts["sent"], counts["sending"], counts["pending"]) == (200, 1, 49)
    assert ledger.get(batch[0].contact_id).provider_message_id == "sg-batch-1"
    assert ledger.get(batch[-1].contact_id).provider_message_id == f"sg-{batch[-1].contact_id}"
    assert ledger.get(straggler.contact_id).state is State.SENDING
    with pytest.raises(IllegalTransition):  # already sent: never twice
        ledger.mark_sent_many({batch[0].contact_id: "again"})
    assert_audit_complete(ledger)

"""The dispatch run against the sandbox SendGrid, loyalty and store APIs: outbox -> ledger ->
offer check -> every channel -> staff sheets -> counts; re-runs change nothing; the Airflow
split (prepare, one task per channel, summarize) does the same; the CLI."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from dispatch_world import (
    CAMPAIGN,
    Sandbox,
    contact_ids,
    hand_off,
    handoff_rows,
    is_mismatch,
    sandbox_home,
)
from sqlalchemy import func, select

from orchestration import cli, settings
from orchestration.campaigns.handoff import write_handoff
from orchestration.dispatch import Ledger, State
from orchestration.dispatch.run import (
    dispatch,
    dispatch_channel,
    handoff_files,
    prepare,
    status,
    summarize,
)

CUSTOMERS = 30  # customer 24 has a store price difference: blocked on every channel
SENDABLE = sum(1 for n in range(CUSTOMERS) if not is_mismatch(n))


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with sandbox_home(tmp_path / "home", monkeypatch, CUSTOMERS) as (sandbox, cfg):
        hand_off(cfg, CUSTOMERS)
        yield sandbox


def assert_delivered_once(sandbox: Sandbox) -> None:
    ids = contact_ids(CUSTOMERS)
    deliveries = sandbox.deliveries_by_dispatch_id()
    assert len(deliveries) == SENDABLE and max(deliveries.values()) == 1
    credits = sandbox.credits()
    assert len(credits) == SENDABLE
    assert len({credit["idempotency_key"] for credit in credits}) == SENDABLE
    offers = sandbox.offers()
    assert len(offers) == SENDABLE
    for key in [*deliveries, *(c["idempotency_key"] for c in credits)]:
        assert not is_mismatch(ids[key][0])
    for offer in offers:
        assert not is_mismatch(ids[offer["offer_key"]][0])


def test_dispatch_sends_every_channel_once_and_ends_with_the_counts(
    world: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = settings.load()
    with caplog.at_level(logging.INFO, logger="orchestration.dispatch.run"):
        result = dispatch(cfg)
    assert result["prepare"]["handoffs"]["recorded"] == 3 * CUSTOMERS
    assert result["prepare"]["offer_check"]["price_mismatch"] == 1
    assert result["prepare"]["offer_check"]["suppressed"] == 3
    for channel in ("email", "loyalty_cashback", "in_store"):
        assert result["by_channel"][channel]["sent"] == SENDABLE
        assert result["by_channel"][channel]["suppressed"] == 1
        assert result["sent_by_channel"][channel]["sent"] == SENDABLE
    line = f"sent {3 * SENDABLE}, suppressed 3, failed 0, dead letters 0, unknown 0"
    assert result["summary"] == line
    run_lines = [r.getMessage() for r in caplog.records if r.name == "orchestration.dispatch.run"]
    assert run_lines[-1] == line
    assert result["staff_sheets"] and all(Path(path).exists() for path in result["staff_sheets"])
    assert_delivered_once(world)

    again = dispatch(cfg)  # nothing new: the file is remembered, nothing is due
    assert again["prepare"]["handoffs"]["files"] == 0
    assert all(counts["claimed"] == 0 for counts in again["sent_by_channel"].values())
    assert again["summary"] == line
    assert_delivered_once(world)


def test_the_airflow_split_prepare_channels_summarize(world: Sandbox) -> None:
    cfg = settings.load()
    prepared = prepare(cfg, campaign_id=CAMPAIGN)
    assert prepared["handoffs"]["recorded"] == 3 * CUSTOMERS
    assert prepared["offer_check"]["suppressed"] == 3
    for channel in ("in_store", "loyalty_cashback", "email"):
        assert dispatch_channel(cfg, channel, campaign_id=CAMPAIGN)["sent"] == SENDABLE
    summary = summarize(cfg, campaign_id=CAMPAIGN)
    assert (
        summary["summary"]
        == f"sent {3 * SENDABLE}, suppressed 3, failed 0, dead letters 0, unknown 0"
    )
    assert_delivered_once(world)


def test_new_handoff_files_are_recorded_once(world: Sandbox) -> None:
    cfg = settings.load()
    dispatch(cfg, channels=["loyalty_cashback"])
    with Ledger.from_settings(cfg) as ledger, ledger.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(handoff_files)) == 1
    # A later run of the campaign hands off the same contacts again plus new ones.
    import pandas as pd

    write_handoff(cfg, CAMPAIGN, "run_2", pd.DataFrame(handoff_rows(CUSTOMERS + 5)))
    result = dispatch(cfg, channels=["loyalty_cashback"])
    assert result["prepare"]["handoffs"] == {
        "files": 1,
        "recorded": 15,
        "already_recorded": 3 * CUSTOMERS,
        "errors": [],
    }
    with Ledger.from_settings(cfg) as ledger, ledger.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(handoff_files)) == 2
    assert len(world.credits()) == SENDABLE + 5
    assert world.deliveries_by_dispatch_id() == {}  # only the chosen channel was sent


def test_a_broken_handoff_file_is_reported_and_retried_the_others_are_sent(
    world: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = settings.load()
    broken = cfg.omni_home / "outbox" / "other_campaign" / "run_9.parquet"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a parquet file")
    assert cli.main(["dispatch", "run", "--channel", "in_store"]) == 1
    captured = capsys.readouterr()
    assert "hand-off not recorded: other_campaign/run_9.parquet:" in captured.err
    assert captured.out.rstrip().endswith(
        f"sent {SENDABLE}, suppressed 1, failed 0, dead letters 0, unknown 0"
    )
    assert len(world.offers()) == SENDABLE
    # Still not remembered: the next run tries it again (and says so again).
    assert cli.main(["dispatch", "run", "--channel", "in_store"]) == 1
    broken.unlink()
    assert cli.main(["dispatch", "run", "--channel", "in_store"]) == 0


def test_cli_run_for_one_campaign_and_status(
    world: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["dispatch", "run", "--campaign", "loyalty_cashback_300"]) == 0
    capsys.readouterr()
    assert cli.main(["dispatch", "status"]) == 0
    assert capsys.readouterr().out.strip() == "the dispatch ledger is empty"
    assert cli.main(["dispatch", "run", "--campaign", CAMPAIGN]) == 0
    capsys.readouterr()
    assert cli.main(["dispatch", "status"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6  # three channels x (sent, suppressed)
    rows = status(settings.load())
    assert {(row["channel"], row["state"]): row["contacts"] for row in rows} == {
        (channel, state): (SENDABLE if state == State.SENT.value else 1)
        for channel in ("email", "in_store", "loyalty_cashback")
        for state in (State.SENT.value, State.SUPPRESSED.value)
    }


def test_dead_letters_are_requeued_by_reason_and_sent_by_the_next_run(
    world: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    # the store API refuses the offers (a 4xx): dead letters with the API's reason
    world.faults("store", error_rate=1.0, error_status=422)
    assert cli.main(["dispatch", "run", "--channel", "in_store"]) == 0
    cfg = settings.load()
    with Ledger.from_settings(cfg) as ledger:
        assert ledger.counts(channel="in_store")["dead_lettered"] == SENDABLE
    world.clear_faults()
    capsys.readouterr()
    assert cli.main(["dispatch", "retry", "--channel", "in_store", "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert f"{SENDABLE}  HTTP 422: injected fault" in listed and "would be requeued" in listed
    assert cli.main(["dispatch", "retry", "--reason", "no such reason"]) == 0
    assert "0 dead letters requeued" in capsys.readouterr().out
    assert cli.main(["dispatch", "retry", "--campaign", CAMPAIGN, "--reason", "HTTP 422"]) == 0
    assert f"{SENDABLE} dead letters requeued" in capsys.readouterr().out
    assert cli.main(["dispatch", "run", "--channel", "in_store"]) == 0
    with Ledger.from_settings(cfg) as ledger:
        counts = ledger.counts(channel="in_store")
    assert counts["sent"] == SENDABLE and counts["dead_lettered"] == 0
    assert len(world.offers()) == SENDABLE

"""Kill the dispatcher at random points, run it again, lose nothing and send nothing twice.

300 intended contacts (100 customers x email, cashback credit, in-store offer; 4 customers are
blocked by the offer check) are handed off; ``omni dispatch run --stale-after 0`` runs as a
subprocess against the sandbox SendGrid, loyalty and store APIs (in this process, so they
outlive the dispatcher) and is SIGKILLed at a random point (a random delay after its first log
line, or after the offer check, when sending starts), up to ``KILLS`` times per seed; then it
runs to the end. Afterwards:

- no email was delivered twice (``/_sandbox/messages``: one message per dispatch_id at most),
  no credit twice (one per Idempotency-Key and per member), one offer per key, unchanged;
- every intended contact is accounted for: sent, suppressed with its reason, dead-lettered,
  or flagged unknown; nothing is left pending, sending or failed;
- the ledger agrees with the sandbox: the emails at the sandbox are exactly the ``sent`` email
  contacts (an email accepted just before a kill is reconciled from SendGrid's events on the
  next run), the credits and offers exactly the ``sent`` cashback and in-store contacts.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import IO

import pytest
from dispatch_world import CAMPAIGN, Sandbox, contact_ids, hand_off, is_mismatch, sandbox_home

from orchestration import settings
from orchestration.dispatch import Ledger, State

CUSTOMERS = 100
SEEDS = (11, 23, 37, 41, 59)
KILLS = 3  # per seed; fewer than the ledger's 5 attempts, so a retried credit is not given up
# Kill points: a random delay after the run's first log line (recovery, events, recording,
# the offer check) or after the offer check's line (email, cashback, in-store, sheets take
# about 2 s here). The first kill of a seed counts from the first log line.
SENDING_STARTS = "Offer check: {"
KILL_WINDOW_S = 1.5
PREPARE_WINDOW_S = 3.0  # the first run records the hand-off and checks 300 offers first
RUN_TIMEOUT_S = 180
COMMAND = [sys.executable, "-m", "orchestration.cli", "dispatch", "run", "--stale-after", "0"]
FINAL = {State.SENT, State.SUPPRESSED, State.DEAD_LETTERED, State.UNKNOWN}


def _drain(stream: IO[str], lines: list[str], marker: str, seen: threading.Event) -> None:
    for line in stream:
        lines.append(line)
        if marker in line:
            seen.set()
    seen.set()  # the run ended without the marker: nothing left to interrupt


def run_dispatcher(log: Path, kill: tuple[str, float] | None) -> tuple[int, bool]:
    """Run the dispatcher; with ``kill = (marker, seconds)`` SIGKILL it that many seconds
    after it logs a line containing ``marker`` ("" = its first line). Returns (exit code,
    killed)."""
    marker, delay = kill if kill is not None else ("", 0.0)
    with log.open("a") as out:
        process = subprocess.Popen(
            COMMAND, stdout=out, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
        )
        assert process.stderr is not None
        lines: list[str] = []
        seen = threading.Event()
        reader = threading.Thread(target=_drain, args=(process.stderr, lines, marker, seen))
        reader.start()
        killed = False
        try:
            if kill is not None and seen.wait(RUN_TIMEOUT_S):
                try:
                    process.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    process.send_signal(signal.SIGKILL)
                    killed = True
            code = process.wait(timeout=RUN_TIMEOUT_S)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            reader.join()
        out.write("".join(lines))
    return code, killed


def open_contacts(ledger: Ledger) -> int:
    counts = ledger.counts()
    return counts["pending"] + counts["sending"] + counts["failed"]


def check_nothing_lost_nothing_twice(sandbox: Sandbox, ledger: Ledger) -> Counter[str]:
    intended = contact_ids(CUSTOMERS)
    rows = {row.contact_id: row for row in ledger.list_contacts(campaign_id=CAMPAIGN)}
    assert set(rows) == set(intended)  # every intent recorded, none invented
    for contact_id, row in rows.items():
        number, _channel = intended[contact_id]
        assert row.state in FINAL, (contact_id, row.state)
        if is_mismatch(number):
            assert row.state is State.SUPPRESSED
        if row.state is State.SUPPRESSED:
            assert is_mismatch(number)
            assert row.last_error and row.last_error.split(":")[0] in {
                "price_mismatch",
                "offer_mismatch",
            }

    def in_state(channel: str, state: State) -> set[str]:
        return {cid for cid, row in rows.items() if row.channel == channel and row.state is state}

    deliveries = sandbox.deliveries_by_dispatch_id()
    assert max(deliveries.values(), default=0) <= 1  # no email twice
    assert set(deliveries) == in_state("email", State.SENT)
    assert not set(deliveries) & in_state("email", State.UNKNOWN)

    credits = sandbox.credits()
    keys = Counter(credit["idempotency_key"] for credit in credits)
    members = Counter(credit["member_id"] for credit in credits)
    assert max(keys.values()) == 1 and max(members.values()) == 1  # no credit twice
    assert set(keys) == in_state("loyalty_cashback", State.SENT)

    offers = sandbox.offers()
    offer_keys = Counter(offer["offer_key"] for offer in offers)
    assert max(offer_keys.values()) == 1
    assert {offer["version"] for offer in offers} == {1}  # re-sent bodies changed nothing
    assert set(offer_keys) == in_state("in_store", State.SENT)
    return Counter(row.state.value for row in rows.values())


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_killed_dispatch_runs_again_and_loses_nothing(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    with sandbox_home(tmp_path / "home", monkeypatch, CUSTOMERS) as (sandbox, cfg):
        hand_off(cfg, CUSTOMERS)
        log = tmp_path / "dispatch.log"
        with Ledger.from_settings(settings.load()) as ledger:  # tables exist before the runs
            kills, at_kill = 0, []
            for _attempt in range(KILLS + 3):
                kill = None
                if kills < KILLS:  # mostly while sending, sometimes while preparing
                    marker = rng.choice(["", SENDING_STARTS, SENDING_STARTS]) if kills else ""
                    window = PREPARE_WINDOW_S if marker == "" else KILL_WINDOW_S
                    kill = (marker, rng.uniform(0.0, window))
                code, killed = run_dispatcher(log, kill)
                if killed:
                    kills += 1
                    at_kill.append({k: v for k, v in ledger.counts().items() if v})
                    continue
                assert code == 0, log.read_text()[-3000:]
                if open_contacts(ledger) == 0:
                    break
            assert open_contacts(ledger) == 0, ledger.counts()
            outcome = check_nothing_lost_nothing_twice(sandbox, ledger)
        print(f"seed {seed}: {kills} kills, ledger at each kill {at_kill}; final {dict(outcome)}")
        assert kills >= 1

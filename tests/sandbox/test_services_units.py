"""The sandbox services' building blocks without HTTP: cursors, timestamps, faults."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from orchestration.sandbox.services.faults import (
    BAD_TIMESTAMP_VALUE,
    MISSING_ID,
    NEGATIVE,
    Damage,
    FaultConfig,
    Faults,
    TokenBucket,
    apply_damage,
)
from orchestration.sandbox.services.paging import (
    BadRequest,
    Cursor,
    Key,
    parse_limit,
    parse_timestamp,
    parse_unix_or_iso,
)


def test_cursor_round_trip_keeps_key_and_filters() -> None:
    cursor = Cursor(Key(datetime(2026, 10, 1, 9, 30), 42), {"updated_at_min": "2026-10-01"})
    token = cursor.encode()
    assert "=" not in token and "/" not in token and "+" not in token  # URL safe
    assert Cursor.decode(token) == cursor


@pytest.mark.parametrize("token", ["", "not base64!", "eyJ4IjoxfQ"])
def test_broken_cursors_are_bad_requests(token: str) -> None:
    with pytest.raises(BadRequest):
        Cursor.decode(token)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-01T10:00:00+00:00",
        "2026-11-01T10:00:00Z",
        "2026-11-01T10:00:00+0000",
        "2026-11-01T11:00:00+01:00",
        "2026-11-01T10:00:00",
    ],
)
def test_timestamps_in_every_offset_style_become_naive_utc(text: str) -> None:
    assert parse_timestamp(text, "x") == datetime(2026, 11, 1, 10, 0)


def test_graph_since_takes_unix_seconds() -> None:
    moment = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    assert parse_unix_or_iso(str(int(moment.timestamp())), "since") == datetime(2026, 11, 1, 8)
    with pytest.raises(BadRequest):
        parse_timestamp("yesterday", "since")


def test_limits_are_capped_and_validated() -> None:
    assert parse_limit(None, 50, 250) == 50
    assert parse_limit("1000", 50, 250) == 250
    for bad in ("0", "-3", "ten"):
        with pytest.raises(BadRequest):
            parse_limit(bad, 50, 250)


PRICE = Damage(NEGATIVE, ("line_items", 0, "price"))
MISSING = Damage(MISSING_ID, ("id",))


def test_damage_changes_only_its_path() -> None:
    record = {"id": 7, "created_at": "x", "updated_at": "y", "line_items": [{"price": "3.10"}]}
    negative = dict(record, line_items=[{"price": "3.10"}])
    apply_damage(
        negative, Damage(NEGATIVE, ("line_items", 0, "price")), Damage(MISSING_ID, ("id",))
    )
    assert negative["line_items"] == [{"price": "-3.10"}]
    assert {k: v for k, v in negative.items() if k != "line_items"} == {
        k: v for k, v in record.items() if k != "line_items"
    }
    no_items = {"id": 7, "updated_at": "y", "line_items": []}
    apply_damage(
        no_items, Damage(NEGATIVE, ("line_items", 0, "price")), Damage(MISSING_ID, ("id",))
    )
    assert no_items == {"updated_at": "y", "line_items": []}  # fell back to the missing id


def test_malformed_choice_depends_on_seed_and_record_only() -> None:
    faults = Faults()
    faults.update({"malformed_rate": 0.5, "seed": 1})
    damages = (Damage(MISSING_ID, ("id",)), Damage("bad_timestamp", ("created_at",)))
    body = '{"id": 1, "created_at": "2026-11-01T10:00:00+00:00"}'
    first = [faults.malform("r", i, "t", body, damages) for i in range(200)]
    assert first == [faults.malform("r", i, "t", body, damages) for i in range(200)]
    damaged = [text for text in first if text is not None]
    assert 60 <= len(damaged) <= 140
    assert any(BAD_TIMESTAMP_VALUE in text for text in damaged)
    faults.update({"seed": 2})
    assert first != [faults.malform("r", i, "t", body, damages) for i in range(200)]


def test_token_bucket_spaces_requests() -> None:
    bucket = TokenBucket(rate=20)
    assert bucket.take() == 0
    wait = bucket.take()
    assert 0 < wait <= 0.05
    time.sleep(wait + 0.01)
    assert bucket.take() == 0


def test_fault_config_merges_and_validates() -> None:
    config = FaultConfig().merged({"error_rate": 0.5}).merged({"seed": 3})
    assert (config.error_rate, config.seed, config.error_status) == (0.5, 3, 500)
    for bad in ({"error_status": 200}, {"malformed_rate": -0.1}, {"seed": True}):
        with pytest.raises(BadRequest):
            FaultConfig().merged(bad)

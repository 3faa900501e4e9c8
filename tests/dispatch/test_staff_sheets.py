"""Staff sheets from sent in-store offers: one escaped page per store and day plus an index,
showing the customer, how to recognise them, their cart items, the code and the conditions;
idempotent rewrites."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from test_in_store_channel import NOW, store_rows, use_campaigns

from orchestration import settings
from orchestration.dispatch import Ledger, in_store, staff_sheets
from orchestration.sandbox import services


@pytest.fixture
def sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Ledger, Any]]:
    """A ledger whose in-store contacts went through the sandbox store API."""
    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    use_campaigns(tmp_path, monkeypatch)
    rows = store_rows(4, store_id="7")
    rows[0].update(
        first_name="<script>alert('x')</script>",
        store_name="Omni Valencia & Centro",
        cart_items_json=json.dumps(
            [{"title": "Camiseta <b>oferta</b>", "sku": "CAM-1", "quantity": 1,
              "unit_price": 19.95, "size": "M", "colour": "azul"}]
        ),
    )  # fmt: skip
    rows[1].update(store_id="8", first_name="Ana")
    # another day: scheduled for the next morning
    rows[2].update(scheduled_send_at=NOW + timedelta(days=1), first_name="Bruno")
    # not due yet (so never sent): on no sheet
    pending = store_rows(1, start=9, first_name="Nadie", scheduled_send_at=NOW + timedelta(days=9))
    with services.running(tmp_path / "world", names=("store",)) as urls:
        monkeypatch.setenv("OMNI_STORE_URL", urls["store"])
        with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as ledger:
            cfg = settings.load()
            ledger.record_intents(rows)
            # the next morning's offer goes too (valid from that day): within the lookahead
            assert in_store.send_due(ledger, cfg, now=NOW)["sent"] == 4
            ledger.record_intents(pending)
            assert in_store.send_due(ledger, cfg, now=NOW + timedelta(days=1))["sent"] == 0
            yield ledger, cfg


def test_one_page_per_store_and_day_with_an_index(sent: tuple[Ledger, Any]) -> None:
    ledger, cfg = sent
    written = staff_sheets.write_staff_sheets(ledger, cfg)
    root = cfg.omni_home / "staff_sheets"
    assert sorted(path.relative_to(root).as_posix() for path in written) == [
        "2026-11-20/7.html",
        "2026-11-20/8.html",
        "2026-11-20/index.html",
        "2026-11-21/7.html",
        "2026-11-21/index.html",
    ]
    page = (root / "2026-11-20" / "7.html").read_text(encoding="utf-8")
    # the customer, escaped; the store name, escaped
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "<script>" not in page
    assert "Omni Valencia &amp; Centro" in page
    # their cart items on this shelf, with size, colour and price
    assert "Camiseta &lt;b&gt;oferta&lt;/b&gt;" in page and "<b>oferta" not in page
    assert "CAM-1" in page and "azul" in page and "19,95 €" in page
    # the code, the amount, the conditions, the staff note, the last day, how to recognise
    assert "cesta_tienda_cashback_10" in page
    assert "10 % de cashback (hasta 15,00 €)" in page
    assert "27/11/2026" in page
    assert "Tiene en esta tienda artículos" in page
    assert "LA00000000" in page and "l***@example.com" in page
    assert "Ana" not in page and "Bruno" not in page  # other store, other day
    index = (root / "2026-11-20" / "index.html").read_text(encoding="utf-8")
    assert 'href="7.html"' in index and 'href="8.html"' in index
    next_day = (root / "2026-11-21" / "7.html").read_text(encoding="utf-8")
    assert "Bruno" in next_day and "Nadie" not in next_day + page
    assert "Zapatillas running" in next_day and "42" in next_day
    assert ">None<" not in next_day  # an item without size or colour leaves the cell empty


def test_rewriting_is_idempotent_and_a_day_can_be_chosen(sent: tuple[Ledger, Any]) -> None:
    ledger, cfg = sent
    first = staff_sheets.write_staff_sheets(ledger, cfg)
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in first}
    again = staff_sheets.write_staff_sheets(ledger, cfg)
    assert again == first
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in again} == before
    only = staff_sheets.write_staff_sheets(ledger, cfg, day=date(2026, 11, 21))
    assert [path.parent.name for path in only] == ["2026-11-21", "2026-11-21"]
    empty = staff_sheets.write_staff_sheets(ledger, cfg, day=date(2026, 12, 1))
    assert [path.name for path in empty] == ["index.html"]
    assert "<tbody>" in empty[0].read_text(encoding="utf-8")


def test_store_names_come_from_the_warehouse_when_the_payload_has_none(
    sent: tuple[Ledger, Any],
) -> None:
    ledger, cfg = sent
    with duckdb.connect(str(cfg.warehouse_path)) as con:
        con.execute("create schema marts")
        con.execute(
            "create table marts.dim_stores as select 8 as store_id, "
            "'Omni <Ruzafa>' as store_name, 'Valencia' as city"
        )
    staff_sheets.write_staff_sheets(ledger, cfg, day=date(2026, 11, 20))
    folder = cfg.omni_home / "staff_sheets" / "2026-11-20"
    assert "<h1>Omni &lt;Ruzafa&gt; (Valencia)</h1>" in (folder / "8.html").read_text("utf-8")
    assert "<h1>Omni Valencia &amp; Centro</h1>" in (folder / "7.html").read_text("utf-8")


def test_store_ids_become_safe_distinct_file_names() -> None:
    assert staff_sheets.store_file_stem("7") == "7"
    odd = staff_sheets.store_file_stem("../x y")
    assert "/" not in odd and odd != staff_sheets.store_file_stem("../x_y")

"""The seeded retail world simulator: a Spanish omnichannel retailer as parquet tables.

`generate` writes a new world (``<world_dir>/<table>/part-00000.parquet`` for every table of
section 1 of ``docs/sandbox-api.md`` plus ``world.json``); `advance` appends the next days
as a new part. Same seed and arguments give byte-identical files. The work is vectorised
per day over all persons (numpy + pyarrow), so a million customers over 90 days takes
minutes, not hours.

Layout of a world folder:
- ``<table>/part-<k>.parquet``: the tables the sandbox services serve (append-only; a later
  part may hold a newer version of a row, latest ``updated_at`` wins).
- ``world.json``: seed, customers, days, start_date, end_date (the simulated today), parts.
- ``_state/``: the simulator's hidden state (rates, stock, counters, pending follow-ups) that
  lets `advance` continue; not part of the contract.
- ``effects.json`` (optional, kept when the world is regenerated): the true campaign effects
  of the closed loop (see `closed_loop`): `advance` given the sandbox dir makes contacted
  persons buy more and redeems the credits and codes the sandbox write APIs delivered.
- ``closed_loop.json``: what the last such `advance` did (contacts, redemptions, skips, and
  per campaign the expected conversion rate of its contacted persons with and without effect).
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from orchestration.sandbox.world import closed_loop, population
from orchestration.sandbox.world import model as model_module
from orchestration.sandbox.world.activity import Bases, DaySimulator
from orchestration.sandbox.world.clock import clock_end_us
from orchestration.sandbox.world.schema import KEY, TABLES, VISIBLE
from orchestration.sandbox.world.sink import PartWriter, load_pending, read_table

__all__ = ["TABLES", "advance", "generate", "latest", "read_world_meta"]

WORLD_JSON = "world.json"
GENERATOR = "omni-world/1"


def read_world_meta(world_dir: Path) -> dict[str, Any]:
    """The contents of ``world.json``."""
    meta: dict[str, Any] = json.loads((world_dir / WORLD_JSON).read_text())
    return meta


def latest(world_dir: Path, table: str, key: str, updated: str) -> pa.Table:
    """All parts of `table` with only the latest version (by `updated`) of each `key`."""
    rows = read_table(world_dir, table)
    if rows.num_rows == 0:
        return rows
    rows = rows.take(pc.sort_indices(rows, sort_keys=[(key, "ascending"), (updated, "ascending")]))
    keys = rows[key].to_numpy(zero_copy_only=False)
    keep = np.append(keys[1:] != keys[:-1], True)
    return rows.filter(pa.array(keep))


def _clear(world_dir: Path) -> None:
    """Remove an earlier world (keeping its effects.json); refuse a folder that is not one."""
    effects = world_dir / closed_loop.EFFECTS_FILE
    kept = effects.read_bytes() if effects.exists() else None
    if world_dir.exists():
        entries = list(world_dir.iterdir())
        looks_like_world = (
            not entries
            or (world_dir / WORLD_JSON).exists()
            or (world_dir / model_module.STATE_DIR).exists()
        )
        if not looks_like_world:
            raise FileExistsError(f"{world_dir} exists and is not a generated world")
        shutil.rmtree(world_dir)
    world_dir.mkdir(parents=True)
    if kept is not None:
        effects.write_bytes(kept)


def _write_meta(world_dir: Path, meta: dict[str, Any]) -> None:
    (world_dir / WORLD_JSON).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _simulate(
    model: model_module.Model,
    bases: Bases,
    writer: PartWriter,
    day_indices: range,
    uplift: np.ndarray | None,
    arrivals: bool,
    loop: closed_loop.ClosedLoop | None = None,
) -> None:
    for index in day_indices:
        if arrivals:
            for table, rows in population.arrive(model, index):
                writer.add(table, rows)
                if table in ("shop_customers", "pos_customers"):
                    bases.append(table, rows.drop_columns([KEY, VISIBLE]))
            if uplift is not None and len(uplift) < len(model.persons.person_id):
                # Persons who arrived during this advance get no uplift.
                uplift = np.concatenate(
                    [uplift, np.ones(len(model.persons.person_id) - len(uplift))]
                )
        day_uplift = uplift
        if loop is not None:
            today = model.start_date + timedelta(days=index)
            contacted = loop.uplift(today, len(model.persons.person_id))
            day_uplift = contacted if uplift is None else uplift * contacted
        day = DaySimulator(model, bases, index, day_uplift, loop).run()
        for table, rows in day.chunks:
            writer.add(table, rows)


def _finish(
    world_dir: Path,
    model: model_module.Model,
    writer: PartWriter,
    meta: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    rows = writer.close()
    pending = writer.save_pending(world_dir / model_module.STATE_DIR / "pending")
    model.shop_email = None
    model_module.save(model, world_dir)
    meta["persons"] = int(len(model.persons.person_id))
    totals = meta.get("rows", {})
    meta["rows"] = {name: int(totals.get(name, 0)) + rows[name] for name in TABLES}
    _write_meta(world_dir, meta)
    summary = {key: meta[key] for key in ("seed", "customers", "days", "start_date", "end_date")}
    summary.update(
        world_dir=str(world_dir),
        part=writer.part,
        parts=meta["parts"],
        stores=int(len(model.stores.store_id)),
        rows=rows,
        pending_rows=sum(pending.values()),
        seconds=round(time.perf_counter() - started, 2),
    )
    return summary


def generate(
    world_dir: Path, customers: int, days: int, seed: int, end_date: date | None = None
) -> dict[str, Any]:
    """Write a new world of `customers` persons and `days` days of activity ending `end_date`.

    Overwrites an earlier world in `world_dir`. `end_date` is the simulated today (default:
    today's UTC date). Returns a summary: dates, rows written per table, seconds taken.
    """
    started = time.perf_counter()
    if customers < 1 or days < 1:
        raise ValueError("customers and days must be at least 1")
    world_dir = Path(world_dir)
    end = end_date or datetime.now(UTC).date()
    start = end - timedelta(days=days - 1)
    _clear(world_dir)
    model, chunks = population.build(seed, customers, days, start)
    writer = PartWriter(world_dir, 0, clock_end_us(end), hold_all=False)
    initial = dict(chunks)
    for table, rows in chunks:
        writer.add(table, rows)
    bases = Bases(
        shop_customers=initial["shop_customers"].drop_columns([KEY, VISIBLE]),
        pos_customers=initial["pos_customers"].drop_columns([KEY, VISIBLE]),
        marketplace_listings=initial["marketplace_listings"].drop_columns([KEY, VISIBLE]),
    )
    del chunks, initial
    _simulate(model, bases, writer, range(days), None, arrivals=False)
    meta = {
        "generator": GENERATOR,
        "seed": seed,
        "customers": customers,
        "days": days,
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "parts": 1,
    }
    return _finish(world_dir, model, writer, meta, started)


def advance(
    world_dir: Path,
    days: int = 1,
    purchase_uplift: np.ndarray | None = None,
    *,
    sandbox_dir: Path | None = None,
    campaigns_dir: Path | None = None,
) -> dict[str, Any]:
    """Append the next `days` of activity as a new part and move `end_date` forward.

    The new part holds the new days' rows (including persons who become known on those
    days, at the generated window's acquisition rate) plus new versions of existing rows
    whose state changed (orders shipped, delivered or refunded; consent changes; re-priced
    listings).
    `purchase_uplift` (optional, one multiplier per person, aligned with `person_id` 1..N)
    scales each person's purchase probability: the hook for a campaign effect.
    `sandbox_dir` (``$OMNI_HOME/sandbox``) closes the loop: the contacts its write-API
    journals hold raise their persons' purchase probability by the true effect in
    ``<world>/effects.json`` (none without the file) for the days after the contact, and
    delivered cashback credits and emailed codes are redeemed in store and online orders;
    `campaigns_dir` lets it read offer codes and offer -> campaign from the campaign files.
    The summary then has a ``closed_loop`` entry (contacts, persons, redemptions, skips).
    """
    started = time.perf_counter()
    if days < 1:
        raise ValueError("days must be at least 1")
    world_dir = Path(world_dir)
    meta = read_world_meta(world_dir)
    model = model_module.load(world_dir)
    n = len(model.persons.person_id)
    uplift = None
    if purchase_uplift is not None:
        uplift = np.asarray(purchase_uplift, dtype=float)
        if uplift.shape != (n,):
            raise ValueError(f"purchase_uplift must have one value per person ({n})")
    old_end = date.fromisoformat(meta["end_date"])
    new_end = old_end + timedelta(days=days)
    shop = latest(world_dir, "shop_customers", "shop_customer_id", "updated_at")
    pos = latest(world_dir, "pos_customers", "pos_customer_id", "updated_at")
    listings = latest(world_dir, "marketplace_listings", "listing_id", "updated_at")
    shop = shop.sort_by("person_id")
    row = np.searchsorted(shop["person_id"].to_numpy(), model.persons.person_id)
    row = np.minimum(row, max(shop.num_rows - 1, 0))
    emails = shop["email"].combine_chunks()
    model.shop_email = emails.take(pa.array(row, mask=~model.persons.has_web))
    writer = PartWriter(world_dir, int(meta["parts"]), clock_end_us(new_end), hold_all=True)
    pending_dir = world_dir / model_module.STATE_DIR / "pending"
    for table in TABLES:
        writer.add(table, load_pending(pending_dir, table))
    first = (old_end - model.start_date).days + 1
    bases = Bases(shop, pos, listings)
    loop = None
    if closed_loop.has_inputs(sandbox_dir, world_dir):
        loop = closed_loop.build(
            sandbox_dir,
            world_dir,
            model.persons.person_id,
            [shop, pos, latest(world_dir, "persons", "person_id", "created_at")],
            campaigns_dir,
        )
    _simulate(model, bases, writer, range(first, first + days), uplift, True, loop)
    if loop is not None:
        loop.save(world_dir / model_module.STATE_DIR)
    meta.update(
        end_date=new_end.isoformat(), days=int(meta["days"]) + days, parts=int(meta["parts"]) + 1
    )
    summary = _finish(world_dir, model, writer, meta, started)
    if loop is not None:
        first_day = old_end + timedelta(days=1)
        summary["closed_loop"] = {
            "advanced_from": first_day.isoformat(),
            "advanced_to": new_end.isoformat(),
            **loop.summary(),
        }
        report = world_dir / closed_loop.REPORT_FILE
        report.write_text(json.dumps(summary["closed_loop"], indent=2, sort_keys=True) + "\n")
    return summary

"""Writing chunks of simulated rows into one part of the world.

A part is ``<world>/<table>/part-<k>.parquet`` for every table. The simulator hands over
chunks (arrow tables with the hidden ``_key`` and ``_visible`` columns, see ``schema``); the
writer keeps the rows whose ``_visible`` time the part's clock has reached, keeps the latest
version of a versioned entity, sorts by ``_key``, and sets aside the rest as *pending*: rows
that a later ``advance`` writes when its clock reaches them. The same chunk therefore ends
up in the same state whether a world is generated in one go or advanced day by day.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from orchestration.sandbox.world.schema import KEY, TABLES, VISIBLE, with_hidden

FLUSH_ROWS = 250_000
MAX_QUEUED_WRITES = 3
COMPRESSION = "zstd"


def col(values: Any, dtype: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    """An arrow array of `dtype` from numpy values (ints for timestamps), null where not valid."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        array = values
        if valid is not None:
            array = pc.if_else(pa.array(valid), array, pa.scalar(None, array.type))
        return array if array.type == dtype else array.cast(dtype)
    data = np.asarray(values)
    mask = None if valid is None else ~np.asarray(valid, dtype=bool)
    if pa.types.is_timestamp(dtype):
        return pa.array(data.astype(np.int64), type=pa.int64(), mask=mask).cast(dtype)
    return pa.array(data, type=dtype, mask=mask)


def nulls(n: int, dtype: pa.DataType) -> pa.Array:
    return pa.nulls(n, type=dtype)


def chunk(table: str, columns: Mapping[str, Any], key: Any, visible: Any) -> pa.Table:
    """Build a chunk of `table` from columns (numpy or arrow) plus its hidden columns."""
    schema = TABLES[table].schema
    arrays = [col(columns[field.name], field.type) for field in schema]
    arrays.append(col(key, pa.int64()))
    arrays.append(col(visible, pa.int64()))
    return pa.Table.from_arrays(arrays, schema=with_hidden(schema))


def empty_chunk(table: str) -> pa.Table:
    return with_hidden(TABLES[table].schema).empty_table()


def latest_versions(table: pa.Table, versioned: bool) -> pa.Table:
    """Sort by (`_key`, `_visible`) and, for a versioned table, keep the last row per key."""
    if table.num_rows == 0:
        return table
    keys, visible = table[KEY].to_numpy(), table[VISIBLE].to_numpy()
    step = np.diff(keys)
    if not ((step > 0) | ((step == 0) & (np.diff(visible) >= 0))).all():
        order = pc.sort_indices(table, sort_keys=[(KEY, "ascending"), (VISIBLE, "ascending")])
        table = table.take(order)
        keys = table[KEY].to_numpy()
    if not versioned:
        return table
    keep = np.append(keys[1:] != keys[:-1], True)
    return table.filter(pa.array(keep))


class PartWriter:
    """Collects chunks for one part and writes `<world>/<table>/part-<k>.parquet`.

    Chunks of a non-held table are written as they come (in the order given: callers add
    chunks with increasing keys); held tables, and every table when `hold_all`, are kept until
    `close` and deduplicated over the whole part. Parquet encoding runs on one background
    thread (in submission order, so files stay deterministic) while the simulation goes on.
    """

    def __init__(self, world_dir: Path, part: int, clock_end_us: int, hold_all: bool) -> None:
        self.world_dir = world_dir
        self.part = part
        self.clock_end_us = clock_end_us
        self.hold_all = hold_all
        self.rows: dict[str, int] = {name: 0 for name in TABLES}
        self._buffers: dict[str, list[pa.Table]] = {name: [] for name in TABLES}
        self._buffered: dict[str, int] = {name: 0 for name in TABLES}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.pending: dict[str, list[pa.Table]] = {name: [] for name in TABLES}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet")
        self._queued: list[Future[None]] = []

    def _path(self, table: str) -> Path:
        folder = self.world_dir / table
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"part-{self.part:05d}.parquet"

    def add(self, table: str, rows: pa.Table) -> None:
        if rows.num_rows == 0:
            return
        spec = TABLES[table]
        visible = rows[VISIBLE].to_numpy() <= self.clock_end_us
        if not visible.all():
            self.pending[table].append(rows.filter(pa.array(~visible)))
            rows = rows.filter(pa.array(visible))
        if self.hold_all or spec.held:
            self._buffers[table].append(rows)
            return
        rows = latest_versions(rows, spec.versioned)
        self._buffers[table].append(rows)
        self._buffered[table] += rows.num_rows
        if self._buffered[table] >= FLUSH_ROWS:
            self._flush(table)

    def _flush(self, table: str) -> None:
        parts = self._buffers[table]
        if not parts:
            return
        data = pa.concat_tables(parts).drop_columns([KEY, VISIBLE])
        self._buffers[table], self._buffered[table] = [], 0
        writer = self._writers.get(table)
        if writer is None:
            writer = pq.ParquetWriter(
                self._path(table), TABLES[table].schema, compression=COMPRESSION
            )
            self._writers[table] = writer
        while len(self._queued) >= MAX_QUEUED_WRITES:
            self._queued.pop(0).result()
        self._queued.append(self._executor.submit(writer.write_table, data, FLUSH_ROWS))
        self.rows[table] += data.num_rows

    def close(self) -> dict[str, int]:
        """Write every table's part (an empty part when nothing is new); rows per table."""
        for name, spec in TABLES.items():
            if self.hold_all or spec.held:
                held = self._buffers[name]
                merged = pa.concat_tables(held) if held else None
                self._buffers[name] = []
                if merged is not None and merged.num_rows:
                    self._buffers[name] = [latest_versions(merged, spec.versioned)]
            self._flush(name)
        for future in self._queued:
            future.result()
        self._queued = []
        self._executor.shutdown()
        for name, spec in TABLES.items():
            writer = self._writers.pop(name, None)
            if writer is not None:
                writer.close()
            else:
                pq.write_table(spec.schema.empty_table(), self._path(name), compression=COMPRESSION)
        return dict(self.rows)

    def save_pending(self, pending_dir: Path) -> dict[str, int]:
        """Store the rows not yet visible, one file per table (replacing earlier pending)."""
        pending_dir.mkdir(parents=True, exist_ok=True)
        counts = {}
        for name in TABLES:
            rows = pa.concat_tables(self.pending[name]) if self.pending[name] else None
            if rows is None:
                rows = empty_chunk(name)
            pq.write_table(rows, pending_dir / f"{name}.parquet", compression=COMPRESSION)
            counts[name] = rows.num_rows
        return counts


def load_pending(pending_dir: Path, table: str) -> pa.Table:
    path = pending_dir / f"{table}.parquet"
    if not path.exists():
        return empty_chunk(table)
    return pq.read_table(path, schema=with_hidden(TABLES[table].schema))


def read_table(world_dir: Path, table: str) -> pa.Table:
    """All parts of one table, in part order (every version, no deduplication)."""
    paths = sorted((world_dir / table).glob("part-*.parquet"))
    schema = TABLES[table].schema
    if not paths:
        return schema.empty_table()
    return pa.concat_tables(pq.read_table(path, schema=schema) for path in paths)

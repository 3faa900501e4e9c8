"""The simulated world held in an in-memory DuckDB, shaped as API documents.

Loading reads every ``world/<table>/part-*.parquet`` and keeps the latest version of each id
(parts are append-only; a later ``updated_at``, then a later part, wins). Each service
declares its collections as :class:`Resource` SQL that turns those tables into one JSON
document per record, built once at load time, so serving a page is one keyset scan over a
table sorted by ``(k_ts, k_id)`` plus string concatenation: no per-request JSON encoding.

A reload builds a fresh database next to the serving one and swaps it in when complete, so
requests are never served from a half-built world.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from orchestration.sandbox.services.paging import BadRequest, Key, RecordId

log = logging.getLogger(__name__)

# The key of each world table: rows sharing it are versions of one record.
TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "stores": ("store_id",),
    "products": ("product_id",),
    "inventory_levels": ("store_id", "product_id", "valid_from"),
    "persons": ("person_id",),
    "shop_customers": ("shop_customer_id",),
    "pos_customers": ("pos_customer_id",),
    "social_profiles": ("social_user_id",),
    "web_sessions": ("session_id",),
    "checkouts": ("checkout_id",),
    "checkout_items": ("checkout_id", "product_id"),
    "web_orders": ("order_id",),
    "web_order_items": ("order_id", "line_item_id"),
    "store_sales": ("pos_order_id",),
    "store_sale_items": ("pos_order_id", "line_uid"),
    "returns": ("return_id",),
    "social_activities": ("activity_id",),
    "marketplace_listings": ("listing_id",),
}

# SQL helpers shared by every resource definition (DuckDB macros).
MACROS = (
    "CREATE MACRO sec(t) AS date_trunc('second', t)",
    "CREATE MACRO iso(t) AS strftime(t, '%Y-%m-%dT%H:%M:%S+00:00')",
    "CREATE MACRO graph_time(t) AS strftime(t, '%Y-%m-%dT%H:%M:%S+0000')",
    "CREATE MACRO money(x) AS printf('%.2f', CAST(x AS DOUBLE))",
    "CREATE MACRO cents(x) AS CAST(round(CAST(x AS DOUBLE) * 100) AS BIGINT)",
    "CREATE MACRO json_list(x) AS coalesce(to_json(x), '[]'::JSON)",
    # Spanish numbers in any of the messy formats to E.164 (+34...).
    """CREATE MACRO e164(p) AS CASE
        WHEN p IS NULL THEN NULL
        WHEN starts_with(regexp_replace(p, '[^0-9]', '', 'g'), '00')
            THEN '+' || substr(regexp_replace(p, '[^0-9]', '', 'g'), 3)
        WHEN length(regexp_replace(p, '[^0-9]', '', 'g')) = 9
            THEN '+34' || regexp_replace(p, '[^0-9]', '', 'g')
        ELSE '+' || regexp_replace(p, '[^0-9]', '', 'g') END""",
)


IdType = type[int] | type[str]


@dataclass(frozen=True)
class Resource:
    """One API collection.

    ``sql`` selects ``k_ts`` (naive UTC timestamp truncated to the second: the paging and
    filter key), ``k_id`` (the record id), ``body`` (the record's JSON text) and any extra
    filter columns, from the latest-version world tables named ``w_<table>``.
    """

    name: str
    tables: tuple[str, ...]
    sql: str


@dataclass(frozen=True)
class Row:
    key: Key
    body: str


class WorldNotFound(FileNotFoundError):
    """The world folder has no ``world.json``: generate it first."""


class World:
    """The world of one ``world_dir``, loaded for the given resources; thread-safe reads."""

    def __init__(self, world_dir: Path, resources: Iterable[Resource]) -> None:
        self.world_dir = Path(world_dir)
        self.resources = {resource.name: resource for resource in resources}
        self._con: duckdb.DuckDBPyConnection | None = None
        self._signature: str | None = None
        self._id_types: dict[str, IdType] = {}
        self._swap_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self.info: dict[str, Any] = {}

    # -- loading -------------------------------------------------------------------------
    def _tables(self) -> list[str]:
        needed = {table for resource in self.resources.values() for table in resource.tables}
        return sorted(needed)

    def signature(self) -> str:
        """What the loaded state depends on: world.json and the part files' names and sizes."""
        manifest = self.world_dir / "world.json"
        if not self._tables():
            return ""  # services that serve no world tables (a mail or loyalty API) need none
        if not manifest.exists():
            raise WorldNotFound(
                f"no world at {self.world_dir} (world.json missing): run `omni sandbox generate`"
            )
        parts = []
        for table in self._tables():
            for path in sorted((self.world_dir / table).glob("*.parquet")):
                stat = path.stat()
                parts.append(f"{table}/{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
        return manifest.read_text() + "\n" + "\n".join(parts)

    def load(self, force: bool = False) -> bool:
        """(Re)load the world when its files changed; returns whether it was rebuilt."""
        with self._load_lock:
            signature = self.signature()
            if not force and signature == self._signature:
                return False
            started = time.perf_counter()
            con = self._build()
            counts = {
                name: int(self._scalar(con, f"SELECT count(*) FROM api_{name}"))
                for name in self.resources
            }
            id_types = {name: self._id_type(con, name) for name in self.resources}
            manifest = self.world_dir / "world.json"
            meta = json.loads(manifest.read_text()) if manifest.exists() else {}
            with self._swap_lock:
                old, self._con, self._signature = self._con, con, signature
                self._id_types = id_types
                self.info = {
                    "world_dir": str(self.world_dir),
                    "world": meta,
                    "records": counts,
                    "loaded_at": datetime.now().astimezone().isoformat(timespec="seconds"),
                    "load_seconds": round(time.perf_counter() - started, 3),
                }
            if old is not None:
                old.close()
            log.info("world loaded in %.2fs: %s", time.perf_counter() - started, counts)
            return True

    @classmethod
    def _id_type(cls, con: duckdb.DuckDBPyConnection, resource: str) -> IdType:
        """The Python type of a resource's ids (cursors must carry the same)."""
        kind = cls._scalar(
            con,
            "SELECT data_type FROM information_schema.columns "
            f"WHERE table_name = 'api_{resource}' AND column_name = 'k_id'",
        )
        return int if "INT" in str(kind).upper() else str

    @staticmethod
    def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
        row = con.execute(sql).fetchone()
        return row[0] if row else None

    def _build(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")  # no progress bars in the service log
        for macro in MACROS:
            con.execute(macro)
        for table in self._tables():
            self._load_table(con, table)
        for resource in self.resources.values():
            con.execute(
                f"CREATE TABLE api_{resource.name} AS "
                f"SELECT * FROM ({resource.sql}) ORDER BY k_ts, k_id"
            )
        for table in self._tables():
            con.execute(f"DROP TABLE w_{table}")
        return con

    def _load_table(self, con: duckdb.DuckDBPyConnection, table: str) -> None:
        folder = self.world_dir / table
        files = sorted(folder.glob("*.parquet"))
        if not files:
            raise WorldNotFound(f"world table {table!r} has no parquet files in {folder}")
        paths = ", ".join(f"'{path.as_posix()}'" for path in files)
        source = f"read_parquet([{paths}], filename = true, union_by_name = true)"
        described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
        columns = {str(row[0]): str(row[1]) for row in described}
        # Timestamps are served and compared as naive UTC, whatever the session time zone.
        zoned = [name for name, kind in columns.items() if kind == "TIMESTAMP WITH TIME ZONE"]
        replace = ", ".join(f'timezone(\'UTC\', "{name}") AS "{name}"' for name in zoned)
        select = "* EXCLUDE (filename)" + (f" REPLACE ({replace})" if replace else "")
        keys = ", ".join(TABLE_KEYS.get(table, ()))
        part = "CAST(coalesce(regexp_extract(filename, 'part-(\\d+)', 1), '0') AS INTEGER)"
        order = ("updated_at DESC NULLS LAST, " if "updated_at" in columns else "") + f"{part} DESC"
        sql = f"CREATE TABLE w_{table} AS SELECT {select} FROM {source}"
        if keys:
            sql += f" QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order}) = 1"
        con.execute(sql)

    # -- reading -------------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for the calling thread on the current database (close it when done)."""
        with self._swap_lock:
            if self._con is None:
                raise RuntimeError("world not loaded")
            return self._con.cursor()

    def page(
        self,
        resource: str,
        *,
        after: Key | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        where: Sequence[str] = (),
        params: Sequence[Any] = (),
        limit: int = 50,
    ) -> tuple[list[Row], bool]:
        """Rows in ``(k_ts, k_id)`` order after ``after``, within ``[since, until]``.

        ``where`` holds extra SQL conditions with ``?`` placeholders filled from ``params``.
        Returns at most ``limit`` rows and whether more rows follow.
        """
        conditions: list[str] = []
        values: list[Any] = []
        if since is not None:
            conditions.append("k_ts >= ?")
            values.append(since)
        if until is not None:
            conditions.append("k_ts <= ?")
            values.append(until)
        if after is not None:
            wanted = self._id_types.get(resource, type(after.record_id))
            if not isinstance(after.record_id, wanted) or isinstance(after.record_id, bool):
                raise BadRequest(f"Invalid cursor for {resource}")
            # The first conjunct is pushable to zone maps; the second is the exact keyset.
            conditions.append("k_ts >= ?")
            conditions.append("(k_ts > ? OR (k_ts = ? AND k_id > ?))")
            values.extend([after.updated_at, after.updated_at, after.updated_at, after.record_id])
        conditions.extend(where)
        values.extend(params)
        sql = f"SELECT k_ts, k_id, body FROM api_{self.resources[resource].name}"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        sql += " ORDER BY k_ts, k_id LIMIT ?"
        values.append(limit + 1)
        cur = self.cursor()
        try:
            fetched = cur.execute(sql, values).fetchall()
        except (duckdb.ConversionException, duckdb.BinderException) as error:
            # A cursor of another collection (an id of the wrong type), not a server fault.
            raise BadRequest(f"Invalid cursor or filter for {resource}: {error}") from error
        finally:
            cur.close()
        rows = [Row(Key(k_ts, k_id), body) for k_ts, k_id, body in fetched[:limit]]
        return rows, len(fetched) > limit

    def count(self, resource: str, where: Sequence[str] = (), params: Sequence[Any] = ()) -> int:
        """How many records a resource has (optionally under extra SQL conditions)."""
        sql = f"SELECT count(*) FROM api_{self.resources[resource].name}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        cur = self.cursor()
        try:
            row = cur.execute(sql, list(params)).fetchone()
        finally:
            cur.close()
        return int(row[0]) if row else 0

    def bodies(self, resource: str, batch: int = 10_000) -> Iterator[tuple[RecordId, str]]:
        """Every record of a resource in ``(k_ts, k_id)`` order, streamed in batches."""
        cur = self.cursor()
        try:
            cur.execute(f"SELECT k_id, body FROM api_{resource} ORDER BY k_ts, k_id")
            while chunk := cur.fetchmany(batch):
                yield from chunk
        finally:
            cur.close()

    def close(self) -> None:
        with self._swap_lock:
            if self._con is not None:
                self._con.close()
                self._con = None
                self._signature = None

"""The dispatch ledger: one row per intended contact, recorded before anything is sent.

The ledger is the memory that makes dispatch safe to crash and re-run. Every contact a campaign
hands off gets a deterministic id (campaign, customer, trigger occurrence, channel: the same
md5 as the ``contact_id`` of the warehouse's ``sync_*`` audiences) and a ``pending`` row; a
dispatcher reads due rows, prepares their requests, and *starts* each request's rows just
before it calls the provider (``pending`` -> ``sending``, compare-and-set, so two dispatchers
never hold the same row): a row is ``sending`` only while its own request is in flight. Then it
records the outcome as soon as it has it. Every state change
appends a ``contact_events`` row in the same transaction, so the history of a contact is
complete and auditable. The legal moves and the per-channel crash semantics are in
:mod:`orchestration.dispatch.states`.

Storage is SQLAlchemy Core on any URL: a SQLite file under ``OMNI_HOME`` by default (WAL, a
busy timeout, and ``BEGIN IMMEDIATE`` so that each transaction holds the write lock from its
start: claims are serialised), Postgres by URL (``SELECT ... FOR UPDATE SKIP LOCKED`` plus the
compare-and-set ``UPDATE ... WHERE state = <expected>`` with a row-count check). The SQL is
portable: no engine-specific upsert, timestamps stored as naive UTC.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, RowMapping, make_url
from sqlalchemy.exc import IntegrityError

from orchestration.dispatch.states import (
    STALE_SENDING_RECOVERY,
    TRANSITIONS,
    WAREHOUSE_STATUS,
    Channel,
    IllegalTransition,
    State,
)
from orchestration.settings import Settings

log = logging.getLogger(__name__)

# No cap on attempts by default: a contact the provider refuses for now is retried until the
# retry horizon (settings: dispatch_retry_horizon_hours) has passed since its first refusal.
DEFAULT_MAX_ATTEMPTS: int | None = None
DEFAULT_RETRY_HORIZON = timedelta(hours=24)
_CHUNK = 500  # rows per statement: well under SQLite's bound-parameter limit
_READ_ONLY = "omni_ledger_read_only"  # execution option: a read needs no write lock (SQLite)

metadata = MetaData()

contacts = Table(
    "contacts",
    metadata,
    Column("contact_id", String(32), primary_key=True),
    Column("campaign_id", String(200), nullable=False),
    Column("customer_id", String(200), nullable=False),
    Column("trigger_key", String(200), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("offer_id", String(200)),
    Column("offer_code", String(200)),
    Column("amount", Float),
    Column("scheduled_send_at", DateTime),  # naive UTC; null = due at once
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("provider_message_id", String(200)),
    Column("last_error", Text),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("state_changed_at", DateTime, nullable=False),
    Column("sent_at", DateTime),  # when the provider accepted it (the warehouse's contacted_at)
    Column("next_attempt_at", DateTime),  # a failed row is not claimed before (backoff, 429)
    # the first refusal of the current retry episode (5xx, unreachable): the retry horizon
    # counts from it; null when the contact never failed (or was requeued)
    Column("retrying_since", DateTime),
    Column("is_transactional", Boolean, nullable=False, default=False),
    Column("estimated_cost_eur", Float),
    Column("payload_json", Text),  # the hand-off row's other fields, for the channel
    Index("ix_contacts_claim", "channel", "state", "scheduled_send_at"),
    Index("ix_contacts_campaign", "campaign_id", "state"),
)

contact_events = Table(
    "contact_events",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("contact_id", String(32), ForeignKey("contacts.contact_id"), nullable=False),
    Column("from_state", String(16)),  # null for the recording of the intent
    Column("to_state", String(16), nullable=False),
    Column("at", DateTime, nullable=False),
    Column("detail", Text),
    Index("ix_contact_events_contact", "contact_id", "event_id"),
)

holdouts = Table(
    "holdouts",
    metadata,
    Column("campaign_id", String(200), primary_key=True),
    Column("customer_id", String(200), primary_key=True),
    Column("trigger_key", String(200), primary_key=True),
    Column("would_contact_at", DateTime),  # the scheduled send time the treated would have had
    Column("recorded_at", DateTime, nullable=False),
)

# The columns of the warehouse contract `dispatch.contacts` (see int_campaign_contact_history).
EXPORT_COLUMNS: tuple[str, ...] = (
    "contact_id",
    "campaign_id",
    "customer_id",
    "trigger_key",
    "channel",
    "status",
    "contacted_at",
    "is_transactional",
    "estimated_cost_eur",
)

# `dispatch.contacts` as loaded into the warehouse: the contract columns plus the ledger's own
# (what fct_campaign_contacts and measurement read). ``EXPORT_COLUMNS`` stays the minimum.
WAREHOUSE_CONTACT_COLUMNS: tuple[str, ...] = (
    *EXPORT_COLUMNS,
    "state",
    "offer_id",
    "offer_code",
    "amount_eur",
    "scheduled_send_at",
    "sent_at",
    "provider_message_id",
    "attempts",
    "last_error",
)

# `dispatch.holdouts`: one row per held-out decision (campaign, customer, trigger occurrence).
HOLDOUT_COLUMNS: tuple[str, ...] = (
    "campaign_id",
    "customer_id",
    "trigger_key",
    "would_contact_at",
    "recorded_at",
)

# Hand-off columns stored in their own ledger columns (the rest goes to payload_json).
_OWN_COLUMNS = frozenset(
    {
        "contact_id",
        "campaign_id",
        "customer_id",
        "trigger_key",
        "channel",
        "offer_id",
        "offer_code",
        "amount",
        "scheduled_send_at",
        "is_transactional",
        "estimated_cost_eur",
    }
)


class UnknownContact(KeyError):
    """No ledger row has this contact id."""


class ConcurrentChange(RuntimeError):
    """The row changed state between the read and the compare-and-set update."""


@dataclass(frozen=True)
class Contact:
    """One ledger row (timestamps are timezone-aware UTC)."""

    contact_id: str
    campaign_id: str
    customer_id: str
    trigger_key: str
    channel: str
    offer_id: str | None
    offer_code: str | None
    amount: float | None
    scheduled_send_at: datetime | None
    state: State
    attempts: int
    provider_message_id: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    state_changed_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    retrying_since: datetime | None
    is_transactional: bool
    estimated_cost_eur: float | None
    payload_json: str | None

    @property
    def payload(self) -> dict[str, Any]:
        """The hand-off row's other fields (email, first_name, store_id, template payload...)."""
        return json.loads(self.payload_json) if self.payload_json else {}

    @classmethod
    def _from_row(cls, row: RowMapping) -> Contact:
        values = {name: row[name] for name in cls.__dataclass_fields__}
        for name, value in values.items():
            if isinstance(value, datetime):
                values[name] = _aware(value)
        values["state"] = State(values["state"])
        values["is_transactional"] = bool(values["is_transactional"])
        return cls(**values)


@dataclass(frozen=True)
class ContactEvent:
    """One line of a contact's audit log."""

    event_id: int
    contact_id: str
    from_state: State | None
    to_state: State
    at: datetime
    detail: str | None


def contact_id_for(campaign_id: str, customer_id: str, trigger_key: str, channel: str) -> str:
    """The deterministic id of one intended contact: md5 of its four parts joined by ``|``.

    The same value as the dbt macro ``triggers_key`` gives the ``sync_*`` audiences'
    ``contact_id`` (md5 hex of ``campaign|customer|trigger_key|channel``), so ledger rows and
    warehouse rows join on it.
    """
    text = "|".join(str(part) for part in (campaign_id, customer_id, trigger_key, channel))
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def _is_missing(value: Any) -> bool:
    """None, NaN or NaT (pandas/pyarrow rows carry both for nulls)."""
    if value is None or type(value).__name__ == "NAType":
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        return False


def _utc(value: Any) -> datetime | None:
    """A naive UTC datetime (what the ledger stores) from a datetime, pandas Timestamp,
    ISO string or date; naive inputs are taken as UTC."""
    if _is_missing(value):
        return None
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise TypeError(f"not a timestamp: {value!r}")
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now(now: datetime | None) -> datetime:
    stamp = _utc(now) if now is not None else None
    return stamp or datetime.now(UTC).replace(tzinfo=None)


def _text(value: Any) -> str | None:
    return None if _is_missing(value) else str(value)


def _number(value: Any) -> float | None:
    return None if _is_missing(value) else float(value)


def _jsonable(value: Any) -> Any:
    if _is_missing(value):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, float) and math.isinf(value):
        return None
    return value


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _sqlite_setup(engine: Engine) -> None:
    """WAL, a busy timeout and ``BEGIN IMMEDIATE``: each transaction takes the write lock at
    its start, so read-then-update sequences (claims) are serialised between processes."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        reading = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")


def _add_missing_columns(engine: Engine) -> None:
    """Add the nullable columns a ledger made by an older version lacks (``create_all`` makes
    missing tables only): the schema grows by added columns, never by changed ones."""
    from sqlalchemy import inspect

    found = {column["name"] for column in inspect(engine).get_columns(contacts.name)}
    missing = [column for column in contacts.columns if column.name not in found]
    if not missing:
        return
    with engine.begin() as conn:
        for column in missing:
            kind = column.type.compile(dialect=engine.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {contacts.name} ADD COLUMN {column.name} {kind}")
            log.info("Dispatch ledger: added column contacts.%s", column.name)


class Ledger:
    """The dispatch ledger at a SQLAlchemy URL (tables created when missing).

    Create one per process (engines are not shared across ``fork``). All methods are
    transactional: a state change and its event commit together or not at all.
    """

    def __init__(
        self,
        url: str,
        *,
        max_attempts: int | None = DEFAULT_MAX_ATTEMPTS,
        retry_horizon: timedelta = DEFAULT_RETRY_HORIZON,
    ) -> None:
        parsed = make_url(url)
        self.url = url
        self.max_attempts = max_attempts
        self.retry_horizon = retry_horizon
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if not parsed.database or parsed.database == ":memory:":
                raise ValueError("the ledger needs a SQLite *file* (several processes share it)")
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(url, connect_args={"timeout": 30})
            _sqlite_setup(self.engine)
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
        metadata.create_all(self.engine)
        _add_missing_columns(self.engine)

    @classmethod
    def from_settings(cls, cfg: Settings, **kwargs: Any) -> Ledger:
        """The ledger of these settings (``OMNI_LEDGER_URL``, else ``OMNI_HOME/ledger.sqlite``;
        the retry horizon from ``dispatch_retry_horizon_hours``)."""
        url = cfg.ledger_url or f"sqlite:///{cfg.omni_home / 'ledger.sqlite'}"
        kwargs.setdefault("retry_horizon", timedelta(hours=cfg.dispatch_retry_horizon_hours))
        return cls(url, **kwargs)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- recording intents ---------------------------------------------------------------

    def record_intents(
        self, rows: Iterable[Mapping[str, Any]], *, now: datetime | None = None
    ) -> dict[str, int]:
        """Record intended contacts as ``pending`` rows; insert-if-absent, in one transaction.

        Each row needs campaign_id, customer_id, trigger_key and channel; it may carry
        contact_id (then it must equal :func:`contact_id_for` of those: the warehouse and the
        ledger agree on ids), offer_id, offer_code, amount (else offer_value),
        scheduled_send_at, is_transactional, estimated_cost_eur; other fields are kept in
        ``payload_json``. A contact already in the ledger (a re-run of the same hand-off) is
        left as it is. Returns ``{"recorded": new rows, "already_recorded": rows skipped}``.
        """
        stamp = _now(now)
        prepared: dict[str, dict[str, Any]] = {}
        duplicates = 0
        for row in rows:
            values = self._intent_values(row, stamp)
            if values["contact_id"] in prepared:
                duplicates += 1
                continue
            prepared[values["contact_id"]] = values
        for attempt in (1, 2):
            try:
                recorded = self._insert_absent(list(prepared.values()), stamp)
                break
            except IntegrityError:  # a concurrent recorder inserted some of them first
                if attempt == 2:
                    raise
        counts = {"recorded": recorded, "already_recorded": len(prepared) - recorded + duplicates}
        log.info("Dispatch ledger: %s", counts)
        return counts

    def record_handoff(self, path: Path | str, *, now: datetime | None = None) -> dict[str, int]:
        """Record one hand-off file (``OMNI_HOME/outbox/<campaign>/<run>``).

        Treated rows become ``pending`` contacts (:meth:`record_intents`); rows with
        ``is_holdout`` true become ``holdouts`` rows (:meth:`record_holdouts`) and are never
        contacts, so no dispatcher can claim them. Both are insert-if-absent: recording the
        same file again changes nothing. Returns ``{"recorded", "already_recorded"}`` and, when
        the file has an ``is_holdout`` column, ``{"holdouts_recorded",
        "holdouts_already_recorded"}`` too. Every row is checked before anything is written.
        """
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        rows = table.to_pylist()
        if "is_holdout" not in table.column_names:
            return self.record_intents(rows, now=now)
        treated: list[dict[str, Any]] = []
        held_out: list[dict[str, Any]] = []
        for row in rows:
            flag = row.pop("is_holdout", None)
            (held_out if not _is_missing(flag) and bool(flag) else treated).append(row)
        stamp = _now(now)
        for row in treated:  # all or nothing: a bad row fails before anything is written
            self._intent_values(row, stamp)
        self._holdout_values(held_out, stamp)
        counts = self.record_intents(treated, now=stamp)
        return {**counts, **self.record_holdouts(held_out, now=stamp)}

    def record_holdouts(
        self, rows: Iterable[Mapping[str, Any]], *, now: datetime | None = None
    ) -> dict[str, int]:
        """Record held-out decisions in ``holdouts``; insert-if-absent, in one transaction.

        A holdout is the counterfactual of a contact: the customer would have been contacted
        (``would_contact_at``, the earliest ``scheduled_send_at`` of the decision's rows) but
        the campaign's holdout hash kept them out, so measurement can compare. One row per
        (campaign_id, customer_id, trigger_key) whatever the channels; a decision already
        recorded keeps its first row. Returns ``{"holdouts_recorded",
        "holdouts_already_recorded"}`` (decisions, not channel rows).
        """
        stamp = _now(now)
        prepared = self._holdout_values(list(rows), stamp)
        recorded = 0
        for attempt in (1, 2):
            try:
                recorded = self._insert_absent_holdouts(list(prepared.values()))
                break
            except IntegrityError:  # a concurrent recorder inserted some of them first
                if attempt == 2:
                    raise
        counts = {
            "holdouts_recorded": recorded,
            "holdouts_already_recorded": len(prepared) - recorded,
        }
        log.info("Dispatch ledger holdouts: %s", counts)
        return counts

    @staticmethod
    def _holdout_values(
        rows: Sequence[Mapping[str, Any]], stamp: datetime
    ) -> dict[tuple[str, str, str], dict[str, Any]]:
        """One ``holdouts`` row per decision (earliest would-be send time of its rows)."""
        prepared: dict[tuple[str, str, str], dict[str, Any]] = {}
        for row in rows:
            missing = [
                key
                for key in ("campaign_id", "customer_id", "trigger_key")
                if _is_missing(row.get(key))
            ]
            if missing:
                raise ValueError(f"a holdout row lacks {', '.join(missing)}: {dict(row)!r}")
            key = (str(row["campaign_id"]), str(row["customer_id"]), str(row["trigger_key"]))
            when = _utc(row.get("scheduled_send_at"))
            known = prepared.get(key)
            if known is None:
                prepared[key] = {
                    "campaign_id": key[0],
                    "customer_id": key[1],
                    "trigger_key": key[2],
                    "would_contact_at": when,
                    "recorded_at": stamp,
                }
            elif when is not None and (
                known["would_contact_at"] is None or when < known["would_contact_at"]
            ):
                known["would_contact_at"] = when
        return prepared

    def _insert_absent_holdouts(self, rows: list[dict[str, Any]]) -> int:
        recorded = 0
        with self.engine.begin() as conn:
            for chunk in _chunks(rows):
                campaign_ids = sorted({values["campaign_id"] for values in chunk})
                customer_ids = sorted({values["customer_id"] for values in chunk})
                existing = {
                    (str(campaign), str(customer), str(trigger))
                    for campaign, customer, trigger in conn.execute(
                        select(
                            holdouts.c.campaign_id, holdouts.c.customer_id, holdouts.c.trigger_key
                        ).where(
                            holdouts.c.campaign_id.in_(campaign_ids),
                            holdouts.c.customer_id.in_(customer_ids),
                        )
                    )
                }
                new = [
                    values
                    for values in chunk
                    if (values["campaign_id"], values["customer_id"], values["trigger_key"])
                    not in existing
                ]
                if new:
                    conn.execute(insert(holdouts), new)
                    recorded += len(new)
        return recorded

    @staticmethod
    def _intent_values(row: Mapping[str, Any], stamp: datetime) -> dict[str, Any]:
        missing = [
            key
            for key in ("campaign_id", "customer_id", "trigger_key", "channel")
            if _is_missing(row.get(key))
        ]
        if missing:
            raise ValueError(f"an intended contact lacks {', '.join(missing)}: {dict(row)!r}")
        flag = row.get("is_holdout")
        if not _is_missing(flag) and bool(flag):
            raise ValueError(
                "a holdout row is never a contact (record it with record_holdouts): "
                f"{row.get('campaign_id')}/{row.get('customer_id')}/{row.get('trigger_key')}"
            )
        campaign_id = str(row["campaign_id"])
        customer_id = str(row["customer_id"])
        trigger_key = str(row["trigger_key"])
        channel = Channel(str(row["channel"])).value
        contact_id = contact_id_for(campaign_id, customer_id, trigger_key, channel)
        given = row.get("contact_id")
        if not _is_missing(given) and str(given) != contact_id:
            raise ValueError(
                f"contact_id {given} does not match its campaign, customer, trigger and "
                f"channel (expected {contact_id})"
            )
        amount = row.get("amount")
        if _is_missing(amount):
            amount = row.get("offer_value")
        extra = {
            str(key): _jsonable(value) for key, value in row.items() if key not in _OWN_COLUMNS
        }
        return {
            "contact_id": contact_id,
            "campaign_id": campaign_id,
            "customer_id": customer_id,
            "trigger_key": trigger_key,
            "channel": channel,
            "offer_id": _text(row.get("offer_id")),
            "offer_code": _text(row.get("offer_code")),
            "amount": _number(amount),
            "scheduled_send_at": _utc(row.get("scheduled_send_at")),
            "state": State.PENDING.value,
            "attempts": 0,
            "created_at": stamp,
            "updated_at": stamp,
            "state_changed_at": stamp,
            "is_transactional": bool(
                False if _is_missing(row.get("is_transactional")) else row["is_transactional"]
            ),
            "estimated_cost_eur": _number(row.get("estimated_cost_eur")),
            "payload_json": json.dumps(extra, sort_keys=True, default=str) if extra else None,
        }

    def _insert_absent(self, rows: list[dict[str, Any]], stamp: datetime) -> int:
        recorded = 0
        with self.engine.begin() as conn:
            for chunk in _chunks(rows):
                ids = [values["contact_id"] for values in chunk]
                existing: set[str] = set(
                    conn.scalars(
                        select(contacts.c.contact_id).where(contacts.c.contact_id.in_(ids))
                    )
                )
                new = [values for values in chunk if values["contact_id"] not in existing]
                if not new:
                    continue
                conn.execute(insert(contacts), new)
                conn.execute(
                    insert(contact_events),
                    [
                        {
                            "contact_id": values["contact_id"],
                            "from_state": None,
                            "to_state": State.PENDING.value,
                            "at": stamp,
                            "detail": "intent recorded",
                        }
                        for values in new
                    ],
                )
                recorded += len(new)
        return recorded

    # -- claiming ------------------------------------------------------------------------

    def _due_query(
        self,
        channel: Channel,
        limit: int,
        stamp: datetime,
        campaign_id: str | None,
        due_by: datetime | None,
    ) -> Any:
        due = or_(
            and_(
                contacts.c.state == State.PENDING.value,
                or_(
                    contacts.c.scheduled_send_at.is_(None),
                    contacts.c.scheduled_send_at <= _utc(due_by or stamp),
                ),
            ),
            and_(
                contacts.c.state == State.FAILED.value,
                or_(contacts.c.next_attempt_at.is_(None), contacts.c.next_attempt_at <= stamp),
            ),
        )
        query = (
            select(contacts.c.contact_id, contacts.c.state)
            .where(contacts.c.channel == channel.value, due)
            .order_by(contacts.c.scheduled_send_at, contacts.c.contact_id)
            .limit(limit)
        )
        if campaign_id is not None:
            query = query.where(contacts.c.campaign_id == campaign_id)
        return query

    def due(
        self,
        channel: Channel | str,
        limit: int,
        now: datetime | None = None,
        *,
        campaign_id: str | None = None,
        due_by: datetime | None = None,
    ) -> list[Contact]:
        """Up to ``limit`` due rows of ``channel``, read only (nothing is claimed): ``pending``
        whose scheduled_send_at has come by ``due_by`` (default ``now``; a channel that can
        schedule claims ahead) and ``failed`` whose next_attempt_at has come. A dispatcher
        prepares their requests, then takes each request's rows with :meth:`start`."""
        if limit <= 0:
            return []
        query = self._due_query(Channel(channel), limit, _now(now), campaign_id, due_by)
        with self._reading() as conn:
            ids = [str(row[0]) for row in conn.execute(query)]
            found = {contact.contact_id: contact for contact in self._select_contacts(conn, ids)}
        return [found[contact_id] for contact_id in ids if contact_id in found]

    def start(self, contact_ids: Sequence[str], now: datetime | None = None) -> list[Contact]:
        """Move these rows to ``sending`` just before their request goes out (one request's
        rows, one transaction); returns the rows taken, in the given order. A row is taken only
        if it is still due (``pending``, or ``failed`` whose retry time has come): a row another
        dispatcher took, sent or failed meanwhile, or one suppressed since, is left out. Each
        start counts one attempt."""
        stamp = _now(now)
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(contacts.c.contact_id, contacts.c.state, contacts.c.next_attempt_at)
                .where(contacts.c.contact_id.in_(list(contact_ids)))
                .with_for_update(skip_locked=True)  # Postgres; SQLite holds the write lock
            ).all()
            candidates = [
                (str(contact_id), str(state))
                for contact_id, state, next_attempt_at in rows
                if state == State.PENDING.value
                or (
                    state == State.FAILED.value
                    and (next_attempt_at is None or _utc(next_attempt_at) <= stamp)  # type: ignore[operator]
                )
            ]
            taken = self._start(conn, candidates, stamp)
        order = {contact_id: index for index, contact_id in enumerate(contact_ids)}
        return sorted(taken, key=lambda contact: order[contact.contact_id])

    def claim(
        self,
        channel: Channel | str,
        limit: int,
        now: datetime | None = None,
        *,
        campaign_id: str | None = None,
        due_by: datetime | None = None,
    ) -> list[Contact]:
        """Atomically move up to ``limit`` due rows of ``channel`` to ``sending``; return them
        (:meth:`due` and :meth:`start` in one transaction, for a caller that sends every row
        at once). Each claim increments ``attempts``. The update is a compare-and-set on the
        state read (``WHERE contact_id = ? AND state = ?`` with a row-count check), so a row
        another dispatcher took in between is skipped, never taken twice. ``campaign_id``
        narrows the claim to one campaign's contacts; ``due_by`` as for :meth:`due`.
        """
        stamp = _now(now)
        if limit <= 0:
            return []
        query = self._due_query(Channel(channel), limit, stamp, campaign_id, due_by)
        with self.engine.begin() as conn:
            found = conn.execute(query.with_for_update(skip_locked=True)).all()
            candidates = [(str(contact_id), str(state)) for contact_id, state in found]
            return self._start(conn, candidates, stamp)

    def _start(
        self, conn: Connection, candidates: Sequence[tuple[str, str]], stamp: datetime
    ) -> list[Contact]:
        """Compare-and-set each ``(contact_id, state read)`` to ``sending`` (attempts + 1) with
        its event; returns the rows taken, in order."""
        claimed: list[str] = []
        events: list[dict[str, Any]] = []
        for contact_id, state in candidates:
            result = conn.execute(
                update(contacts)
                .where(contacts.c.contact_id == contact_id, contacts.c.state == state)
                .values(
                    state=State.SENDING.value,
                    attempts=contacts.c.attempts + 1,
                    updated_at=stamp,
                    state_changed_at=stamp,
                )
            )
            if result.rowcount != 1:
                continue  # taken by another dispatcher since the read
            claimed.append(contact_id)
            events.append(
                {
                    "contact_id": contact_id,
                    "from_state": state,
                    "to_state": State.SENDING.value,
                    "at": stamp,
                    "detail": "claimed",
                }
            )
        if events:
            conn.execute(insert(contact_events), events)
        found = {contact.contact_id: contact for contact in self._select_contacts(conn, claimed)}
        return [found[contact_id] for contact_id in claimed]

    # -- outcomes ------------------------------------------------------------------------

    def mark_sent(
        self, contact_id: str, provider_message_id: str | None, *, now: datetime | None = None
    ) -> Contact:
        """The provider accepted the contact (``sending`` -> ``sent``)."""
        stamp = _now(now)
        return self._transition(
            contact_id,
            State.SENT,
            {State.SENDING},
            detail=f"provider message {provider_message_id}" if provider_message_id else None,
            values={"provider_message_id": provider_message_id, "sent_at": stamp},
            now=stamp,
        )

    def mark_sent_many(self, sent: Mapping[str, str | None], *, now: datetime | None = None) -> int:
        """Mark a batch accepted by the provider (contact id -> provider message id; a SendGrid
        request with many personalizations shares one X-Message-Id), in one transaction: every
        contact must be in ``sending``, else :class:`IllegalTransition` and nothing changes.
        Returns the number of rows marked. Much faster than one :meth:`mark_sent` per row.
        """
        stamp = _now(now)
        by_message: dict[str | None, list[str]] = {}
        for contact_id, message_id in sent.items():
            by_message.setdefault(message_id, []).append(contact_id)
        with self.engine.begin() as conn:
            for message_id, ids in by_message.items():
                for chunk in _chunks(ids):
                    result = conn.execute(
                        update(contacts)
                        .where(
                            contacts.c.contact_id.in_(chunk),
                            contacts.c.state == State.SENDING.value,
                        )
                        .values(
                            state=State.SENT.value,
                            provider_message_id=message_id,
                            sent_at=stamp,
                            updated_at=stamp,
                            state_changed_at=stamp,
                        )
                    )
                    if result.rowcount != len(chunk):
                        raise IllegalTransition(
                            f"{len(chunk) - result.rowcount} of {len(chunk)} contacts are not "
                            "in sending (unknown ids, or not claimed): nothing marked"
                        )
                    conn.execute(
                        insert(contact_events),
                        [
                            {
                                "contact_id": contact_id,
                                "from_state": State.SENDING.value,
                                "to_state": State.SENT.value,
                                "at": stamp,
                                "detail": f"provider message {message_id}" if message_id else None,
                            }
                            for contact_id in chunk
                        ],
                    )
        return len(sent)

    def mark_failed(
        self,
        contact_id: str,
        error: str,
        retryable: bool,
        *,
        retry_at: datetime | None = None,
        now: datetime | None = None,
        counts_as_attempt: bool = True,
    ) -> Contact:
        """The provider refused the attempt. Retryable (429, 5xx, a refused connection): back
        to ``failed``, claimable again from ``retry_at`` (Retry-After, backoff), until the
        retry horizon has passed since the first refusal of this episode (``retrying_since``;
        or ``max_attempts`` are used, when set): then ``dead_lettered``. Not retryable (a 4xx):
        ``dead_lettered`` with the provider's error text.

        ``counts_as_attempt=False``: the provider asked to wait (a 429) or the request was never
        made: the start's attempt is given back and the horizon does not start, so a rate limit
        delays a contact and never uses up its retries.

        Only for attempts known not to have been accepted: when the outcome is unknown (a
        timeout after the request left), use :meth:`mark_unknown`.
        """
        stamp = _now(now)
        with self.engine.begin() as conn:
            current = self._read(conn, contact_id)
            if retryable and not counts_as_attempt:
                return self._apply(
                    conn,
                    current,
                    State.FAILED,
                    {State.SENDING},
                    detail=f"{error} (not counted as an attempt)",
                    values={
                        "last_error": error,
                        "next_attempt_at": _utc(retry_at),
                        "attempts": max(current.attempts - 1, 0),
                    },
                    now=stamp,
                )
            since = _utc(current.retrying_since) or stamp
            over_horizon = stamp - since >= self.retry_horizon
            over_attempts = self.max_attempts is not None and current.attempts >= self.max_attempts
            if retryable and not (over_horizon or over_attempts):
                return self._apply(
                    conn,
                    current,
                    State.FAILED,
                    {State.SENDING},
                    detail=error,
                    values={
                        "last_error": error,
                        "next_attempt_at": _utc(retry_at),
                        "retrying_since": since,
                    },
                    now=stamp,
                )
            reason = error
            if retryable:
                hours = (stamp - since).total_seconds() / 3600
                reason = f"{error} (gave up after {current.attempts} attempts over {hours:.1f} h)"
            return self._apply(
                conn,
                current,
                State.DEAD_LETTERED,
                {State.SENDING},
                detail=reason,
                values={"last_error": reason},
                now=stamp,
            )

    def next_retry_at(
        self, channel: Channel | str, *, campaign_id: str | None = None
    ) -> datetime | None:
        """The earliest ``next_attempt_at`` of the channel's ``failed`` contacts (None: none
        waits for a retry time)."""
        query = select(func.min(contacts.c.next_attempt_at)).where(
            contacts.c.channel == Channel(channel).value,
            contacts.c.state == State.FAILED.value,
        )
        if campaign_id is not None:
            query = query.where(contacts.c.campaign_id == campaign_id)
        with self._reading() as conn:
            found = _utc(conn.execute(query).scalar())
        return None if found is None else _aware(found)

    def mark_unknown(self, contact_id: str, error: str, *, now: datetime | None = None) -> Contact:
        """The attempt's outcome is unknown (timeout, connection lost after sending): the row
        waits for :meth:`reconcile`; it is never claimed as it is."""
        return self._transition(
            contact_id,
            State.UNKNOWN,
            {State.SENDING},
            detail=error,
            values={"last_error": error},
            now=_now(now),
        )

    def suppress(self, contact_id: str, reason: str, *, now: datetime | None = None) -> Contact:
        """Block a contact before it is sent (an offer mismatch, a new unsubscribe...)."""
        return self._transition(
            contact_id,
            State.SUPPRESSED,
            {State.PENDING, State.FAILED},
            detail=reason,
            values={"last_error": reason},
            now=_now(now),
        )

    def dead_letter(self, contact_id: str, reason: str, *, now: datetime | None = None) -> Contact:
        """Give up on a contact (it will not be sent): one in flight or failed, or a pending one
        whose request cannot be made (no address, no account...)."""
        return self._transition(
            contact_id,
            State.DEAD_LETTERED,
            {State.SENDING, State.FAILED, State.PENDING},
            detail=reason,
            values={"last_error": reason},
            now=_now(now),
        )

    def reconcile(
        self,
        contact_id: str,
        delivered: bool,
        provider_message_id: str | None = None,
        *,
        now: datetime | None = None,
    ) -> Contact:
        """Settle an ``unknown`` contact from the provider's records: accepted (``sent``), or
        never seen by the provider (``pending``: it is sent again, as it never left)."""
        stamp = _now(now)
        if delivered:
            values: dict[str, Any] = {"sent_at": stamp}
            if provider_message_id:
                values["provider_message_id"] = provider_message_id
            return self._transition(
                contact_id,
                State.SENT,
                {State.UNKNOWN},
                detail=f"reconciled: accepted by the provider ({provider_message_id})",
                values=values,
                now=stamp,
            )
        reason = "reconciled: not found at the provider, to be sent again"
        return self._transition(
            contact_id,
            State.PENDING,
            {State.UNKNOWN},
            detail=reason,
            values={"last_error": reason, "next_attempt_at": None},
            now=stamp,
        )

    def dead_letters(
        self,
        *,
        campaign_id: str | None = None,
        channel: Channel | str | None = None,
        reason: str | None = None,
    ) -> list[Contact]:
        """The ``dead_lettered`` rows, filtered by campaign, channel and a text their reason
        (``last_error``) contains (any case)."""
        rows = self.list_contacts(
            state=State.DEAD_LETTERED, channel=channel, campaign_id=campaign_id
        )
        if reason is None:
            return rows
        wanted = reason.casefold()
        return [row for row in rows if wanted in (row.last_error or "").casefold()]

    def requeue(
        self,
        *,
        campaign_id: str | None = None,
        channel: Channel | str | None = None,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> list[str]:
        """Bring dead letters back to ``pending`` (``omni dispatch retry``), filtered as
        :meth:`dead_letters`: their retry time and retry horizon start afresh (``attempts``
        keeps counting every attempt ever made). Returns the contact ids requeued. Safe for
        every channel: an email is dead-lettered only when SendGrid refused it (never when its
        outcome is unknown), and a credit or an offer is idempotent by its key."""
        stamp = _now(now)
        chosen = self.dead_letters(campaign_id=campaign_id, channel=channel, reason=reason)
        requeued: list[str] = []
        with self.engine.begin() as conn:
            for row in chosen:
                current = self._read(conn, row.contact_id)
                if current.state is not State.DEAD_LETTERED:
                    continue
                self._apply(
                    conn,
                    current,
                    State.PENDING,
                    {State.DEAD_LETTERED},
                    detail=f"requeued by an operator (was: {current.last_error})",
                    values={"next_attempt_at": None, "retrying_since": None},
                    now=stamp,
                )
                requeued.append(current.contact_id)
        log.info("Dispatch ledger: %d dead letters requeued", len(requeued))
        return requeued

    def recover_stale(
        self,
        channel: Channel | str,
        older_than: timedelta,
        now: datetime | None = None,
    ) -> dict[str, int]:
        """Settle rows left in ``sending`` for longer than ``older_than`` (a dispatcher that
        crashed mid-call), per :data:`~orchestration.dispatch.states.STALE_SENDING_RECOVERY`:
        email -> ``unknown`` (reconcile, never resend blindly); cashback and in-store ->
        ``pending`` (the retry is idempotent; ``dead_lettered`` once ``max_attempts`` are used,
        when set). Returns the number of rows moved per new state.
        """
        channel = Channel(channel)
        stamp = _now(now)
        cutoff = stamp - older_than
        target = STALE_SENDING_RECOVERY[channel]
        moved: dict[str, int] = {}
        with self.engine.begin() as conn:
            stale: Sequence[str] = conn.scalars(
                select(contacts.c.contact_id)
                .where(
                    contacts.c.channel == channel.value,
                    contacts.c.state == State.SENDING.value,
                    contacts.c.state_changed_at < cutoff,
                )
                .order_by(contacts.c.contact_id)
                .with_for_update(skip_locked=True)
            ).all()
            for contact_id in stale:
                current = self._read(conn, contact_id)
                since = current.state_changed_at.isoformat()
                new_state = target
                detail = f"stale in sending since {since}: recovered as {target.value}"
                if (
                    target is State.PENDING
                    and self.max_attempts is not None
                    and current.attempts >= self.max_attempts
                ):
                    new_state = State.DEAD_LETTERED
                    detail = f"stale in sending since {since}; gave up after {current.attempts}"
                # back in pending it is due at once: its send time had come when it was claimed
                values: dict[str, Any] = {"last_error": detail}
                self._apply(conn, current, new_state, {State.SENDING}, detail, values, stamp)
                moved[new_state.value] = moved.get(new_state.value, 0) + 1
        if moved:
            log.warning("Dispatch ledger: stale %s contacts recovered: %s", channel.value, moved)
        return moved

    # -- reading -------------------------------------------------------------------------

    def get(self, contact_id: str) -> Contact:
        with self._reading() as conn:
            return self._read(conn, contact_id)

    def list_contacts(
        self,
        *,
        state: State | str | None = None,
        channel: Channel | str | None = None,
        campaign_id: str | None = None,
    ) -> list[Contact]:
        """Ledger rows, filtered (ordered by contact id)."""
        query = select(contacts).order_by(contacts.c.contact_id)
        if state is not None:
            query = query.where(contacts.c.state == State(state).value)
        if channel is not None:
            query = query.where(contacts.c.channel == Channel(channel).value)
        if campaign_id is not None:
            query = query.where(contacts.c.campaign_id == campaign_id)
        with self._reading() as conn:
            return [Contact._from_row(row) for row in conn.execute(query).mappings()]

    def events(self, contact_id: str | None = None) -> list[ContactEvent]:
        """The audit log (of one contact, or all), in the order it was written."""
        query = select(contact_events).order_by(contact_events.c.event_id)
        if contact_id is not None:
            query = query.where(contact_events.c.contact_id == contact_id)
        with self._reading() as conn:
            return [
                ContactEvent(
                    event_id=row["event_id"],
                    contact_id=row["contact_id"],
                    from_state=State(row["from_state"]) if row["from_state"] else None,
                    to_state=State(row["to_state"]),
                    at=_aware(row["at"]),
                    detail=row["detail"],
                )
                for row in conn.execute(query).mappings()
            ]

    def counts(
        self, campaign_id: str | None = None, channel: Channel | str | None = None
    ) -> dict[str, int]:
        """Rows per state (every state present, zero included)."""
        query = select(contacts.c.state, func.count()).group_by(contacts.c.state)
        if campaign_id is not None:
            query = query.where(contacts.c.campaign_id == campaign_id)
        if channel is not None:
            query = query.where(contacts.c.channel == Channel(channel).value)
        found = {state.value: 0 for state in State}
        with self._reading() as conn:
            for state, count in conn.execute(query):
                found[str(state)] = int(cast(int, count))
        return found

    def export_contacts(self, campaign_id: str | None = None) -> list[dict[str, Any]]:
        """The ledger in the warehouse contract ``dispatch.contacts`` (``EXPORT_COLUMNS``).

        ``status`` is the state read through
        :data:`~orchestration.dispatch.states.WAREHOUSE_STATUS` (pending, sending, failed and
        unknown -> ``queued``; sent -> ``sent``; dead_lettered -> ``failed``; suppressed ->
        ``cancelled``). ``contacted_at`` (naive UTC) is when the provider accepted the contact,
        else its scheduled send time, else when it was recorded. Provider events (delivered,
        bounced, unsubscribed...) refine ``sent`` later, in the warehouse.
        """
        query = select(contacts).order_by(contacts.c.contact_id)
        if campaign_id is not None:
            query = query.where(contacts.c.campaign_id == campaign_id)
        with self._reading() as conn:
            return [self._export_row(row) for row in conn.execute(query).mappings()]

    def export_warehouse_contacts(self) -> list[dict[str, Any]]:
        """The ledger as the warehouse table ``dispatch.contacts``
        (``WAREHOUSE_CONTACT_COLUMNS``: :meth:`export_contacts` plus the ledger state, offer,
        amount, times, provider message id, attempts and last error; naive UTC timestamps)."""
        exported = []
        with self._reading() as conn:
            for row in conn.execute(select(contacts).order_by(contacts.c.contact_id)).mappings():
                exported.append(
                    {
                        **self._export_row(row),
                        "state": row["state"],
                        "offer_id": row["offer_id"],
                        "offer_code": row["offer_code"],
                        "amount_eur": row["amount"],
                        "scheduled_send_at": row["scheduled_send_at"],
                        "sent_at": row["sent_at"],
                        "provider_message_id": row["provider_message_id"],
                        "attempts": row["attempts"],
                        "last_error": row["last_error"],
                    }
                )
        return exported

    def export_holdouts(self, campaign_id: str | None = None) -> list[dict[str, Any]]:
        """The held-out decisions (``HOLDOUT_COLUMNS``, naive UTC), ordered by their key."""
        query = select(*(holdouts.c[name] for name in HOLDOUT_COLUMNS)).order_by(
            holdouts.c.campaign_id, holdouts.c.customer_id, holdouts.c.trigger_key
        )
        if campaign_id is not None:
            query = query.where(holdouts.c.campaign_id == campaign_id)
        with self._reading() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    @staticmethod
    def _export_row(row: RowMapping) -> dict[str, Any]:
        """One contacts row in the ``EXPORT_COLUMNS`` shape."""
        return {
            "contact_id": row["contact_id"],
            "campaign_id": row["campaign_id"],
            "customer_id": row["customer_id"],
            "trigger_key": row["trigger_key"],
            "channel": row["channel"],
            "status": WAREHOUSE_STATUS[State(row["state"])],
            "contacted_at": row["sent_at"] or row["scheduled_send_at"] or row["created_at"],
            "is_transactional": bool(row["is_transactional"]),
            "estimated_cost_eur": row["estimated_cost_eur"],
        }

    # -- internals -----------------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection for reads (on SQLite a deferred BEGIN: WAL readers never wait)."""
        with self.engine.connect() as conn:
            yield conn.execution_options(**{_READ_ONLY: True})

    @staticmethod
    def _select_contacts(conn: Connection, contact_ids: Sequence[str]) -> list[Contact]:
        found: list[Contact] = []
        for chunk in _chunks(contact_ids):
            query = select(contacts).where(contacts.c.contact_id.in_(chunk))
            found.extend(Contact._from_row(row) for row in conn.execute(query).mappings())
        return found

    @staticmethod
    def _read(conn: Connection, contact_id: str) -> Contact:
        row = (
            conn.execute(select(contacts).where(contacts.c.contact_id == contact_id))
            .mappings()
            .first()
        )
        if row is None:
            raise UnknownContact(contact_id)
        return Contact._from_row(row)

    def _transition(
        self,
        contact_id: str,
        to_state: State,
        allowed_from: set[State],
        detail: str | None,
        values: dict[str, Any],
        now: datetime,
    ) -> Contact:
        with self.engine.begin() as conn:
            current = self._read(conn, contact_id)
            return self._apply(conn, current, to_state, allowed_from, detail, values, now)

    @staticmethod
    def _apply(
        conn: Connection,
        current: Contact,
        to_state: State,
        allowed_from: set[State],
        detail: str | None,
        values: dict[str, Any],
        now: datetime,
    ) -> Contact:
        """Compare-and-set ``current.state -> to_state`` and append its event (same
        transaction). ``allowed_from`` narrows the state machine to what the caller may do
        (only reconciliation leaves ``unknown``)."""
        source = current.state
        if to_state not in TRANSITIONS[source] or source not in allowed_from:
            raise IllegalTransition(
                f"contact {current.contact_id}: illegal transition {source.value} -> "
                f"{to_state.value}"
            )
        result = conn.execute(
            update(contacts)
            .where(contacts.c.contact_id == current.contact_id, contacts.c.state == source.value)
            .values(state=to_state.value, updated_at=now, state_changed_at=now, **values)
        )
        if result.rowcount != 1:
            raise ConcurrentChange(
                f"contact {current.contact_id} left {source.value} during the update"
            )
        conn.execute(
            insert(contact_events).values(
                contact_id=current.contact_id,
                from_state=source.value,
                to_state=to_state.value,
                at=now,
                detail=detail,
            )
        )
        return Ledger._read(conn, current.contact_id)


__all__ = [
    "EXPORT_COLUMNS",
    "HOLDOUT_COLUMNS",
    "WAREHOUSE_CONTACT_COLUMNS",
    "ConcurrentChange",
    "Contact",
    "ContactEvent",
    "Ledger",
    "UnknownContact",
    "contact_events",
    "contact_id_for",
    "contacts",
    "holdouts",
]

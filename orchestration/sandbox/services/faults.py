"""Fault injection: errors, latency, rate limits and malformed records, all deterministic.

Set with ``POST /_sandbox/faults`` (JSON, merged into the current settings), cleared with
``DELETE /_sandbox/faults``. Decisions come from a keyed hash, never from a random generator:
the n-th API request of a service fails or not depending only on ``(seed, n)``, and a record is
malformed depending only on ``(seed, resource, id, updated_at)``, so a retry of the same page
sees the same damaged records (as with real bad data) and test runs are reproducible.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from orchestration.sandbox.services.paging import BadRequest

# The damages malformed records can suffer (docs/sandbox-api.md, "Malformed records").
MISSING_ID = "missing_id"
BAD_TIMESTAMP = "bad_timestamp"
NEGATIVE = "negative"
BAD_LATITUDE = "bad_latitude"
UNKNOWN_ENUM = "unknown_enum"

BAD_TIMESTAMP_VALUE = "31/02/2026 25:00"
UNKNOWN_ENUM_VALUE = "lost_in_space"

Path = tuple[str | int, ...]


def unit_hash(*parts: object) -> float:
    """A uniform number in [0, 1) determined by ``parts`` (stable across processes)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class FaultConfig:
    """The fault settings of one service (all off by default)."""

    error_rate: float = 0.0
    error_status: int = 500
    latency_ms: int = 0
    malformed_rate: float = 0.0
    rate_limit_per_second: float = 0.0  # 0 = unlimited
    seed: int = 0

    def merged(self, update: Mapping[str, Any]) -> FaultConfig:
        """This config with the keys of ``update`` replaced, validated (400 on bad input)."""
        known = {item.name: item.type for item in fields(self)}
        unknown = sorted(set(update) - set(known))
        if unknown:
            raise BadRequest(f"unknown fault settings: {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for name, value in update.items():
            if value is None:
                values[name] = getattr(FaultConfig(), name)
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BadRequest(f"{name} must be a number, got {value!r}")
            values[name] = int(value) if name in {"error_status", "latency_ms", "seed"} else value
        config = replace(self, **values)
        for name in ("error_rate", "malformed_rate"):
            if not 0.0 <= getattr(config, name) <= 1.0:
                raise BadRequest(f"{name} must be between 0 and 1")
        if not 400 <= config.error_status <= 599:
            raise BadRequest("error_status must be an HTTP error status (400-599)")
        if config.latency_ms < 0 or config.rate_limit_per_second < 0:
            raise BadRequest("latency_ms and rate_limit_per_second must not be negative")
        return config

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TokenBucket:
    """A token bucket of ``rate`` tokens per second holding at most one token.

    No bursts: requests closer together than ``1 / rate`` seconds are refused, so even a
    short test run meets the limit, and a client that honours ``Retry-After`` always gets
    through.
    """

    def __init__(self, rate: float, capacity: float = 1.0) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = time.monotonic()

    def take(self) -> float:
        """Take a token; returns 0 when granted, else the seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass(frozen=True)
class Damage:
    """One way a record of a resource can be malformed: ``kind`` applied at ``path``."""

    kind: str
    path: Path
    enum_value: str = UNKNOWN_ENUM_VALUE


class Faults:
    """The live fault state of one service: config, rate-limit bucket, request counter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.config = FaultConfig()
        self._bucket: TokenBucket | None = None
        self._requests = 0

    def update(self, update: Mapping[str, Any]) -> FaultConfig:
        with self._lock:
            self.config = self.config.merged(update)
            rate = self.config.rate_limit_per_second
            self._bucket = TokenBucket(rate) if rate > 0 else None
            self._requests = 0
            return self.config

    def reset(self) -> FaultConfig:
        with self._lock:
            self.config = FaultConfig()
            self._bucket = None
            self._requests = 0
            return self.config

    def retry_after(self) -> int:
        """0 when the request may proceed, else whole seconds to wait (429 Retry-After)."""
        with self._lock:
            if self._bucket is None:
                return 0
            wait = self._bucket.take()
        return 0 if wait == 0 else max(1, math.ceil(wait))

    def injected_error(self) -> int | None:
        """The status to fail this request with, or None; counts the request."""
        with self._lock:
            self._requests += 1
            number, config = self._requests, self.config
        if config.error_rate > 0 and unit_hash(config.seed, "request", number) < config.error_rate:
            return config.error_status
        return None

    def malform(
        self, resource: str, record_id: object, stamp: object, body: str, damages: Sequence[Damage]
    ) -> str | None:
        """The damaged JSON of a record chosen for damage, or None to serve it intact."""
        config = self.config
        if config.malformed_rate <= 0 or not damages:
            return None
        draw = unit_hash(config.seed, resource, record_id, stamp)
        if draw >= config.malformed_rate:
            return None
        document = json.loads(body)
        pick = int(unit_hash(config.seed, "kind", resource, record_id) * len(damages))
        apply_damage(document, damages[pick], damages[0])
        return json.dumps(document, separators=(",", ":"))


def _locate(document: Any, path: Path) -> tuple[Any, str | int] | None:
    """The container holding the last element of ``path`` and that element's key."""
    node = document
    for step in path[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return None
    last = path[-1]
    if isinstance(node, dict) and isinstance(last, str) and last in node:
        return node, last
    if isinstance(node, list) and isinstance(last, int) and -len(node) <= last < len(node):
        return node, last
    return None


def _negative(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return -1
    if isinstance(value, int | float):
        return -abs(value) if value else -1
    if isinstance(value, str):
        stripped = value.lstrip("-")
        return "-" + (stripped if stripped not in {"", "0", "0.00"} else "1")
    return -1


def apply_damage(document: dict[str, Any], damage: Damage, fallback: Damage) -> None:
    """Damage ``document`` in place; when the path is absent use ``fallback`` (missing id)."""
    found = _locate(document, damage.path)
    if found is None:
        if damage is fallback:
            return
        apply_damage(document, fallback, fallback)
        return
    container, key = found
    if damage.kind == MISSING_ID:
        if isinstance(container, dict) and isinstance(key, str):
            container.pop(key)
        return
    value = container[key]
    if damage.kind == BAD_TIMESTAMP:
        container[key] = BAD_TIMESTAMP_VALUE
    elif damage.kind == NEGATIVE:
        container[key] = _negative(value)
    elif damage.kind == BAD_LATITUDE:
        container[key] = 999
    elif damage.kind == UNKNOWN_ENUM:
        container[key] = damage.enum_value
    else:  # pragma: no cover - damages are declared in code
        raise ValueError(f"unknown damage kind {damage.kind}")

"""Opaque keyset cursors and the timestamp formats the sandbox APIs accept.

Every list endpoint pages by keyset on ``(updated_at, id)``: a cursor is the key of the last
row served (plus, for Shopify, the filters of the first request, because Shopify's
``page_info`` replaces them). Keysets keep pages stable when rows are added between requests
and make every page as cheap as the first.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

RecordId = int | str


class BadRequest(ValueError):
    """A request parameter the API rejects with 400 (the message is shown to the client)."""


class FieldError(BadRequest):
    """A 400 about one field of the request (the write APIs name it in their error body)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Key:
    """The position of one row in ``(updated_at, id)`` order; ``updated_at`` is naive UTC."""

    updated_at: datetime
    record_id: RecordId


@dataclass(frozen=True)
class Cursor:
    """What an opaque cursor carries: the last key served and optional saved filters."""

    after: Key
    filters: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> str:
        payload = {
            "t": self.after.updated_at.isoformat(),
            "i": self.after.record_id,
            "f": self.filters,
        }
        raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            padded = token + "=" * (-len(token) % 4)
            payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
            key = Key(datetime.fromisoformat(payload["t"]), payload["i"])
            filters = payload.get("f") or {}
            if not isinstance(key.record_id, int | str) or not isinstance(filters, dict):
                raise ValueError("bad cursor payload")
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as error:
            raise BadRequest(f"Invalid cursor: {token!r}") from error
        return cls(key, filters)


def parse_timestamp(value: str, name: str) -> datetime:
    """Parse an ISO 8601 / RFC 3339 timestamp (``Z``, ``+00:00`` or ``+0000``) to naive UTC."""
    text = value.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit() and ":" not in text[-5:]:
        text = f"{text[:-2]}:{text[-2:]}"  # Graph style +0000
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as error:
        raise BadRequest(f"{name} must be an ISO 8601 timestamp, got {value!r}") from error
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def parse_unix_or_iso(value: str, name: str) -> datetime:
    """Graph's ``since``/``until``: unix seconds, or a timestamp string."""
    text = value.strip()
    if text.lstrip("-").isdigit():
        return datetime.fromtimestamp(int(text), UTC).replace(tzinfo=None)
    return parse_timestamp(text, name)


def parse_limit(value: object, default: int, maximum: int) -> int:
    """A page size: the default when absent, capped at ``maximum``; 400 when not a number."""
    if value is None or value == "":
        return default
    try:
        limit = int(str(value))
    except ValueError as error:
        raise BadRequest(f"limit must be an integer, got {value!r}") from error
    if limit < 1:
        raise BadRequest(f"limit must be positive, got {limit}")
    return min(limit, maximum)

"""The sources we ingest and the raw dataset each one loads (cheap to import)."""

from __future__ import annotations

SOURCES: dict[str, str] = {
    "shop": "raw_shop",
    "pos": "raw_pos",
    "social": "raw_social",
}

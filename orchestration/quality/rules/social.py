"""Rules for ``raw_social`` (a Graph-API-style social network).

Graph timestamps carry a ``+0000`` offset, which ISO 8601 allows. ``kind`` is checked when
the connector adds it (the edges already split comments, mentions and messages).
"""

from __future__ import annotations

from orchestration.quality.rules import SourceRules, TableRules, enum

SENTIMENTS = enum("positive", "neutral", "negative")
KINDS = enum("comment", "mention", "message")


def _activity(table: str) -> TableRules:
    return TableRules(
        table=table,
        key=("id",),
        required=("id", "updated_time"),
        not_null=("updated_time",),
        timestamps=("created_time", "updated_time"),
        ranges={"sentiment_score": (-1.0, 1.0)},
        enums={"sentiment": SENTIMENTS, "kind": KINDS},
    )


RULES = SourceRules(
    source="social",
    required_tables=("comments",),
    tables=(
        _activity("comments"),
        _activity("mentions"),
        _activity("messages"),
        TableRules(
            table="contacts",
            key=("id",),
            required=("id", "updated_time"),
            not_null=("updated_time",),
            timestamps=("updated_time",),
        ),
    ),
)

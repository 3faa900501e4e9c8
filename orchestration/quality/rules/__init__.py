"""Quality rules for the raw tables, written as data.

One module per source (``shop``, ``pos``, ``social``) lists a :class:`TableRules` per raw
table; :mod:`orchestration.quality.suites` turns them into Great Expectations suites. A rule
names the column as dlt loads it (nested objects flattened with ``__``). Columns that a
table does not have (dlt creates a column only once a non-null value arrived) are skipped,
except ``required`` ones, whose absence fails the table.

Row-level rules (the name is what ``quarantine.raw_rows.rule`` says):

- ``missing_key``: a key column is null.
- ``duplicate_key``: the key repeats inside one load (ids repeat across loads by design:
  the raw tables are append-only, one row per version the API returned).
- ``missing_value``: a ``not_null`` column is null.
- ``invalid_timestamp``: not an ISO 8601 timestamp with an offset.
- ``invalid_number``: a numeric column holds text that is not a number.
- ``out_of_range``: a number outside its ``[low, high]`` (negative money or quantities).
- ``invalid_coordinate``: latitude outside -90..90 or longitude outside -180..180.
- ``unknown_enum``: a value outside the known set.
- ``parent_quarantined``: a child-table row (``orders__line_items``...) whose parent row is
  quarantined; staging would otherwise keep orphans of an excluded order.

Table-level rules (they fail the gate whatever the share of bad rows):

- ``table_missing`` / ``empty_first_load``: a table in ``required_tables`` is absent or has
  no rows in the first load of its source.
- ``missing_column``: a ``required`` column does not exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Sane maxima: far above anything a retail business sells, low enough to catch garbage.
MAX_MONEY = 1_000_000.0  # euros, one order or checkout
MAX_UNIT_PRICE = 100_000.0  # euros, one item
MAX_QUANTITY = 10_000.0  # units in one line
MAX_CENTS = 100_000_000.0  # Square money amounts are integer cents
MAX_STOCK = 1_000_000.0  # units of one product in one store


@dataclass(frozen=True)
class TableRules:
    """The rules of one raw table (``table`` is the dlt table name, e.g. ``orders__line_items``)."""

    table: str
    key: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    not_null: tuple[str, ...] = ()
    timestamps: tuple[str, ...] = ()
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    latitudes: tuple[str, ...] = ()
    longitudes: tuple[str, ...] = ()
    enums: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @property
    def is_child(self) -> bool:
        """Child tables hold a list of their parent (``<parent>__<list>``)."""
        return "__" in self.table

    def columns(self) -> set[str]:
        """Every column a rule of this table reads."""
        return {
            *self.key,
            *self.required,
            *self.not_null,
            *self.timestamps,
            *self.ranges,
            *self.latitudes,
            *self.longitudes,
            *self.enums,
        }


@dataclass(frozen=True)
class SourceRules:
    """The rules of one source: its raw schema, its tables, which tables must exist."""

    source: str
    tables: tuple[TableRules, ...]
    required_tables: tuple[str, ...]

    @property
    def schema(self) -> str:
        return f"raw_{self.source}"

    def table(self, name: str) -> TableRules:
        """The rules of ``name``; a table nobody wrote rules for gets none (checked as loaded)."""
        for rules in self.tables:
            if rules.table == name:
                return rules
        return TableRules(table=name)


def enum(*values: str) -> frozenset[str]:
    return frozenset(values)


def money(*columns: str, high: float = MAX_MONEY) -> dict[str, tuple[float, float]]:
    """Non-negative amounts up to ``high``."""
    return {column: (0.0, high) for column in columns}


def source_rules(source: str) -> SourceRules:
    """The rules of ``source`` (``shop``, ``pos`` or ``social``)."""
    from orchestration.quality.rules import pos, shop, social

    modules = {"shop": shop, "pos": pos, "social": social}
    if source not in modules:
        raise ValueError(f"unknown source {source!r}; known: {', '.join(modules)}")
    return modules[source].RULES

"""Raw columns declared up front, so the raw tables look the same whatever a run fetched.

dlt infers a column's type from the first values it sees and does not create a column
whose values are all null. Two cases would make the raw tables depend on luck:

- nullable fields (a phone, ``completed_at``, a comment's ``post_id``) would be missing
  from the table until the first non-null value arrives, and dbt/GX read them by name;
- float fields could start as ``bigint`` when the first value is round, pushing later
  values into a ``__v_double`` variant column.

Both are declared here with their type. Timestamps and money strings need nothing: dlt's
timestamp detection is off (``pipeline.py``), so they stay ``text`` as sent.
Keys are raw table names; a child table (``orders__fulfillments``) is declared through
dlt's ``nested_hints`` of its parent resource.
"""

from __future__ import annotations

from dlt.common.schema.typing import TColumnSchema, TDataType
from dlt.common.typing import TTableNames
from dlt.extract.hints import TResourceNestedHints
from dlt.sources.rest_api.typing import EndpointResourceBase

TEXT: TDataType = "text"
BIGINT: TDataType = "bigint"
DOUBLE: TDataType = "double"

Declared = dict[str, dict[str, TDataType]]

_ACTIVITY: dict[str, TDataType] = {"post_id": TEXT, "sentiment_score": DOUBLE}

DECLARED: dict[str, Declared] = {
    "shop": {
        "customers": {
            "phone": TEXT,
            "default_address__latitude": DOUBLE,
            "default_address__longitude": DOUBLE,
            "email_marketing_consent__consent_updated_at": TEXT,
        },
        "orders": {"email": TEXT, "checkout_id": BIGINT, "fulfillment_status": TEXT},
        "orders__fulfillments": {"delivered_at": TEXT, "location_id": BIGINT},
        "checkouts": {"email": TEXT, "customer__id": BIGINT, "completed_at": TEXT},
    },
    "pos": {
        "locations": {
            "coordinates__latitude": DOUBLE,
            "coordinates__longitude": DOUBLE,
            "address__address_line_1": TEXT,
        },
        "orders": {"customer_id": TEXT, "closed_at": TEXT},
        "customers": {"email_address": TEXT, "phone_number": TEXT},
    },
    "social": {
        "comments": _ACTIVITY,
        "mentions": _ACTIVITY,
        "messages": _ACTIVITY,
        "contacts": {"email": TEXT, "phone": TEXT},
    },
}


def table_columns(source: str, table: str) -> dict[str, TColumnSchema]:
    """The declared columns of one raw table (empty when nothing is declared)."""
    declared = DECLARED[source].get(table, {})
    return {
        name: {"name": name, "data_type": kind, "nullable": True} for name, kind in declared.items()
    }


def hints(source: str, resource: str) -> EndpointResourceBase:
    """``columns`` and ``nested_hints`` for ``dlt.resource`` / a rest_api resource config."""
    result: EndpointResourceBase = {}
    if resource in DECLARED[source]:
        result["columns"] = table_columns(source, resource)
    prefix = f"{resource}__"
    nested: dict[TTableNames, TResourceNestedHints] = {
        table.removeprefix(prefix): {"columns": table_columns(source, table)}
        for table in DECLARED[source]
        if table.startswith(prefix)
    }
    if nested:
        result["nested_hints"] = nested
    return result

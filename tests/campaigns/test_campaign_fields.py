"""Template typos are caught when a campaign file is validated (issue 15, item 5).

The render context is declared (``templating.COMMON_FIELDS``, ``TRIGGER_FIELDS``); a field a
template reads from a declared record must exist: ``{{ customer.frist_name }}`` is "unknown
field 'frist_name' of customer (did you mean 'first_name'?)" with the file and line. The
declaration is checked against what really fills the context: the trigger models' SQL, the
preview's customer and store queries, and the example data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from orchestration import settings
from orchestration.campaigns import example_context, load_all, load_campaign
from orchestration.campaigns.config import TRIGGER_TYPES
from orchestration.campaigns.preview import contact_context
from orchestration.campaigns.templating import COMMON_FIELDS, TRIGGER_FIELDS, context_fields

SHIPPED = settings.REPO_ROOT / "campaigns"
TRIGGERS_SQL = settings.REPO_ROOT / "dbt_project" / "models" / "triggers"
SUBJECT = (
    'subject: "{{ customer.first_name }}, lo que dejaste en tu cesta te espera en {{ store.name }}"'
)
LineOf = Callable[[Path, str], int]


def test_a_misspelt_field_names_the_record_the_file_the_line_and_the_fix(
    variant: Callable[..., Path], line_of: LineOf
) -> None:
    path = variant("typo", (SUBJECT, SUBJECT.replace("customer.first_name", "customer.frist_name")))
    campaigns, errors = load_all(path.parent)
    assert campaigns == []
    (error,) = errors
    assert (error.file, error.field) == (path, "channels.email.subject")
    assert error.line == line_of(path, "customer.frist_name")
    assert error.message == "unknown field 'frist_name' of customer (did you mean 'first_name'?)"
    assert error.allowed == ("fields of customer: customer_id, first_name, last_name, email, city")


def test_a_loop_variable_is_checked_against_the_list_items(
    campaign_dir: Path, variant: Callable[..., Path]
) -> None:
    (campaign_dir / "templates" / "typo.txt").write_text(
        "Hola {{ customer.first_name }}: {{ offer.label }}\n"
        "{% for item in cart_items | sort(attribute='unit_price') %}\n"
        "- {{ item.titel }} ({{ item.unit_price | eur }})\n"
        "{% endfor %}\n"
        "{{ (cart_items | first).sku }} {{ cart.totl }}\n",
        encoding="utf-8",
    )
    path = variant(
        "typo_file",
        ("    text_template: abandoned_cart_nearby_store.txt", "    text_template: typo.txt"),
    )
    errors = load_all(path.parent)[1]
    assert [error.message for error in errors] == [
        "templates/typo.txt line 3: unknown field 'titel' of an item of cart_items "
        "(did you mean 'title'?)",
        "templates/typo.txt line 5: unknown field 'totl' of cart (did you mean 'total'?)",
    ]
    assert {error.field for error in errors} == {"channels.email.text_template"}


@pytest.mark.parametrize(
    "template",
    [
        "{% if store.city is defined %}{{ store.city }}{% endif %}",
        "{% for item in cart_items %}{{ loop.index }}. {{ item.title }}{% endfor %}",
        "{% set customer = {'nick': 'x'} %}{{ customer.nick }}",
        "{% macro card(customer) %}{{ customer.total }}{% endmacro %}{{ card(cart) }}",
        "{% for cart in [1, 2] %}{{ cart.real }}{% endfor %}{{ cart.total }}",
        "{{ offer.valid_until.year }} {{ (cart_items | first).title }}",
    ],
)
def test_what_the_check_must_not_flag(variant: Callable[..., Path], template: str) -> None:
    note = "    staff_note: >\n      Tiene en esta tienda"
    path = variant("fine", (note, f"{note}\n      {template}"))
    campaigns, errors = load_all(path.parent)
    assert errors == [] and [campaign.id for campaign in campaigns] == ["fine"]


def _flat(shape: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(shape, dict):
        for name, inner in shape.items():
            names |= {name} | _flat(inner)
    elif isinstance(shape, list) and shape:
        names |= _flat(shape[0])
    return names


@pytest.mark.parametrize("trigger_type", TRIGGER_TYPES)
def test_declared_trigger_fields_are_what_the_trigger_model_puts_in_the_payload(
    trigger_type: str,
) -> None:
    """Every ``['key', expression]`` of the model's JSON objects is declared, and nothing
    else: a field the model stops providing fails here, not at dispatch."""
    sql = (TRIGGERS_SQL / f"trigger_{trigger_type}.sql").read_text(encoding="utf-8")
    keys = set(re.findall(r"\[\s*'(\w+)'\s*,", sql))
    assert keys == _flat(TRIGGER_FIELDS[trigger_type])


def _same_shape(value: Any, shape: Any) -> bool:
    if isinstance(shape, dict):
        return (
            isinstance(value, dict)
            and set(value) == set(shape)
            and all(_same_shape(value[key], shape[key]) for key in shape)
        )
    if isinstance(shape, list):
        return isinstance(value, list) and all(_same_shape(item, shape[0]) for item in value)
    return not isinstance(value, dict | list)


@pytest.mark.parametrize("trigger_type", TRIGGER_TYPES)
def test_example_data_has_exactly_the_declared_fields(trigger_type: str) -> None:
    customer, extra = example_context(trigger_type)
    declared = context_fields(trigger_type)
    context = {**extra, "customer": customer}
    assert set(context) == set(declared) - {"offer", "campaign", "preheader"}
    for name, value in context.items():
        assert _same_shape(value, declared[name]), name


def test_declared_customer_and_store_fields_are_what_the_preview_and_dispatch_read(
    tmp_path: Path,
) -> None:
    con = duckdb.connect(str(tmp_path / "tiny.duckdb"))
    con.execute("create schema marts")
    con.execute(
        "create table marts.dim_customers as select 'C1' as customer_id, 'Ana' as first_name, "
        "'Gil' as last_name, 'ana@example.com' as email, 'Madrid' as city, "
        "'S1' as nearest_store_id, 1.5 as nearest_store_distance_km"
    )
    con.execute(
        "create table marts.dim_stores as select 'S1' as store_id, 'Omni Sol' as store_name, "
        "'Madrid' as city, '28013' as postal_code, '10:00' as opens_local, "
        "'21:00' as closes_local"
    )
    campaign = load_campaign(SHIPPED / "win_back_recovery.yml")
    customer, extra = contact_context(con, campaign, "C1", {"payload_json": "{}"})
    con.close()
    assert set(customer) == set(COMMON_FIELDS["customer"] or {})
    assert set(extra["store"]) == set(COMMON_FIELDS["store"] or {})

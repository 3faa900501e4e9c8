"""Sandboxed, autoescaped, strict templates; one offer, the same on every channel."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from orchestration.campaigns import (
    Campaign,
    example_context,
    load_all,
    load_campaign,
    render_contact,
)
from orchestration.campaigns.templating import (
    RenderError,
    format_eur,
    format_number,
    format_percent,
)
from orchestration.settings import REPO_ROOT

SHIPPED = REPO_ROOT / "campaigns"
TODAY = date(2026, 11, 22)
SHIPPED_CAMPAIGNS, _ = load_all(SHIPPED)


def _bypassing_validation(note: str) -> Campaign:
    """The headline campaign with a staff note set after validation (as if a check were
    missed), to prove the sandbox holds at render time on its own."""
    campaign = load_campaign(SHIPPED / "abandoned_cart_nearby_store.yml")
    assert campaign.channels.in_store is not None
    in_store = campaign.channels.in_store.model_copy(update={"staff_note": note})
    channels = campaign.channels.model_copy(update={"in_store": in_store})
    return campaign.model_copy(update={"channels": channels})


@pytest.mark.parametrize(
    "attack",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ customer.__class__.__init__.__globals__ }}",
        "{{ offer.label.__class__.__base__.__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ customer._data }}",
        "{{ cart_items.append(1) }}",
        "{{ campaign.__class__.__mro__ }}",
        "{{ offer.valid_until.__class__ }}",
    ],
)
def test_templates_cannot_reach_python_internals(attack: str) -> None:
    campaign = _bypassing_validation(attack)
    customer, extra = example_context(campaign.trigger.type)
    with pytest.raises(RenderError) as caught:
        render_contact(campaign, customer, extra, today=TODAY)
    assert isinstance(caught.value.__cause__, SecurityError)


@pytest.mark.parametrize(
    "attack", ["{{ ''.__class__.__mro__ }}", "{{ customer['__class__'] }}", "{{ offer._data }}"]
)
def test_validation_already_refuses_private_attributes(
    variant: Callable[..., Path], line_of: Callable[[Path, str], int], attack: str
) -> None:
    path = variant(
        "private_attribute",
        (
            "    staff_note: >\n      Tiene en esta tienda",
            f"    staff_note: >\n      {attack}\n      Tiene en esta tienda",
        ),
    )
    campaigns, errors = load_all(path.parent)
    assert campaigns == []
    (error,) = errors
    assert error.field == "channels.in_store.staff_note"
    assert "templates cannot reach Python internals" in error.message
    assert error.line == line_of(path, attack)


def test_customer_html_is_escaped_in_html_and_plain_in_text() -> None:
    campaign = load_campaign(SHIPPED / "abandoned_cart_nearby_store.yml")
    customer, extra = example_context(campaign.trigger.type)
    name = '<script>alert("x")</script>'
    extra["store"] = {**extra["store"], "name": "<b>Tienda</b> & Co"}
    contact = render_contact(campaign, {**customer, "first_name": name}, extra, today=TODAY)
    assert contact.html is not None and contact.text is not None
    assert "<script>" not in contact.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in contact.html
    assert "&lt;b&gt;Tienda&lt;/b&gt; &amp; Co" in contact.html
    assert name in contact.text
    assert contact.subject is not None and name in contact.subject  # a subject is plain text
    assert contact.staff_card is not None and name in contact.staff_card
    assert "<b>Tienda</b> & Co" in (contact.cashback_line or "")


def test_subject_stays_on_one_line() -> None:
    campaign = load_campaign(SHIPPED / "abandoned_cart_nearby_store.yml")
    customer, extra = example_context(campaign.trigger.type)
    customer["first_name"] = "Ana\r\nBcc: everyone@example.com"
    contact = render_contact(campaign, customer, extra, today=TODAY)
    assert contact.subject is not None
    assert "\n" not in contact.subject and "\r" not in contact.subject


def test_misspelt_attribute_is_an_error_not_an_empty_string() -> None:
    """Validation refuses it first (tests/campaigns/test_campaign_fields.py); a template that
    skipped validation still fails at render time, with the campaign, file, line and field."""
    campaign = _bypassing_validation("{{ customer.frist_name }}")
    customer, extra = example_context(campaign.trigger.type)
    with pytest.raises(RenderError) as caught:
        render_contact(campaign, customer, extra, today=TODAY)
    error = caught.value
    assert isinstance(error.__cause__, UndefinedError)
    assert error.reason == "unknown field 'frist_name' of customer (did you mean 'first_name'?)"
    assert error.field == ("channels", "in_store", "staff_note")
    assert error.file == SHIPPED / "abandoned_cart_nearby_store.yml"
    assert str(error).startswith("campaign abandoned_cart_nearby_store: ")


def test_missing_trigger_data_is_an_error() -> None:
    campaign = load_campaign(SHIPPED / "abandoned_cart_nearby_store.yml")
    customer, extra = example_context(campaign.trigger.type)
    del extra["cart_items"]
    with pytest.raises(RenderError, match="cart_items") as caught:
        render_contact(campaign, customer, extra, today=TODAY)
    assert isinstance(caught.value.__cause__, UndefinedError)
    # the loop over cart_items is in the HTML template file, on its line
    assert caught.value.template_file == "abandoned_cart_nearby_store.html"
    assert caught.value.line == _line_of(
        SHIPPED / "templates" / "abandoned_cart_nearby_store.html", "{% for item in cart_items %}"
    )


def _line_of(path: Path, text: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, start=1) if text in line)


def test_extra_cannot_replace_the_offer() -> None:
    campaign = load_campaign(SHIPPED / "abandoned_cart_nearby_store.yml")
    customer, extra = example_context(campaign.trigger.type)
    with pytest.raises(ValueError, match="offer"):
        render_contact(campaign, customer, {**extra, "offer": {"label": "100 %"}}, today=TODAY)


def test_dict_keys_win_over_dict_methods() -> None:
    # cart has no declared field 'items' (validation would refuse it): a row that has one
    campaign = _bypassing_validation("{{ cart.items | length }} artículos")
    customer, extra = example_context(campaign.trigger.type)
    extra["cart"] = {**extra["cart"], "items": ["a", "b", "c"]}
    contact = render_contact(campaign, customer, extra, today=TODAY)
    assert contact.staff_card is not None and "3 artículos" in contact.staff_card


@pytest.mark.parametrize("campaign", SHIPPED_CAMPAIGNS, ids=lambda campaign: campaign.id)
def test_the_same_offer_on_every_channel(campaign: Campaign) -> None:
    customer, extra = example_context(campaign.trigger.type)
    contact = render_contact(campaign, customer, extra, today=TODAY)
    offer = campaign.offer
    code = getattr(offer, "code", None)
    channels = {
        "html": contact.html,
        "text": contact.text,
        "cashback_line": contact.cashback_line,
        "staff_card": contact.staff_card,
    }
    rendered = {name: body for name, body in channels.items() if body is not None}
    assert set(rendered) >= {"html", "text"} or "cashback_line" in rendered
    expiry = contact.valid_until.strftime("%d/%m/%Y")
    assert contact.valid_until == TODAY + timedelta(days=offer.validity_days)
    for name, body in rendered.items():
        assert contact.offer_label in body, name
        assert expiry in body, name
        if code and name != "cashback_line":
            assert code in body, name
        if name != "cashback_line":
            assert offer.id in body, name
    assert contact.offer_id == offer.id and contact.offer_code == code
    if campaign.channels.email is not None:
        assert contact.subject and "{{" not in contact.subject


def test_disabled_channels_render_nothing(variant: Callable[..., Path]) -> None:
    path = variant(
        "email_off",
        ("  email:\n    sender", "  email:\n    enabled: false\n    sender"),
    )
    campaign = load_campaign(path)
    assert campaign.enabled_channels == ["loyalty_cashback", "in_store"]
    customer, extra = example_context(campaign.trigger.type)
    contact = render_contact(campaign, customer, extra, today=TODAY)
    assert (contact.subject, contact.html, contact.text) == (None, None, None)
    assert contact.cashback_line and contact.staff_card


def test_preview_files(tmp_path: Path) -> None:
    campaign = load_campaign(SHIPPED / "abandoned_cart_nearby_store.yml")
    customer, extra = example_context(campaign.trigger.type)
    written = render_contact(campaign, customer, extra, today=TODAY).write_files(tmp_path)
    assert sorted(path.name for path in written) == [
        "cashback_line.txt",
        "email.html",
        "email.txt",
        "staff_card.txt",
    ]
    assert (tmp_path / "email.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_spanish_formats() -> None:
    assert format_eur(1234.5) == "1.234,50 €"
    assert format_eur(4.95) == "4,95 €"
    assert format_percent(10.0) == "10 %"
    assert format_percent(12.5) == "12,5 %"
    assert format_number(2.35, 1) in {"2,4", "2,3"}  # binary floats round either way
    assert format_number(15000) == "15.000"

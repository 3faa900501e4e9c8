"""The template variables built from a trigger row (what preview shows and dispatch sends)."""

from __future__ import annotations

from pathlib import Path

from orchestration.campaigns import load_campaign, render_contact
from orchestration.campaigns.preview import trigger_extra
from orchestration.campaigns.templating import TRIGGER_NAMES

PAYLOAD = {
    "order": {"order_id": "web:1", "order_number": "1", "total": 30.0},
    "order_items": [{"product_id": 1, "title": "Falda", "quantity": 1, "unit_price": 30.0}],
    "survey_url": "https://encuestas.omni.example/s/abc",
    "matching_products": [{"product_id": 2, "title": "Chal <b>rojo</b>", "price": 15.0}],
    "newsletter_url": "https://tienda.omni.example/newsletter",
}


def test_every_trigger_variable_is_present_and_switches_apply(shipped_copy: Path) -> None:
    campaign = load_campaign(shipped_copy / "post_purchase_follow_up.yml")
    extra = trigger_extra(campaign, PAYLOAD, None)
    assert set(extra) == set(TRIGGER_NAMES["post_purchase_follow_up"]) | {"store"}
    assert extra["survey_url"] == PAYLOAD["survey_url"]
    quiet = campaign.model_copy(
        update={
            "trigger": campaign.trigger.model_copy(
                update={"include_survey": False, "include_matching_products": False}
            )
        }
    )
    extra = trigger_extra(quiet, {"order": PAYLOAD["order"]}, None)
    assert extra["survey_url"] == "" and extra["matching_products"] == []
    assert extra["order_items"] == [] and extra["newsletter_url"] == ""


def test_a_trigger_row_renders_with_product_names_escaped(shipped_copy: Path) -> None:
    campaign = load_campaign(shipped_copy / "post_purchase_follow_up.yml")
    customer = {"customer_id": "c1", "first_name": "Ana", "last_name": "", "email": "a@b.es"}
    contact = render_contact(
        campaign, customer, trigger_extra(campaign, PAYLOAD, None), templates_dir=None
    )
    assert contact.html is not None and contact.text is not None
    assert "Chal &lt;b&gt;rojo&lt;/b&gt;" in contact.html
    assert PAYLOAD["survey_url"] in contact.text

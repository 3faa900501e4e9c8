"""Campaign files: the shipped ones validate; each kind of mistake names file, field, line and
what is allowed; one broken file never stops the others."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from orchestration.campaigns import (
    TRIGGER_TYPES,
    Campaign,
    CampaignError,
    CampaignLoadError,
    format_report,
    load_all,
    load_campaign,
)
from orchestration.campaigns.vocabulary import LIFECYCLE_STAGES
from orchestration.settings import REPO_ROOT

SHIPPED = REPO_ROOT / "campaigns"

LineOf = Callable[[Path, str], int]


def test_shipped_campaigns_validate_one_per_trigger() -> None:
    campaigns, errors = load_all(SHIPPED)
    assert errors == []
    assert len(campaigns) == 5
    assert sorted(campaign.trigger.type for campaign in campaigns) == sorted(TRIGGER_TYPES)
    for campaign in campaigns:
        assert campaign.source_path is not None
        assert campaign.id == campaign.source_path.stem
        assert campaign.enabled_channels, campaign.id


def test_shipped_files_point_editors_at_the_schema() -> None:
    for path in sorted(SHIPPED.glob("*.yml")):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=./schema.json", path.name


def test_headline_campaign_is_store_only_cashback_on_every_channel() -> None:
    campaign = load_campaign(SHIPPED / "abandoned_cart_nearby_store.yml")
    assert campaign.trigger.type == "abandoned_cart_nearby_stock"
    assert campaign.offer.kind.startswith("cashback")
    assert campaign.offer.valid_in == "store_only"
    assert campaign.enabled_channels == ["email", "loyalty_cashback", "in_store"]


# (new id, replacements, source file, expected field, marker on the expected line,
#  text in the message, text in "allowed")
CASES = [
    pytest.param(
        "unknown_field",
        [("  radius_km: 10", "  radius: 10")],
        "abandoned_cart_nearby_store",
        "trigger.radius",
        "radius: 10",
        "unknown field 'radius' (did you mean 'radius_km'?)",
        "radius_km",
        id="unknown-field",
    ),
    pytest.param(
        "unknown_top_field",
        [("priority: 80", "priority: 80\ncolour: red")],
        "abandoned_cart_nearby_store",
        "colour",
        "colour: red",
        "unknown field 'colour'",
        "holdout_percent",
        id="unknown-top-level-field",
    ),
    pytest.param(
        "wrong_enum",
        [("status: active", "status: live")],
        "abandoned_cart_nearby_store",
        "status",
        "status: live",
        "'live' is not one of the allowed values",
        "'draft', 'active' or 'paused'",
        id="wrong-enum",
    ),
    pytest.param(
        "bad_dates",
        [("end_date: 2027-06-30", "end_date: 2026-10-01")],
        "abandoned_cart_nearby_store",
        "end_date",
        "end_date: 2026-10-01",
        "must be after start_date 2026-11-01",
        "a date after 2026-11-01",
        id="end-before-start",
    ),
    pytest.param(
        "same_dates",
        [("end_date: 2027-06-30", "end_date: 2026-11-01")],
        "abandoned_cart_nearby_store",
        "end_date",
        "end_date: 2026-11-01",
        "must be after start_date",
        "a date after 2026-11-01",
        id="end-equals-start",
    ),
    pytest.param(
        "budget_huge",
        [("  budget_cap_eur: 3000", "  budget_cap_eur: 1.0e+300")],
        "abandoned_cart_nearby_store",
        "offer.budget_cap_eur",
        "budget_cap_eur: 1.0e+300",
        "less than or equal to 1000000",
        "<= 1000000",
        id="budget-above-the-maximum",
    ),
    pytest.param(
        "reward_huge",
        [("  max_reward_eur: 15", "  max_reward_eur: 15000")],
        "abandoned_cart_nearby_store",
        "offer.max_reward_eur",
        "max_reward_eur: 15000",
        "less than or equal to 1000",
        "<= 1000",
        id="reward-above-the-maximum",
    ),
    pytest.param(
        "percent_high",
        [("  value: 10\n", "  value: 150\n")],
        "abandoned_cart_nearby_store",
        "offer.value",
        "value: 150",
        "150",
        "<= 100",
        id="percent-above-100",
    ),
    pytest.param(
        "percent_zero",
        [("  value: 10\n", "  value: 0\n")],
        "abandoned_cart_nearby_store",
        "offer.value",
        "value: 0",
        "greater than 0",
        "> 0",
        id="percent-zero",
    ),
    pytest.param(
        "amount_cents",
        [("  value: 15\n", "  value: 15.555\n")],
        "loyalty_cashback_300",
        "offer.value",
        "value: 15.555",
        "15.555 has more than two decimals",
        "at most two decimals",
        id="amount-below-cents",
    ),
    pytest.param(
        "missing_owner",
        [("owner: marta.garcia@omni.example\n", "")],
        "abandoned_cart_nearby_store",
        "owner",
        "id: missing_owner",
        "required field is missing",
        "email address",
        id="missing-required-field",
    ),
    pytest.param(
        "missing_nested",
        [("  max_cart_age_days: 7\n", "")],
        "abandoned_cart_nearby_store",
        "trigger.max_cart_age_days",
        "trigger:",
        "required field is missing",
        "a whole number, >= 1 and <= 30",
        id="missing-trigger-parameter",
    ),
    pytest.param(
        "bad_owner",
        [("owner: marta.garcia@omni.example", "owner: marta")],
        "abandoned_cart_nearby_store",
        "owner",
        "owner: marta",
        "'marta' does not have the expected format",
        "an email address",
        id="owner-not-an-email",
    ),
    pytest.param(
        "unknown_trigger",
        [("type: abandoned_cart_nearby_stock", "type: abandoned_cart")],
        "abandoned_cart_nearby_store",
        "trigger",
        "trigger:",
        "unknown type 'abandoned_cart'",
        "'win_back'",
        id="unknown-trigger-type",
    ),
    pytest.param(
        "no_trigger_type",
        [("  type: abandoned_cart_nearby_stock\n", "")],
        "abandoned_cart_nearby_store",
        "trigger",
        "trigger:",
        "'type' is missing",
        "type: abandoned_cart_nearby_stock | post_purchase_follow_up",
        id="trigger-without-type",
    ),
    pytest.param(
        "milestone_both",
        [("  spend_threshold: 300\n", "  spend_threshold: 300\n  order_count_threshold: 5\n")],
        "loyalty_cashback_300",
        "trigger",
        "trigger:",
        "exactly one of spend_threshold or order_count_threshold",
        "spend_threshold",
        id="milestone-with-two-thresholds",
    ),
    pytest.param(
        "unknown_offer_kind",
        [("kind: cashback_percent", "kind: cashback")],
        "abandoned_cart_nearby_store",
        "offer",
        "offer:",
        "unknown kind 'cashback'",
        "'cashback_amount'",
        id="unknown-offer-kind",
    ),
    pytest.param(
        "code_missing",
        [("  code: GRACIAS10\n", "")],
        "post_purchase_follow_up",
        "offer.code",
        "offer:",
        "required field is missing",
        "capital letters",
        id="discount-code-without-code",
    ),
    pytest.param(
        "code_format",
        [("code: GRACIAS10", "code: gracias 10")],
        "post_purchase_follow_up",
        "offer.code",
        "code: gracias 10",
        "does not have the expected format",
        "capital letters",
        id="discount-code-bad-format",
    ),
    pytest.param(
        "code_on_cashback",
        [("  value: 10\n", "  value: 10\n  code: HOLA10\n")],
        "abandoned_cart_nearby_store",
        "offer.code",
        "code: HOLA10",
        "unknown field 'code'",
        "max_reward_eur",
        id="code-on-a-cashback-offer",
    ),
    pytest.param(
        "shipping_in_store",
        [("valid_in: everywhere", "valid_in: store_only")],
        "second_purchase_nudge",
        "offer.valid_in",
        "valid_in: store_only",
        "'store_only' is not one of the allowed values",
        "everywhere",
        id="free-shipping-store-only",
    ),
    pytest.param(
        "no_loyalty_channel",
        [
            (
                '  loyalty_cashback:\n    line: "{{ offer.label }} en tu compra en {{ store.name }}'
                ', hasta el {{ offer.valid_until_text }}"\n',
                "",
            )
        ],
        "abandoned_cart_nearby_store",
        "channels",
        "channels:",
        "credited through the loyalty programme",
        "channels.loyalty_cashback",
        id="cashback-without-loyalty-channel",
    ),
    pytest.param(
        "loyalty_on_discount",
        [
            (
                "\nholdout_percent: 10",
                '  loyalty_cashback:\n    line: "{{ offer.label }}"\n\nholdout_percent: 10',
            )
        ],
        "post_purchase_follow_up",
        "channels.loyalty_cashback",
        "loyalty_cashback:",
        "needs a cashback offer, not discount_code",
        "cashback_percent or cashback_amount",
        id="loyalty-channel-without-cashback",
    ),
    pytest.param(
        "holdout_high",
        [("holdout_percent: 10", "holdout_percent: 60")],
        "abandoned_cart_nearby_store",
        "holdout_percent",
        "holdout_percent: 60",
        "60",
        "<= 50",
        id="holdout-above-50",
    ),
    pytest.param(
        "cooldown_days",
        [("rule: once_per_trigger", "rule: cooldown")],
        "abandoned_cart_nearby_store",
        "re_entry.cooldown_days",
        "re_entry:",
        "required field is missing",
        ">= 1 and <= 365",
        id="cooldown-without-days",
    ),
    pytest.param(
        "stage_typo",
        [("[acquisition, experimentation,", "[acquisition, experimentacion,")],
        "abandoned_cart_nearby_store",
        "audience.lifecycle_stages[1]",
        "lifecycle_stages:",
        "'experimentacion' is not one of the allowed values",
        "'experimentation'",
        id="lifecycle-stage-typo",
    ),
    pytest.param(
        "segment_typo",
        [("segments: [at_risk, hibernating]", "segments: [at_risk, dormant]")],
        "win_back_recovery",
        "audience.segments[1]",
        "segments:",
        "'dormant'",
        "'hibernating'",
        id="segment-typo",
    ),
    pytest.param(
        "cap_on_transactional",
        [("transactional: true", "transactional: true\nfrequency_cap_override: 2")],
        "loyalty_cashback_300",
        "frequency_cap_override",
        "frequency_cap_override: 2",
        "exempt from the frequency cap",
        "no frequency_cap_override when transactional is true",
        id="cap-override-on-transactional",
    ),
    pytest.param(
        "yaml_tab",
        [("  radius_km: 10", "\tradius_km: 10")],
        "abandoned_cart_nearby_store",
        "",
        "radius_km: 10",
        "YAML syntax error",
        "no tabs",
        id="yaml-syntax-tab",
    ),
    pytest.param(
        "duplicate_key",
        [("priority: 80", "priority: 80\npriority: 70")],
        "abandoned_cart_nearby_store",
        "priority",
        "priority: 70",
        "'priority' appears twice (first on line",
        "each field once",
        id="duplicate-key",
    ),
    pytest.param(
        "template_variable",
        [("      <p>Esperamos", "      <p>{{ custmer.first_name }}</p>\n      <p>Esperamos")],
        "post_purchase_follow_up",
        "channels.email.html_template",
        "custmer",
        "unknown variable 'custmer'",
        "customer",
        id="template-unknown-variable-in-block",
    ),
    pytest.param(
        "template_wrong_trigger_variable",
        [("      <p>Hace tiempo", "      <p>{{ cart_items | length }}</p>\n      <p>Hace tiempo")],
        "win_back_recovery",
        "channels.email.html_template",
        "cart_items",
        "unknown variable 'cart_items'",
        "survey_url",
        id="template-variable-of-another-trigger",
    ),
    pytest.param(
        "template_syntax",
        [
            (
                "      Hola, {{ customer.first_name }}:\n\n      Esperamos",
                "      Hola, {{ customer.first_name }:\n\n      Esperamos",
            )
        ],
        "post_purchase_follow_up",
        "channels.email.text_template",
        "Hola, {{ customer.first_name }:",
        "template error",
        "{% if condition %}",
        id="template-syntax-error",
    ),
    pytest.param(
        "template_filter",
        [("{{ customer.first_name }}, lo que", "{{ customer.first_name | money }}, lo que")],
        "abandoned_cart_nearby_store",
        "channels.email.subject",
        "money",
        "No filter named 'money'",
        "eur",
        id="template-unknown-filter",
    ),
    pytest.param(
        "template_safe",
        [
            (
                "      Tiene en esta tienda",
                "      {{ customer.first_name | safe }} tiene en esta tienda",
            )
        ],
        "abandoned_cart_nearby_store",
        "channels.in_store.staff_note",
        "| safe",
        "No filter named 'safe'",
        "eur",
        id="template-safe-filter-refused",
    ),
    pytest.param(
        "template_autoescape",
        [
            (
                "      <p>Esperamos",
                "      {% autoescape false %}{{ customer.first_name }}{% endautoescape %}\n"
                "      <p>Esperamos",
            )
        ],
        "post_purchase_follow_up",
        "channels.email.html_template",
        "autoescape false",
        "autoescape cannot be switched off",
        "Jinja",
        id="template-autoescape-off-refused",
    ),
    pytest.param(
        "template_file",
        [("html_template: abandoned_cart_nearby_store.html", "html_template: missing.html")],
        "abandoned_cart_nearby_store",
        "channels.email.html_template",
        "html_template: missing.html",
        "template file missing.html not found",
        "_layout.html",
        id="template-file-not-found",
    ),
    pytest.param(
        "template_no_offer",
        [
            (
                'line: "{{ offer.label }} en tu compra en {{ store.name }}, hasta el '
                '{{ offer.valid_until_text }}"',
                'line: "Gracias por tu compra en {{ store.name }}"',
            )
        ],
        "abandoned_cart_nearby_store",
        "channels.loyalty_cashback.line",
        "Gracias por tu compra en",
        "never shows the offer",
        "{{ offer.label }}",
        id="template-without-the-offer",
    ),
    pytest.param(
        "p_alive_above_one",
        [("  value_bands: [mid, high]\n", "  value_bands: [mid, high]\n  min_p_alive: 1.5\n")],
        "win_back_recovery",
        "audience.min_p_alive",
        "min_p_alive: 1.5",
        "less than or equal to 1",
        "1",
        id="p-alive-above-one",
    ),
    pytest.param(
        "p_alive_bounds_crossed",
        [
            (
                "  value_bands: [mid, high]\n",
                "  value_bands: [mid, high]\n  min_p_alive: 0.6\n  max_p_alive: 0.3\n",
            )
        ],
        "win_back_recovery",
        "audience.max_p_alive",
        "max_p_alive: 0.3",
        "below min_p_alive 0.6",
        "from 0.6 to 1",
        id="p-alive-bounds-crossed",
    ),
]


@pytest.mark.parametrize(
    ("new_id", "replacements", "source", "field", "marker", "message", "allowed"), CASES
)
def test_mistake_names_file_field_line_and_what_is_allowed(
    variant: Callable[..., Path],
    line_of: LineOf,
    new_id: str,
    replacements: list[tuple[str, str]],
    source: str,
    field: str,
    marker: str,
    message: str,
    allowed: str,
) -> None:
    path = variant(new_id, *replacements, source=source)
    campaigns, errors = load_all(path.parent)
    assert campaigns == []
    matching = [error for error in errors if error.field == field]
    assert matching, f"no error on {field!r}: {[str(error) for error in errors]}"
    error = matching[0]
    assert error.file == path
    assert error.line == line_of(path, marker), str(error)
    assert message in error.message, str(error)
    assert error.allowed is not None and allowed in error.allowed, str(error)
    with pytest.raises(CampaignLoadError) as raised:
        load_campaign(path)
    assert error in raised.value.errors


def test_unclosed_bracket_is_a_yaml_error_near_its_line(
    variant: Callable[..., Path], line_of: LineOf
) -> None:
    path = variant("yaml_bracket", ("radius_km: 10", "radius_km: [10"))
    (error,) = load_all(path.parent)[1]
    assert error.message.startswith("YAML syntax error")
    # the parser notices the missing ']' where the next key starts
    assert line_of(path, "radius_km: [10") <= (error.line or 0) <= line_of(path, "min_cart_value")


def test_error_text_reads_file_line_field_message_allowed(variant: Callable[..., Path]) -> None:
    path = variant("wrong_status", ("status: active", "status: live"))
    (error,) = load_all(path.parent)[1]
    assert str(error) == (
        f"{path}:{error.line}: status: 'live' is not one of the allowed values "
        "(allowed: 'draft', 'active' or 'paused')"
    )
    assert error.as_dict()["file"] == str(path)


def test_one_broken_file_does_not_stop_the_others(
    shipped_copy: Path, variant: Callable[..., Path]
) -> None:
    broken = {
        variant("broken_yaml", ("  radius_km: 10", "\tradius_km: 10")),
        variant("broken_field", ("  radius_km: 10", "  radius: 10")),
        variant("broken_template", ('line: "{{ offer.label }}', 'line: "{{ offer.label }')),
    }
    campaigns, errors = load_all(shipped_copy)
    assert len(campaigns) == 5
    assert {error.file for error in errors} == broken
    assert {campaign.id for campaign in campaigns}.isdisjoint({path.stem for path in broken})


def _age(path: Path, seconds_ago: float) -> None:
    """Set a file's modification time ``seconds_ago`` (which of two files is older)."""
    when = time.time() - seconds_ago
    os.utime(path, (when, when))


def test_duplicate_id_across_files_the_active_one_keeps_it(variant: Callable[..., Path]) -> None:
    yml = variant("twin", ("priority: 80", "priority: 80"))  # active, like the headline
    yaml_file = variant("twin", ("status: active", "status: draft"), suffix=".yaml")
    _age(yaml_file, 3600)  # the draft is even older, and first by name
    campaigns, errors = load_all(yml.parent)
    assert [campaign.source_path for campaign in campaigns] == [yml]
    assert {(error.file, error.field) for error in errors} == {
        (yaml_file, "id"),
        (yaml_file, "offer.id"),  # the copy shares the offer id too
    }
    assert "already used by twin.yml, which is active and keeps it" in errors[0].message


def test_duplicate_id_across_files_the_older_one_keeps_it(variant: Callable[..., Path]) -> None:
    yml = variant("twin", ("priority: 80", "priority: 80"))
    yaml_file = variant("twin", ("priority: 80", "priority: 70"), suffix=".yaml")
    _age(yml, 3600)
    campaigns, errors = load_all(yml.parent)
    assert [campaign.source_path for campaign in campaigns] == [yml]
    assert {error.file for error in errors} == {yaml_file}
    assert "twin.yml, which came first and keeps it" in errors[0].message


def test_duplicate_offer_id_is_reported_on_the_newer_file(
    variant: Callable[..., Path], line_of: LineOf
) -> None:
    first = variant("offer_b")  # sorts after offer_a, but is older
    _age(first, 3600)
    second = variant("offer_a")
    text = second.read_text(encoding="utf-8").replace("id: offer_a_", "id: offer_b_")
    second.write_text(text, encoding="utf-8")
    campaigns, errors = load_all(second.parent)
    assert [campaign.id for campaign in campaigns] == ["offer_b"]
    (error,) = errors
    assert (error.file, error.field) == (second, "offer.id")
    assert error.line == line_of(second, "id: offer_b_")
    assert "already used by offer_b.yml" in error.message


def test_a_draft_copy_keeping_the_live_offer_id_never_takes_the_live_campaign_down(
    shipped_copy: Path, line_of: LineOf
) -> None:
    """Issue 15: a copy of win_back_recovery that keeps its offer.id. The copy is newer and a
    draft: it gets the error; the live campaign stays valid, whatever the names' order."""
    live = shipped_copy / "win_back_recovery.yml"
    _age(live, 86_400)
    draft = shipped_copy / "a_win_back_draft.yml"  # sorts before the live file
    text = live.read_text(encoding="utf-8")
    text = text.replace("id: win_back_recovery\n", "id: a_win_back_draft\n", 1)
    draft.write_text(text.replace("status: active", "status: draft", 1), encoding="utf-8")
    campaigns, errors = load_all(shipped_copy)
    assert "win_back_recovery" in {campaign.id for campaign in campaigns}
    assert "a_win_back_draft" not in {campaign.id for campaign in campaigns}
    (error,) = errors
    assert (error.file, error.field) == (draft, "offer.id")
    assert error.line == line_of(draft, "id: vuelve_15")
    assert "win_back_recovery.yml, which is active and keeps it" in error.message
    # even when the draft is the older file, the active campaign keeps its offer id
    _age(draft, 10 * 86_400)
    campaigns, errors = load_all(shipped_copy)
    assert "win_back_recovery" in {campaign.id for campaign in campaigns}
    assert [error.file for error in errors] == [draft]


def test_id_must_equal_the_file_name(variant: Callable[..., Path], line_of: LineOf) -> None:
    path = variant("right_name")
    renamed = path.with_name("wrong_name.yml")
    path.rename(renamed)
    (error,) = load_all(renamed.parent)[1]
    assert error.field == "id"
    assert error.line == line_of(renamed, "id: right_name")
    assert "must equal the file name 'wrong_name'" in error.message


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "the file is empty"), ("- id: a\n- id: b\n", "a campaign file is a list of fields")],
)
def test_empty_or_non_mapping_file(campaign_dir: Path, text: str, message: str) -> None:
    path = campaign_dir / "odd.yml"
    path.write_text(text, encoding="utf-8")
    (error,) = load_all(campaign_dir)[1]
    assert error.file == path and error.message == message and error.line == 1


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    campaigns, errors = load_all(tmp_path / "nowhere")
    assert campaigns == [] and len(errors) == 1
    assert isinstance(errors[0], CampaignError)


def test_templates_and_schema_are_not_campaigns(shipped_copy: Path) -> None:
    shutil.copy(SHIPPED / "schema.json", shipped_copy / "schema.json")
    (shipped_copy / "README.md").write_text("# notes\n", encoding="utf-8")
    campaigns, errors = load_all(shipped_copy)
    assert len(campaigns) == 5 and errors == []


def test_is_live_and_record() -> None:
    campaign = load_campaign(SHIPPED / "win_back_recovery.yml")
    assert campaign.is_live(campaign.start_date) and campaign.is_live(campaign.end_date)
    assert not campaign.is_live(date(2026, 10, 31))
    paused = campaign.model_copy(update={"status": "paused"})
    assert not paused.is_live(campaign.start_date)
    record = campaign.to_record()
    assert record["campaign_id"] == "win_back_recovery"
    assert record["trigger_type"] == "win_back"
    assert record["offer_code"] == "VUELVE15"
    assert record["re_entry_rule"] == "cooldown" and record["cooldown_days"] == 180
    assert record["channels"] == ["email", "in_store"]
    assert set(record["lifecycle_stages"]) <= set(LIFECYCLE_STAGES)


def test_models_validate_without_the_loader() -> None:
    data = {
        "id": "code_only",
        "name": "Built in code",
        "owner": "ops@omni.example",
        "description": "A campaign built from a dict.",
        "status": "draft",
        "start_date": "2026-12-01",
        "end_date": "2026-12-31",
        "trigger": {"type": "win_back"},
        "offer": {
            "id": "code_only_offer",
            "kind": "cashback_amount",
            "value": 5,
            "valid_in": "store_only",
            "validity_days": 10,
            "budget_cap_eur": 100,
        },
        "channels": {"loyalty_cashback": {"line": "{{ offer.label }}"}},
        "holdout_percent": 0,
        "priority": 1,
        "re_entry": {"rule": "once_ever"},
    }
    campaign = Campaign.model_validate(data)
    assert campaign.trigger.include_survey is True  # type: ignore[union-attr]
    assert campaign.source_path is None


def test_report_lists_valid_campaigns_then_errors(
    shipped_copy: Path, variant: Callable[..., Path]
) -> None:
    broken = variant("broken_status", ("status: active", "status: live"))
    campaigns, errors = load_all(shipped_copy)
    report = format_report(campaigns, errors)
    assert report.startswith("5 valid campaign(s):")
    assert "  abandoned_cart_nearby_store: active, abandoned_cart_nearby_stock" in report
    assert "1 error(s) in 1 file(s):" in report
    assert report.splitlines()[-1].strip().endswith(str(errors[0]).split(str(broken.name))[-1])

"""Publishing validated campaigns into the warehouse (config.campaigns) and the holdout hash."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from orchestration import settings
from orchestration.campaigns import load_all
from orchestration.campaigns.preview import holdout_bucket, is_holdout
from orchestration.campaigns.publish import COLUMN_NAMES, publish_configs


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> settings.Settings:
    monkeypatch.setenv("OMNI_HOME", str(tmp_path / "omni"))
    return settings.load()


def _rows(cfg: settings.Settings) -> dict[str, dict[str, object]]:
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        cursor = con.execute("select * from config.campaigns")
        names = [column[0] for column in cursor.description]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def test_publish_writes_one_row_per_valid_campaign(
    cfg: settings.Settings, shipped_copy: Path
) -> None:
    campaigns, errors = load_all(shipped_copy)
    assert not errors
    assert publish_configs(cfg, campaigns) == len(campaigns) == 5
    rows = _rows(cfg)
    assert set(rows) == {campaign.id for campaign in campaigns}
    headline = rows["abandoned_cart_nearby_store"]
    assert list(headline) == list(COLUMN_NAMES)
    assert headline["trigger_type"] == "abandoned_cart_nearby_stock"
    assert headline["trigger_radius_km"] == 10.0 and headline["trigger_min_cart_value"] == 30.0
    assert json.loads(str(headline["trigger_params"]))["max_cart_age_days"] == 7
    assert headline["channels"] == "email,loyalty_cashback,in_store"
    assert headline["has_in_store"] is True and headline["is_transactional"] is False
    assert headline["audience_segments"] == ""  # no filter
    win_back = rows["win_back_recovery"]
    assert win_back["audience_segments"] == "at_risk,hibernating"
    assert win_back["re_entry_rule"] == "cooldown" and win_back["cooldown_days"] == 180
    assert rows["loyalty_cashback_300"]["trigger_spend_threshold"] == 300.0
    assert rows["loyalty_cashback_300"]["is_transactional"] is True
    assert rows["second_purchase_nudge"]["frequency_cap_override"] == 1


def test_publish_replaces_the_content_and_skips_broken_files(
    cfg: settings.Settings, shipped_copy: Path
) -> None:
    campaigns, _ = load_all(shipped_copy)
    publish_configs(cfg, campaigns)
    text = (shipped_copy / "win_back_recovery.yml").read_text()
    (shipped_copy / "win_back_recovery.yml").write_text(
        text.replace("priority: 60", "priority: 600")
    )
    (shipped_copy / "second_purchase_nudge.yml").unlink()
    campaigns, errors = load_all(shipped_copy)
    assert [error.file.name for error in errors] == ["win_back_recovery.yml"]
    assert publish_configs(cfg, campaigns) == 3
    assert set(_rows(cfg)) == {
        "abandoned_cart_nearby_store",
        "loyalty_cashback_300",
        "post_purchase_follow_up",
    }


def test_holdout_bucket_is_stable_and_uniform() -> None:
    """Same customer and campaign, same group; about holdout_percent of customers held out."""
    assert holdout_bucket("split", "h1") == 3574  # the number the dbt unit test expects too
    assert holdout_bucket("split", "h1") == holdout_bucket("split", "h1")
    customers = [f"customer-{number}" for number in range(20_000)]
    for percent in (10.0, 15.0, 20.0):
        share = sum(is_holdout("win_back_recovery", c, percent) for c in customers) / len(customers)
        # binomial standard deviation at n=20000 is <= 0.0029: allow 4 of them
        assert abs(share - percent / 100) < 0.012, (percent, share)
    # groups of two campaigns are independent: about p*q of customers in both holdouts
    both = sum(is_holdout("a", c, 50) and is_holdout("b", c, 50) for c in customers)
    assert abs(both / len(customers) - 0.25) < 0.015


def test_value_bands_and_trigger_types_match_the_audience_models() -> None:
    """The audience SQL writes exactly the value bands and trigger types campaigns may name."""
    import yaml

    from orchestration.campaigns import TRIGGER_TYPES
    from orchestration.campaigns.preview import TRIGGER_MODELS
    from orchestration.campaigns.vocabulary import VALUE_BANDS

    models_yaml = settings.REPO_ROOT / "dbt_project" / "models" / "activation"
    document = yaml.safe_load((models_yaml / "_activation__models.yml").read_text("utf-8"))

    def accepted(model: str, column: str) -> list[str]:
        entry = next(item for item in document["models"] if item["name"] == model)
        col = next(item for item in entry["columns"] if item["name"] == column)
        test = next(t for t in col["data_tests"] if isinstance(t, dict) and "accepted_values" in t)
        return sorted(test["accepted_values"]["arguments"]["values"])

    assert accepted("int_campaign_candidates", "value_band") == sorted(VALUE_BANDS)
    assert accepted("stg_config__campaigns", "trigger_type") == sorted(TRIGGER_TYPES)
    assert sorted(TRIGGER_MODELS) == sorted(TRIGGER_TYPES)
    for model in TRIGGER_MODELS.values():
        assert (
            settings.REPO_ROOT / "dbt_project" / "models" / "triggers" / f"{model}.sql"
        ).exists()

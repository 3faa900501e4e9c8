"""Audiences end to end: world -> sandbox -> ingest -> publish the shipped campaigns -> dbt.

A small simulated world goes through the real chain (the simulator, the sandbox services, the
dlt connectors, ``publish_configs``, ``dbt build`` of the trigger and activation models with
their data and unit tests), then the audiences are checked: every shipped campaign reaches
someone, every left-out customer has a reason, the holdout is the SQL/Python hash and its
share is near the configured percent, nobody is contacted on a channel they did not allow,
and ``preview`` renders every shipped campaign for a real customer. Finally a fake dispatch
ledger (``dispatch.contacts``) shows the frequency cap and re-entry reading the history.

Between the marts and the audiences the predictive model scores every customer
(``orchestration.predictions.predict``, as the ``predict`` task of warehouse_build does), and
``post_purchase_follow_up`` is given ``audience.max_p_alive`` = the median score, so the
p_alive filter is exercised on real scores.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from orchestration import settings
from orchestration.campaigns import load_all
from orchestration.campaigns.preview import audience_counts, holdout_bucket, preview
from orchestration.campaigns.publish import publish_configs
from orchestration.predictions import predict

CUSTOMERS = 1000
DAYS = 120
SEED = 23
END_DATE = date(2026, 11, 20)
PROJECT_DIR = settings.REPO_ROOT / "dbt_project"
SHIPPED = settings.REPO_ROOT / "campaigns"
UPSTREAM = ("path:models/staging", "path:models/intermediate", "path:models/marts")
MINE = (
    "stg_predictions__customer_predictions",  # rebuilt after `predict`, like dbt_audiences
    "path:models/dispatch",
    "path:models/triggers",
    "path:models/activation",
)
P_ALIVE_CAMPAIGN = "post_purchase_follow_up"


@dataclass(frozen=True)
class Activated:
    cfg: settings.Settings
    campaigns_dir: Path
    target_dir: Path
    campaign_ids: list[str]
    max_p_alive: float


def run_dbt(cfg: settings.Settings, target_dir: Path, *args: str) -> None:
    """The venv's dbt on the project, private OMNI_HOME, target and logs."""
    dbt = Path(sys.executable).with_name("dbt")
    env = {**os.environ, "OMNI_HOME": str(cfg.omni_home), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    command = [
        str(dbt), *args,
        "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR),
        "--target-path", str(target_dir), "--log-path", str(target_dir / "logs"),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:]


def live_copy(directory: Path, max_p_alive: float | None = None) -> Path:
    """The shipped campaigns, made active over the whole simulated period (and
    ``P_ALIVE_CAMPAIGN`` limited to ``max_p_alive`` when given)."""
    shutil.copytree(SHIPPED, directory)
    for path in directory.glob("*.yml"):
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"(?m)^status: .*$", "status: active", text)
        text = re.sub(r"(?m)^start_date: .*$", "start_date: 2026-01-01", text)
        text = re.sub(r"(?m)^end_date: .*$", "end_date: 2027-12-31", text)
        if max_p_alive is not None and path.stem == P_ALIVE_CAMPAIGN:
            assert "\naudience:" not in text and "\noffer:" in text
            text = text.replace(
                "\noffer:", f"\naudience:\n  max_p_alive: {max_p_alive}\n\noffer:", 1
            )
        path.write_text(text, encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def activated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Activated]:
    from orchestration.sandbox import services, world
    from orchestration.sources import ingest

    root = tmp_path_factory.mktemp("activation")
    home = root / "omni"
    world.generate(home / "world", CUSTOMERS, DAYS, SEED, end_date=END_DATE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMNI_HOME", str(home))
        cfg = settings.load()
        with services.running(home / "world") as urls:
            for source in ("shop", "pos", "social"):
                ingest(source, base_url=urls[source], cfg=cfg)
        target_dir = root / "target"
        run_dbt(cfg, target_dir, "run", "--select", *UPSTREAM)
        scored = predict(cfg)
        assert scored["predicted"] > 0, scored
        with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
            (median,) = con.execute(
                "select median(p_alive) from predictions.customer_predictions"
            ).fetchall()[0]
        max_p_alive = round(float(median), 4)
        campaigns_dir = live_copy(root / "campaigns", max_p_alive)
        campaigns, errors = load_all(campaigns_dir)
        assert not errors
        assert publish_configs(cfg, campaigns) == len(campaigns)
        run_dbt(cfg, target_dir, "build", "--select", *MINE)
        yield Activated(
            cfg, campaigns_dir, target_dir, [campaign.id for campaign in campaigns], max_p_alive
        )


def query(
    activated: Activated, sql: str, parameters: list[Any] | None = None
) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(activated.cfg.warehouse_path), read_only=True) as con:
        return con.execute(sql, parameters or []).fetchall()


def test_every_shipped_campaign_has_an_audience(activated: Activated) -> None:
    counts = audience_counts(activated.cfg)
    assert set(counts) == set(activated.campaign_ids)
    for campaign_id, stats in sorted(counts.items()):
        print(
            f"{campaign_id}: audience {stats['audience_size']}, holdout {stats['holdout_size']}, "
            f"suppressed {stats['suppressions_by_reason']}, cost {stats['estimated_cost_eur']} "
            f"of {stats['budget_cap_eur']} EUR"
        )
        assert stats["treatment_size"] > 0, (campaign_id, stats)
        assert stats["is_within_budget"], (campaign_id, stats)


def test_every_left_out_candidate_has_a_reason(activated: Activated) -> None:
    (candidates_out, reasons, missing, empty) = query(
        activated,
        """
        select
            (select count(*) from activation.int_campaign_eligibility
             where not is_in_audience or is_holdout),
            (select count(*) from activation.suppressions where scope = 'contact'),
            (select count(*) from activation.int_campaign_eligibility as decisions
             where (not is_in_audience or is_holdout) and not exists (
                select 1 from activation.suppressions as suppressed
                where suppressed.campaign_id = decisions.campaign_id
                    and suppressed.customer_id = decisions.customer_id
                    and suppressed.scope = 'contact')),
            (select count(*) from activation.suppressions where reason is null or reason = '')
        """,
    )[0]
    assert candidates_out > 0
    assert (reasons, missing, empty) == (candidates_out, 0, 0)


def test_holdout_is_the_stable_hash_and_near_the_configured_share(activated: Activated) -> None:
    rows = query(
        activated,
        "select campaign_id, customer_id, holdout_bucket, is_holdout, holdout_percent "
        "from activation.int_campaign_eligibility",
    )
    assert rows
    for campaign_id, customer_id, bucket, held_out, percent in rows:
        assert bucket == holdout_bucket(campaign_id, customer_id)
        assert held_out == (bucket < percent * 100)
    # Pooled over campaigns: the number held out against its expectation (binomial, 4 sigma).
    expected = sum(percent / 100 for *_, percent in rows)
    variance = sum((percent / 100) * (1 - percent / 100) for *_, percent in rows)
    held = sum(1 for row in rows if row[3])
    assert abs(held - expected) <= 4 * math.sqrt(variance) + 1, (held, expected)


def test_nobody_is_contacted_without_consent_or_account(activated: Activated) -> None:
    (no_consent, no_account, duplicates, outside_window) = query(
        activated,
        """
        select
            (select count(*) from activation.sync_email_audience as sync
             join marts.dim_customers using (customer_id) where not has_email_consent),
            (select count(*) from activation.sync_loyalty_cashback_audience as sync
             join marts.dim_customers as customers using (customer_id)
             where customers.loyalty_account_id is null),
            (select count(*) - count(distinct contact_id) from (
                select contact_id from activation.sync_email_audience
                union all select contact_id from activation.sync_loyalty_cashback_audience
                union all select contact_id from activation.sync_store_offers_audience)),
            (select count(*) from activation.sync_email_audience as sync
             join marts.dim_customers using (customer_id)
             where contact_window_start_hour < contact_window_end_hour and (
                hour(timezone(sync.timezone, timezone('UTC', sync.scheduled_send_at)))
                    not between contact_window_start_hour and contact_window_end_hour - 1))
        """,
    )[0]
    assert (no_consent, no_account, duplicates, outside_window) == (0, 0, 0, 0)


def test_preview_renders_every_shipped_campaign(activated: Activated, tmp_path: Path) -> None:
    counts = audience_counts(activated.cfg)
    for campaign_id in activated.campaign_ids:
        out = tmp_path / campaign_id
        result = preview(
            activated.cfg, campaign_id, out_dir=out, campaigns_dir=activated.campaigns_dir
        )
        assert result["payload_source"] == "trigger"
        assert result["decision"]["is_in_audience"] is True
        assert result["stats"] == counts[campaign_id]
        names = {Path(path).name for path in result["files"]}
        assert {"email.html", "email.txt", "stats.json"} <= names, names
        first_name = query(
            activated,
            "select first_name from marts.dim_customers where customer_id = ?",
            [result["customer_id"]],
        )[0][0]
        assert first_name and first_name in (out / "email.txt").read_text(encoding="utf-8")
        assert result["rendered"]["offer_label"] in (out / "email.html").read_text(encoding="utf-8")


def test_preview_for_a_customer_outside_the_audience(activated: Activated, tmp_path: Path) -> None:
    outsider = query(
        activated,
        "select customer_id from marts.dim_customers where customer_id not in ("
        "select customer_id from activation.int_campaign_eligibility "
        "where campaign_id = 'win_back_recovery') order by customer_id limit 1",
    )[0][0]
    result = preview(
        activated.cfg,
        "win_back_recovery",
        customer_id=outsider,
        out_dir=tmp_path,
        campaigns_dir=activated.campaigns_dir,
    )
    assert result["customer_id"] == outsider
    assert result["decision"]["is_in_audience"] is None
    assert (tmp_path / "email.html").exists() and (tmp_path / "staff_card.txt").exists()


def test_a_template_failing_on_real_data_is_one_readable_preview_error(
    activated: Activated, tmp_path: Path
) -> None:
    """The template passes validation (the example customer skips the branch) and fails for
    a real customer: preview says campaign, file, line, field and why; never a traceback."""
    from orchestration.campaigns.preview import PreviewError

    directory = tmp_path / "campaigns"
    shutil.copytree(activated.campaigns_dir, directory)
    path = directory / "abandoned_cart_nearby_store.yml"
    note = "    staff_note: >\n      "
    text = path.read_text(encoding="utf-8")
    assert note in text
    poisoned = '{% if customer.customer_id != "C000123" %}{{ 1 / 0 }}{% endif %}'
    path.write_text(text.replace(note, f"{note}{poisoned}\n      ", 1), encoding="utf-8")
    assert load_all(directory)[1] == []  # valid: the example customer is C000123
    with pytest.raises(PreviewError) as caught:
        preview(activated.cfg, "abandoned_cart_nearby_store", campaigns_dir=directory)
    message = str(caught.value)
    line = text.splitlines().index(note.splitlines()[0]) + 2  # the template's first line
    assert "campaign abandoned_cart_nearby_store: " in message
    assert f"abandoned_cart_nearby_store.yml:{line}: channels.in_store.staff_note: " in message
    assert message.endswith("ZeroDivisionError: division by zero")


def test_dispatch_history_drives_cap_and_re_entry(activated: Activated) -> None:
    """Runs last (it rebuilds the activation models on top of a fake dispatch ledger)."""
    picked = query(
        activated,
        """
        select campaign_id, customer_id, trigger_key, is_transactional
        from activation.int_campaign_eligibility
        where is_in_audience and not is_transactional
        order by campaign_id, customer_id limit 2
        """,
    )
    (campaign_a, customer_a, _, _), (campaign_b, customer_b, trigger_b, _) = picked
    as_of_at = query(activated, "select as_of_at from triggers.triggers_clock")[0][0]
    with duckdb.connect(str(activated.cfg.warehouse_path)) as con:
        con.execute("create schema if not exists dispatch")
        con.execute(
            "create table dispatch.contacts (contact_id varchar, campaign_id varchar, "
            "customer_id varchar, trigger_key varchar, channel varchar, status varchar, "
            "contacted_at timestamp, is_transactional boolean)"
        )
        for number in range(3):  # three marketing contacts this week: the cap (3) is reached
            con.execute(
                "insert into dispatch.contacts values (?, 'other', ?, ?, 'email', 'sent', "
                "?::timestamp - interval (? + 1) day, false)",
                [f"x{number}", customer_a, f"k{number}", as_of_at, number],
            )
        # the same trigger occurrence already contacted, a month ago
        con.execute(
            "insert into dispatch.contacts values ('y', ?, ?, ?, 'email', 'sent', "
            "?::timestamp - interval 30 day, false)",
            [campaign_b, customer_b, trigger_b, as_of_at],
        )
    try:
        run_dbt(activated.cfg, activated.target_dir, "build", "--select", *MINE)
        decided = dict(
            ((row[0], row[1]), row[2])
            for row in query(
                activated,
                "select campaign_id, customer_id, suppression_reason "
                "from activation.int_campaign_eligibility",
            )
        )
        assert decided[(campaign_a, customer_a)] == "frequency_cap"
        assert decided[(campaign_b, customer_b)] in {"re_entry_same_trigger", "frequency_cap"}
        if customer_b != customer_a:
            assert decided[(campaign_b, customer_b)] == "re_entry_same_trigger"
    finally:
        with duckdb.connect(str(activated.cfg.warehouse_path)) as con:
            con.execute("drop schema dispatch cascade")


def test_every_customer_is_scored_and_the_p_alive_filter_holds(activated: Activated) -> None:
    """One prediction row per customer; the campaign with max_p_alive keeps exactly the
    customers at or under the bound, and says why it left out the others."""
    (customers, predictions, scored, unscored_buyers) = query(
        activated,
        """
        select
            (select count(*) from marts.dim_customers),
            (select count(*) from predictions.customer_predictions
             join marts.dim_customers using (customer_id)),
            (select count(*) from predictions.customer_predictions where p_alive is not null),
            (select count(*) from predictions.customer_predictions
             join marts.dim_customers using (customer_id)
             where order_count > 0 and p_alive is null)
        """,
    )[0]
    assert predictions == customers > 0
    assert scored > 0 and unscored_buyers == 0
    rows = query(
        activated,
        "select suppression_reason, p_alive from activation.int_campaign_eligibility "
        "where campaign_id = ?",
        [P_ALIVE_CAMPAIGN],
    )
    bound = activated.max_p_alive
    reasons = {reason for reason, _ in rows}
    assert "audience_p_alive" in reasons and None in reasons, reasons
    for reason, p_alive in rows:
        if reason == "audience_p_alive":
            assert p_alive > bound
        elif reason == "no_p_alive_prediction":
            assert p_alive is None
        else:  # in the audience, or left out by a later rule: the filter let it through
            assert p_alive is not None and p_alive <= bound, (reason, p_alive)
    others = query(
        activated,
        "select count(*) from activation.int_campaign_eligibility "
        "where campaign_id <> ? and suppression_reason in "
        "('audience_p_alive', 'no_p_alive_prediction')",
        [P_ALIVE_CAMPAIGN],
    )[0][0]
    assert others == 0  # a campaign without the filter ignores the model


def test_omni_customer_shows_the_prediction(activated: Activated) -> None:
    from orchestration.measurement.customer import customer_history, format_history

    customer_id, p_alive, status = query(
        activated,
        "select customer_id, p_alive, prediction_status from predictions.customer_predictions "
        "where p_alive is not null order by customer_id limit 1",
    )[0]
    history = customer_history(activated.cfg, customer_id)
    assert history["prediction"]["p_alive"] == p_alive and status == "predicted"
    assert f"p_alive {p_alive:.2f}" in format_history(history)
    (never,) = query(
        activated,
        "select customer_id from predictions.customer_predictions "
        "where prediction_status = 'no_orders' order by customer_id limit 1",
    )[0]
    assert "no_orders (no score)" in format_history(customer_history(activated.cfg, never))

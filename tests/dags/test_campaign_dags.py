"""The campaign DAGs: one ``campaign_<id>`` per valid campaign file, and a broken file is one
import error (of ``campaign_files_check.py``) that breaks no other DAG.

Each DagBag parses the whole ``dags/`` folder with databases, connections and the network
refused (as the integrity test does); the campaigns folder is switched with
``OMNI_CAMPAIGNS_DIR``. The short-circuit is exercised by running ``check_status``'s callable
with a run context, on campaign files changed to draft, paused or out of their dates.
"""

from __future__ import annotations

import re
import shutil
import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestration import assets, settings, warehouse
from orchestration.campaign_dags import reason_to_skip
from orchestration.campaigns import load_all, load_campaign
from orchestration.dispatch import Ledger, contact_id_for
from orchestration.dispatch.pools import PROVIDER_POOLS
from orchestration.dispatch.states import Channel
from orchestration.sandbox import services

SHIPPED = settings.REPO_ROOT / "campaigns"
SOURCE = "abandoned_cart_nearby_store"
BROKEN = "broken_campaign"


def _forbid(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{what} while parsing DAG files")

    return refuse


def parse_dags(campaigns_dir: Path | None = None) -> Any:
    """A DagBag of ``dags/`` (campaigns from ``campaigns_dir`` when given), with every way out
    of the process refused."""
    from airflow.dag_processing.dagbag import DagBag

    with pytest.MonkeyPatch.context() as patch:
        if campaigns_dir is not None:
            patch.setenv("OMNI_CAMPAIGNS_DIR", str(campaigns_dir))
        cfg = settings.load()
        warehouse.ensure_manifest(cfg)
        import duckdb
        import sqlalchemy.engine.base
        from airflow.sdk import BaseHook, Variable

        patch.setattr(duckdb, "connect", _forbid("duckdb.connect"))
        patch.setattr(sqlalchemy.engine.base.Connection, "__init__", _forbid("a SQL connection"))
        patch.setattr(BaseHook, "get_connection", _forbid("an Airflow connection lookup"))
        patch.setattr(Variable, "get", _forbid("an Airflow Variable lookup"))
        patch.setattr(socket.socket, "connect", _forbid("a network connection"))
        return DagBag(dag_folder=str(cfg.dags_dir))


def copy_campaigns(directory: Path) -> Path:
    """The shipped campaign files and templates in ``directory``."""
    shutil.copytree(SHIPPED / "templates", directory / "templates")
    for path in SHIPPED.glob("*.yml"):
        shutil.copy(path, directory / path.name)
    return directory


def write_variant(directory: Path, new_id: str, **fields: str) -> Path:
    """A copy of the headline campaign under ``new_id`` with top-level ``fields`` replaced
    (each must exist, so a test cannot pass because its change was never made)."""
    text = (SHIPPED / f"{SOURCE}.yml").read_text(encoding="utf-8")
    text = text.replace(f"id: {SOURCE}\n", f"id: {new_id}\n", 1)
    text = text.replace("\n  id: ", f"\n  id: {new_id}_", 1)  # offer ids are unique too
    for name, value in fields.items():
        text, found = re.subn(rf"(?m)^{name}: .*$", f"{name}: {value}", text, count=1)
        assert found == 1, name
    path = directory / f"{new_id}.yml"
    path.write_text(text, encoding="utf-8")
    return path


def line_of(path: Path, marker: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith(marker):
            return number
    raise AssertionError(f"{marker!r} not in {path}")


@pytest.fixture(scope="module")
def shipped_bag() -> Any:
    return parse_dags()


@pytest.fixture(scope="module")
def shipped_campaigns() -> list[Any]:
    campaigns, errors = load_all(SHIPPED)
    assert not errors and campaigns
    return campaigns


# --- the shipped campaigns ------------------------------------------------------------------


def test_one_dag_per_shipped_campaign(shipped_bag: Any, shipped_campaigns: list[Any]) -> None:
    assert shipped_bag.import_errors == {}
    generated = {dag_id for dag_id in shipped_bag.dag_ids if dag_id.startswith("campaign_")}
    assert generated == {f"campaign_{campaign.id}" for campaign in shipped_campaigns}
    assert {"warehouse_build", "ingest_shop"} <= set(shipped_bag.dag_ids)


def test_campaign_dags_are_wired_and_tagged(shipped_bag: Any, shipped_campaigns: list[Any]) -> None:
    for campaign in shipped_campaigns:
        dag = shipped_bag.dags[f"campaign_{campaign.id}"]
        assert set(dag.tags) == {"campaign", campaign.trigger.type, *campaign.enabled_channels}
        assert set(dag.timetable.asset_condition.objects) == {assets.WAREHOUSE}
        assert not dag.catchup
        assert dag.is_paused_upon_creation is (campaign.status != "active")
        assert dag.params["dry_run"] is False
        assert dag.params.get_param("dry_run").schema["type"] == "boolean"
        tasks = {task.task_id: task for task in dag.tasks}
        senders = {f"send_{channel}" for channel in campaign.enabled_channels}
        plans = {f"plan_{channel}" for channel in campaign.enabled_channels}
        assert set(tasks) == {
            "check_status",
            "check_audience",
            "hand_to_dispatch",
            "prepare_dispatch",
            "summarise",
            "fail_if_a_task_failed",
            *plans,
            *senders,
        }
        assert tasks["check_status"].downstream_task_ids == {"check_audience"}
        assert tasks["check_audience"].downstream_task_ids == {"hand_to_dispatch"}
        assert tasks["hand_to_dispatch"].downstream_task_ids == {
            "prepare_dispatch",
            "fail_if_a_task_failed",
        }
        assert tasks["prepare_dispatch"].downstream_task_ids == {
            *plans,
            "summarise",
            "fail_if_a_task_failed",
        }
        for channel in campaign.enabled_channels:
            sender = tasks[f"send_{channel}"]
            assert sender.pool == PROVIDER_POOLS[Channel(channel)].name  # one pool per provider
            assert sender.downstream_task_ids == {"summarise", "fail_if_a_task_failed"}
            assert tasks[f"plan_{channel}"].downstream_task_ids == {
                f"send_{channel}",
                "fail_if_a_task_failed",
            }
        assert tasks["summarise"].trigger_rule == "all_done"  # counts even after a failure
        assert tasks["fail_if_a_task_failed"].trigger_rule == "one_failed"
        for task in tasks.values():
            assert task.owner == "data-platform" and task.retries >= 1
            assert task.pool != warehouse.WAREHOUSE_POOL  # reads the warehouse read-only


def test_campaign_doc_shows_owner_offer_and_channels(
    shipped_bag: Any, shipped_campaigns: list[Any]
) -> None:
    for campaign in shipped_campaigns:
        doc = shipped_bag.dags[f"campaign_{campaign.id}"].doc_md
        assert campaign.name in doc and campaign.owner in doc
        assert campaign.offer.id in doc and campaign.offer.kind in doc
        assert f"{campaign.offer.budget_cap_eur:,.2f} EUR" in doc
        assert ", ".join(campaign.enabled_channels) in doc
        assert f"{campaign.holdout_percent:g} %" in doc
        assert f"{campaign.start_date} to {campaign.end_date}" in doc


# --- a broken file --------------------------------------------------------------------------


def test_a_broken_file_is_one_import_error_and_breaks_nothing_else(
    tmp_path: Path, shipped_campaigns: list[Any]
) -> None:
    directory = copy_campaigns(tmp_path / "campaigns")
    broken = write_variant(directory, BROKEN, holdout_percent="80")
    bag = parse_dags(directory)

    assert len(bag.import_errors) == 1
    ((failed_file, message),) = bag.import_errors.items()
    assert Path(failed_file).name == "campaign_files_check.py"
    line = line_of(broken, "holdout_percent:")
    assert f"{broken.name}:{line}: holdout_percent:" in message
    assert "allowed" in message and "<= 50" in message
    generated = {dag_id for dag_id in bag.dag_ids if dag_id.startswith("campaign_")}
    assert generated == {f"campaign_{campaign.id}" for campaign in shipped_campaigns}
    assert f"campaign_{BROKEN}" not in bag.dag_ids
    assert {"warehouse_build", "ingest_shop", "ingest_pos", "ingest_social"} <= set(bag.dag_ids)


def test_every_broken_file_is_listed_in_the_one_error(tmp_path: Path) -> None:
    directory = copy_campaigns(tmp_path / "campaigns")
    write_variant(directory, BROKEN, status="live")
    (directory / "not_yaml.yml").write_text("id: not_yaml\nname: [unclosed\n", encoding="utf-8")
    bag = parse_dags(directory)
    assert len(bag.import_errors) == 1
    message = next(iter(bag.import_errors.values()))
    assert "2 broken campaign file(s)" in message
    assert f"{BROKEN}.yml" in message and "'live' is not one of the allowed values" in message
    assert re.search(r"not_yaml\.yml:\d+: YAML syntax error", message)


def test_the_live_dag_survives_a_draft_copy_that_keeps_its_offer_id(
    tmp_path: Path, shipped_campaigns: list[Any]
) -> None:
    """Issue 15: a marketer copies the live win_back_recovery to a draft and keeps its
    offer.id. The draft (newer, not active, and first by name) is the one import error;
    the live campaign's DAG stays, whatever the files' order."""
    import os

    directory = copy_campaigns(tmp_path / "campaigns")
    live = directory / "win_back_recovery.yml"
    old = live.stat().st_mtime - 86_400
    os.utime(live, (old, old))
    draft = directory / "a_win_back_copy.yml"
    text = live.read_text(encoding="utf-8").replace(
        "id: win_back_recovery\n", "id: a_win_back_copy\n", 1
    )
    draft.write_text(text.replace("status: active", "status: draft", 1), encoding="utf-8")
    bag = parse_dags(directory)

    assert "campaign_win_back_recovery" in bag.dag_ids
    assert "campaign_a_win_back_copy" not in bag.dag_ids
    generated = {dag_id for dag_id in bag.dag_ids if dag_id.startswith("campaign_")}
    assert generated == {f"campaign_{campaign.id}" for campaign in shipped_campaigns}
    ((failed_file, message),) = bag.import_errors.items()
    assert Path(failed_file).name == "campaign_files_check.py"
    assert "1 broken campaign file(s)" in message and "a_win_back_copy.yml" in message
    line = line_of(draft, "  id: vuelve_15")
    assert f"a_win_back_copy.yml:{line}: offer.id: offer id 'vuelve_15' is already used by " in (
        message
    )
    assert "win_back_recovery.yml, which is active and keeps it" in message
    assert "win_back_recovery.yml:" not in message  # the live file is never blamed


def test_a_draft_or_paused_campaign_dag_starts_paused(tmp_path: Path) -> None:
    directory = copy_campaigns(tmp_path / "campaigns")
    write_variant(directory, "draft_one", status="draft")
    write_variant(directory, "paused_one", status="paused")
    bag = parse_dags(directory)
    assert bag.import_errors == {}
    assert bag.dags["campaign_draft_one"].is_paused_upon_creation is True
    assert bag.dags["campaign_paused_one"].is_paused_upon_creation is True
    assert bag.dags[f"campaign_{SOURCE}"].is_paused_upon_creation is False


# --- the short-circuit ----------------------------------------------------------------------


class _Run:
    def __init__(self, run_after: datetime) -> None:
        self.run_after = run_after


@pytest.fixture
def run_check_status(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Run ``check_status`` of a campaign DAG for a run on a given date."""
    import airflow.sdk

    def run(dag: Any, on: date) -> bool:
        when = datetime(on.year, on.month, on.day, 9, tzinfo=UTC)
        monkeypatch.setattr(
            airflow.sdk, "get_current_context", lambda: {"dag_run": _Run(when), "params": {}}
        )
        return bool(dag.get_task("check_status").python_callable())

    yield run


def test_check_status_lets_an_active_campaign_through_and_skips_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_check_status: Any
) -> None:
    directory = copy_campaigns(tmp_path / "campaigns")
    for name, status in (("draft_one", "draft"), ("paused_one", "paused"), ("live_one", "active")):
        write_variant(directory, name, status=status)
    bag = parse_dags(directory)
    monkeypatch.setenv("OMNI_CAMPAIGNS_DIR", str(directory))
    live = load_campaign(directory / "live_one.yml")
    inside = live.start_date
    assert run_check_status(bag.dags["campaign_live_one"], inside) is True
    assert run_check_status(bag.dags["campaign_draft_one"], inside) is False
    assert run_check_status(bag.dags["campaign_paused_one"], inside) is False
    assert run_check_status(bag.dags["campaign_live_one"], date(2026, 1, 1)) is False  # before
    after = date(live.end_date.year + 1, 1, 1)
    assert run_check_status(bag.dags["campaign_live_one"], after) is False


def test_check_status_reads_the_file_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_check_status: Any
) -> None:
    """A campaign paused (or broken) after the DAG was parsed sends nothing."""
    directory = copy_campaigns(tmp_path / "campaigns")
    path = write_variant(directory, "live_one", status="active")
    bag = parse_dags(directory)
    monkeypatch.setenv("OMNI_CAMPAIGNS_DIR", str(directory))
    on = load_campaign(path).start_date
    dag = bag.dags["campaign_live_one"]
    assert run_check_status(dag, on) is True
    write_variant(directory, "live_one", status="paused")
    assert run_check_status(dag, on) is False
    write_variant(directory, "live_one", holdout_percent="80")
    assert run_check_status(dag, on) is False


def test_reason_to_skip_says_why() -> None:
    campaign = load_campaign(SHIPPED / f"{SOURCE}.yml")
    assert reason_to_skip(campaign, campaign.start_date) is None
    assert "starts on" in str(reason_to_skip(campaign, date(2020, 1, 1)))
    assert "ended on" in str(reason_to_skip(campaign, date(2100, 1, 1)))
    paused = campaign.model_copy(update={"status": "paused"})
    assert "status is paused" in str(reason_to_skip(paused, campaign.start_date))
    assert "missing or invalid" in str(reason_to_skip(None, campaign.start_date))


# --- a real Airflow run ---------------------------------------------------------------------


def _tiny_warehouse(path: Path, campaign_id: str) -> None:
    """Twenty customers with consent and their email contacts (one held out), so the checks
    pass (the holdout share is not checked on so few)."""
    import duckdb

    customers = [f"C{number:03d}" for number in range(20)]
    con = duckdb.connect(str(path))
    try:
        con.execute("create schema marts")
        con.execute("create schema activation")
        con.execute(
            "create table marts.dim_customers (customer_id varchar, email varchar, "
            "phone varchar, has_email_consent boolean, is_loyalty_member boolean, "
            "loyalty_account_id varchar)"
        )
        con.executemany(
            "insert into marts.dim_customers values (?, ?, null, true, false, null)",
            [[customer, f"{customer}@example.com"] for customer in customers],
        )
        columns = (
            "contact_id varchar, campaign_id varchar, customer_id varchar, trigger_key varchar, "
            "channel varchar, estimated_cost_eur double, is_holdout boolean"
        )
        for table in ("sync_email_audience", "sync_loyalty_cashback_audience"):
            con.execute(f"create table activation.{table} ({columns})")
        con.execute(
            f"create table activation.sync_store_offers_audience ({columns}, store_id varchar)"
        )
        con.executemany(
            "insert into activation.sync_email_audience values (?, ?, ?, ?, 'email', 2.5, ?)",
            [
                [
                    contact_id_for(campaign_id, customer, f"t-{customer}", "email"),
                    campaign_id,
                    customer,
                    f"t-{customer}",
                    index == 0,
                ]
                for index, customer in enumerate(customers)
            ],
        )
    finally:
        con.close()


@pytest.mark.slow
def test_dag_test_runs_an_active_campaign_and_skips_a_paused_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dag.test()`` through the real task runner: check_status -> check_audience (GX) ->
    hand_to_dispatch writes the outbox file; a paused campaign skips both tasks after it."""
    import os
    import subprocess
    import sys

    # dag.test() syncs the DAG through the dags-folder bundle: point it at dags/
    import airflow.settings

    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(settings.load().dags_dir))
    monkeypatch.setattr(airflow.settings, "DAGS_FOLDER", str(settings.load().dags_dir))
    migrate = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    directory = copy_campaigns(tmp_path / "campaigns")
    write_variant(directory, "live_one", status="active", start_date="2020-01-01")
    write_variant(directory, "paused_one", status="paused")
    home = tmp_path / "omni"
    home.mkdir()
    _tiny_warehouse(home / "warehouse.duckdb", "live_one")
    bag = parse_dags(directory)
    monkeypatch.setenv("OMNI_CAMPAIGNS_DIR", str(directory))
    monkeypatch.setenv("OMNI_HOME", str(home))

    with services.running(home / "world", names=("sendgrid", "loyalty", "store")) as urls:
        for name, url in urls.items():
            monkeypatch.setenv(f"OMNI_{name.upper()}_URL", url)
        run = bag.dags["campaign_live_one"].test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {
        **dict.fromkeys(
            (
                "check_status",
                "check_audience",
                "hand_to_dispatch",
                "prepare_dispatch",
                "plan_email",
                "plan_loyalty_cashback",
                "plan_in_store",
                "summarise",
            ),
            "success",
        ),
        # nothing left to send (below): the mapped tasks have no instance to run
        "send_email": "skipped",
        "send_loyalty_cashback": "skipped",
        "send_in_store": "skipped",
        "fail_if_a_task_failed": "skipped",
    }
    with Ledger.from_settings(settings.load()) as ledger:
        contacts = ledger.list_contacts(campaign_id="live_one")
        holdouts = ledger.export_holdouts("live_one")
    assert len(contacts) == 19 and len(holdouts) == 1
    # the fixture's contacts carry no offer: the offer check blocks them before any send
    assert {contact.state.value for contact in contacts} == {"suppressed"}
    assert all(str(contact.last_error).startswith("offer_mismatch") for contact in contacts)
    (handed,) = (home / "outbox" / "live_one").iterdir()
    import pandas as pd

    handed_rows = pd.read_parquet(handed)  # the 19 treated contacts and the held-out one
    assert (len(handed_rows), int(handed_rows["is_holdout"].sum())) == (20, 1)

    run = bag.dags["campaign_paused_one"].test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states.pop("check_status") == "success"
    assert "summarise" in states and "send_email" in states
    assert set(states.values()) == {"skipped"}  # the short-circuit skips everything after it
    assert not (home / "outbox" / "paused_one").exists()

"""The ``measurement`` DAG: wiring, schedule, pools, and the wait for the campaign runs.

(tests/dags parses every DAG file with databases and the network refused; the steps themselves
run against a real warehouse in test_customer_history.)
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestration import assets, settings, warehouse
from orchestration.campaigns import load_all
from orchestration.measurement.pipeline import busy_campaign_dags


@pytest.fixture(scope="module")
def dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    cfg = settings.load()
    bag = DagBag(dag_folder=str(cfg.dags_dir / "measurement.py"))
    assert bag.import_errors == {}
    return bag.dags["measurement"]


def test_runs_on_the_warehouse_asset_then_waits_for_the_campaigns(dag: Any) -> None:
    assert set(dag.timetable.asset_condition.objects) == {assets.WAREHOUSE}
    order = [
        "wait_for_campaign_runs",
        "poll_email_events",
        "load_dispatch",
        "build_measurement",
        "write_report",
    ]
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}
    sensor = dag.get_task("wait_for_campaign_runs")
    assert sensor.mode == "reschedule"


def test_every_task_that_opens_the_warehouse_holds_the_pool(dag: Any) -> None:
    for task_id in ("load_dispatch", "build_measurement", "write_report"):
        assert dag.get_task(task_id).pool == warehouse.WAREHOUSE_POOL, task_id


class RunCounts:
    """Stands in for the task instance's Airflow API client: runs per DAG in the asked states."""

    def __init__(self, running: dict[str, int]) -> None:
        self.running = running
        self.asked: list[tuple[str, tuple[str, ...]]] = []

    def get_dr_count(self, dag_id: str, states: list[str] | None = None, **_: Any) -> int:
        self.asked.append((dag_id, tuple(states or ())))
        return self.running.get(dag_id, 0)


def test_busy_campaign_dags_are_those_with_a_queued_or_running_run() -> None:
    cfg = settings.load()
    campaigns, _ = load_all(cfg.campaigns_dir)
    assert len(campaigns) >= 2
    first, second = (f"campaign_{campaign.id}" for campaign in campaigns[:2])
    counts = RunCounts({first: 1, "campaign_not_a_shipped_one": 3})
    assert busy_campaign_dags(counts, cfg) == [first]
    assert {dag_id for dag_id, _ in counts.asked} == {
        f"campaign_{campaign.id}" for campaign in campaigns
    }
    assert all(states == ("queued", "running") for _, states in counts.asked)
    assert busy_campaign_dags(RunCounts({}), cfg) == []
    assert second not in busy_campaign_dags(RunCounts({first: 2}), cfg)

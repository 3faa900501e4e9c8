"""The wiring of the ``campaign_<id>`` DAGs: one per valid campaign file in ``campaigns/``.

``dags/campaigns.py`` calls :func:`campaign_dags`; ``dags/campaign_files_check.py`` calls
:func:`raise_for_broken_files`, so every broken campaign file shows up as ONE import error (of
that file) naming file, line, field and what is allowed, while every valid campaign keeps its
DAG. At parse time only the YAML files are read (they are the configuration); no database, no
connection.

Each campaign DAG runs when ``warehouse_build`` publishes the ``WAREHOUSE`` asset (the
audiences are built by then):

1. ``check_status`` (short-circuit): the campaign file is read again, so a status changed since
   the DAG was parsed counts; a draft or paused campaign, or a run date outside its dates, skips
   everything downstream (the reason is in the log).
2. ``check_audience``: Great Expectations on the campaign's audience
   (:func:`orchestration.quality.activation.check_audience`): consent per channel, no duplicate
   contact, holdout share, cost under the budget cap. A failed rule fails the run at once (no
   retry: the data would not change), with a readable summary.
3. ``hand_to_dispatch``: unless ``dry_run``, the treated contacts go to the outbox
   (:func:`orchestration.campaigns.handoff.hand_to_dispatch`), once per run.
4. ``prepare_dispatch``: the outbox is recorded in the dispatch ledger, stale attempts are
   settled, provider events read, and every pending contact's offer checked
   (:func:`orchestration.dispatch.run.prepare`).
5. ``plan_<channel>`` -> ``send_<channel>``, per enabled channel: a mapped task, one instance
   per worker (none when nothing is due), each in its provider's pool
   (:data:`orchestration.dispatch.pools.PROVIDER_POOLS`) so concurrent campaigns respect the
   provider's rate limits. Workers claim from the ledger, never the same contact.
6. ``summarise`` (whatever happened upstream) logs where every contact of the campaign stands:
   sent, suppressed, failed, dead letters, unknown. ``fail_if_a_task_failed`` keeps the run
   failed when a task failed.

No task writes the DuckDB warehouse (the audience is read read-only), so none takes the
``warehouse`` pool.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, dag, task

from orchestration import assets
from orchestration.campaigns import Campaign, CampaignError, load_all
from orchestration.dag_factory import DEFAULT_ARGS
from orchestration.dispatch.pools import PROVIDER_POOLS
from orchestration.dispatch.states import Channel

log = logging.getLogger(__name__)

DAG_PREFIX = "campaign_"
START_DATE = datetime(2026, 1, 1)


class CampaignFilesInvalid(ValueError):
    """Some campaign files are broken; the message lists every problem (file, line, field)."""

    def __init__(self, directory: Path, errors: list[CampaignError]) -> None:
        self.errors = errors
        files = sorted({error.file.name for error in errors})
        lines = [
            f"{len(files)} broken campaign file(s) in {directory}: {', '.join(files)}. "
            "Their DAGs are not generated; every other campaign runs as usual. "
            "Check a file with `omni campaigns validate`."
        ]
        lines.extend(f"  {_shown(error, directory)}" for error in errors)
        super().__init__("\n".join(lines))


def _shown(error: CampaignError, directory: Path) -> str:
    try:
        shown = error.file.relative_to(directory)
    except ValueError:
        shown = error.file
    return str(CampaignError(shown, error.line, error.field, error.message, error.allowed))


def raise_for_broken_files(directory: Path) -> None:
    """Raise :class:`CampaignFilesInvalid` when any campaign file in ``directory`` is broken."""
    _, errors = load_all(directory)
    if errors:
        raise CampaignFilesInvalid(directory, errors)


# --- docs -----------------------------------------------------------------------------------


def _money(value: float) -> str:
    return f"{value:,.2f} EUR"


def describe_offer(campaign: Campaign) -> str:
    """The offer in words: what the customer gets, where, how long, under which budget."""
    offer = campaign.offer
    if offer.kind == "cashback_percent":
        what = f"{offer.value:g} % cashback"
        if offer.max_reward_eur is not None:
            what += f" (at most {_money(offer.max_reward_eur)} per customer)"
    elif offer.kind == "cashback_amount":
        what = f"{_money(offer.value)} cashback"
    elif offer.kind == "discount_code":
        what = f"{offer.value:g} % off with code `{offer.code}`"
    else:
        what = "free shipping" + (f" with code `{offer.code}`" if offer.code else "")
    where = "in stores only" if offer.valid_in == "store_only" else "everywhere"
    return (
        f"`{offer.id}` ({offer.kind}): {what}, valid {where} for {offer.validity_days} days; "
        f"budget cap {_money(offer.budget_cap_eur)}"
    )


def campaign_doc(campaign: Campaign) -> str:
    """The DAG's ``doc_md``: the campaign as a marketer and an engineer read it."""
    trigger = campaign.trigger.model_dump(exclude={"type"})
    parameters = ", ".join(f"{key}={value}" for key, value in trigger.items() if value is not None)
    source = campaign.source_path.name if campaign.source_path else f"{campaign.id}.yml"
    cooldown = getattr(campaign.re_entry, "cooldown_days", None)
    re_entry = campaign.re_entry.rule + (f" ({cooldown} days)" if cooldown else "")
    cap = (
        "exempt (transactional)"
        if campaign.transactional
        else (
            f"{campaign.frequency_cap_override} per 7 days (override)"
            if campaign.frequency_cap_override
            else "global"
        )
    )
    rows = [
        ("Campaign owner", campaign.owner),
        ("Status", campaign.status),
        ("Dates", f"{campaign.start_date} to {campaign.end_date}"),
        ("Trigger", f"`{campaign.trigger.type}`" + (f" ({parameters})" if parameters else "")),
        ("Offer", describe_offer(campaign)),
        ("Channels", ", ".join(campaign.enabled_channels)),
        ("Holdout", f"{campaign.holdout_percent:g} %"),
        ("Priority", str(campaign.priority)),
        ("Re-entry", re_entry),
        ("Frequency cap", cap),
        ("File", f"`campaigns/{source}`"),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    description = " ".join(campaign.description.split())
    return f"""# {campaign.name}

{description}

| | |
|---|---|
{table}

## What this DAG does
Runs when `warehouse_build` publishes the warehouse (the audiences are built by then).

1. `check_status`: a draft or paused campaign, or a run outside its dates, sends nothing
   (the rest of the run is skipped; the log says why). Pause the DAG to stop it for good, or
   set `status: paused` in the campaign file.
2. `check_audience`: Great Expectations on the audience: consent per channel, no duplicate
   contact, holdout share near {campaign.holdout_percent:g} %, cost under the budget cap.
3. `hand_to_dispatch`: the treated (non-holdout) contacts go to
   `OMNI_HOME/outbox/{campaign.id}/<run_id>.parquet` for dispatch, once per run. Trigger a run
   with `dry_run` on to check and count without handing anything off.
4. `prepare_dispatch`: the hand-off is recorded in the dispatch ledger (one row per intended
   contact before anything is sent); each pending contact's offer is checked against the
   campaign and the warehouse prices (a mismatch suppresses it, with the reason).
5. `send_<channel>` (mapped, one instance per worker, in the provider's pool):
   {", ".join(f"`send_{channel}`" for channel in campaign.enabled_channels)}.
6. `summarise`: the counts (sent, suppressed, failed, dead letters, unknown) end its log.

No task writes the warehouse (the audience is read read-only), so no task takes the
`warehouse` pool. The DAG owner is the data platform team; the campaign is owned by
{campaign.owner}.
"""


# --- run-time helpers (called inside tasks) -------------------------------------------------


def current_campaign(directory: Path, campaign_id: str) -> Campaign | None:
    """The campaign as its file says now (None when the file is gone or broken)."""
    campaigns, _ = load_all(directory)
    return next((campaign for campaign in campaigns if campaign.id == campaign_id), None)


def reason_to_skip(campaign: Campaign | None, on: date) -> str | None:
    """Why the campaign must send nothing on ``on`` (None: it may send)."""
    if campaign is None:
        return "the campaign file is missing or invalid now (see the campaign_files_check errors)"
    if campaign.status != "active":
        return f"status is {campaign.status}: only active campaigns send"
    if on < campaign.start_date:
        return f"the campaign starts on {campaign.start_date} (run date {on})"
    if on > campaign.end_date:
        return f"the campaign ended on {campaign.end_date} (run date {on})"
    return None


def _run_date(context: Any) -> date:
    """The run's date (UTC): when it was due to run, else its logical date, else today."""
    dag_run = context.get("dag_run")
    when = getattr(dag_run, "run_after", None) or context.get("logical_date")
    if when is None:
        return datetime.now(UTC).date()
    return when.astimezone(UTC).date() if when.tzinfo else when.date()


# --- the DAG --------------------------------------------------------------------------------


def campaign_dag(campaign: Campaign) -> DAG:
    """The ``campaign_<id>`` DAG of one valid campaign."""
    campaign_id = campaign.id

    @dag(
        dag_id=f"{DAG_PREFIX}{campaign_id}",
        dag_display_name=f"{DAG_PREFIX}{campaign_id} ({campaign.name})",
        schedule=[assets.WAREHOUSE],
        start_date=START_DATE,
        catchup=False,
        default_args=DEFAULT_ARGS,
        tags=["campaign", campaign.trigger.type, *campaign.enabled_channels],
        doc_md=campaign_doc(campaign),
        is_paused_upon_creation=campaign.status != "active",
        max_active_runs=1,
        params={
            "dry_run": Param(
                False,
                type="boolean",
                description="Check and count the audience, hand nothing to dispatch.",
            )
        },
    )
    def campaign_run() -> None:
        channels = list(campaign.enabled_channels)

        @task.short_circuit
        def check_status() -> bool:
            from airflow.sdk import get_current_context

            from orchestration import settings

            context = get_current_context()
            on = _run_date(context)
            found = current_campaign(settings.load().campaigns_dir, campaign_id)
            reason = reason_to_skip(found, on)
            if reason is not None:
                log.info("Campaign %s sends nothing in this run: %s", campaign_id, reason)
                return False
            log.info("Campaign %s is active on %s: checking its audience", campaign_id, on)
            return True

        @task
        def check_audience() -> dict[str, Any]:
            from airflow.sdk.exceptions import AirflowFailException

            from orchestration import settings
            from orchestration.quality.activation import ActivationCheckFailed
            from orchestration.quality.activation import check_audience as run_checks

            cfg = settings.load()
            found = current_campaign(cfg.campaigns_dir, campaign_id)
            if found is None:
                raise AirflowFailException(f"campaign file of {campaign_id} is missing or invalid")
            try:
                return run_checks(cfg, found)
            except ActivationCheckFailed as failed:
                raise AirflowFailException(str(failed)) from failed

        @task
        def hand_to_dispatch(checked: dict[str, Any]) -> dict[str, Any]:
            from airflow.sdk import get_current_context

            from orchestration import settings
            from orchestration.campaigns.handoff import hand_to_dispatch as hand_off

            context = get_current_context()
            dry_run = bool(context["params"].get("dry_run", False))
            return hand_off(
                settings.load(), campaign_id, str(context["run_id"]), checked, dry_run=dry_run
            )

        @task
        def prepare_dispatch(handed: dict[str, Any]) -> bool:
            from orchestration.dispatch import run

            if handed.get("dry_run"):
                log.info("Dry run: nothing to dispatch")
                return False
            run.prepare(dispatch_settings(), campaign_id=campaign_id)
            return True

        def plan(channel: str, prepared: bool) -> list[int]:
            if not prepared:
                return []
            return dispatch_workers(dispatch_settings(), campaign_id, channel)

        @task(trigger_rule="all_done")
        def summarise() -> dict[str, Any]:
            from orchestration.dispatch import run

            summary = run.summarize(dispatch_settings(), campaign_id=campaign_id, channels=channels)
            log.info("Campaign %s dispatch: %s", campaign_id, summary["summary"])
            return summary

        @task(trigger_rule="one_failed")
        def fail_if_a_task_failed() -> None:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(
                "a dispatch task failed (see its log); the counts are in `summarise`"
            )

        checked = check_audience()
        check_status() >> checked
        handed = hand_to_dispatch(checked)  # type: ignore[arg-type]  # an XComArg at parse time
        prepared = prepare_dispatch(handed)  # type: ignore[arg-type]
        plans, senders = [], []
        for channel in channels:
            workers = task(task_id=f"plan_{channel}")(plan)(channel, prepared)  # type: ignore[arg-type]
            plans.append(workers)
            senders.append(
                task(task_id=f"send_{channel}", pool=PROVIDER_POOLS[Channel(channel)].name)(
                    send_channel
                )
                .partial(channel=channel, campaign_id=campaign_id)
                .expand(worker=workers)
            )
        done = summarise()
        prepared >> done
        for sender in senders:
            sender >> done
        [handed, prepared, *plans, *senders] >> fail_if_a_task_failed()

    return campaign_run()


# --- dispatch (called inside tasks) ---------------------------------------------------------

# Contacts per worker of a channel; a channel gets at most its provider pool's slots.
CONTACTS_PER_WORKER = 1_000


def dispatch_settings() -> Any:
    """The settings, with the providers' endpoints and keys from Airflow connections."""
    from orchestration.connections import settings_with_connections

    return settings_with_connections(("sendgrid", "loyalty", "store"))


def dispatch_workers(cfg: Any, campaign_id: str, channel: str) -> list[int]:
    """The workers a channel gets in this run (one mapped ``send_<channel>`` task each): none
    when nothing is due, else one per ``CONTACTS_PER_WORKER`` waiting contacts, up to the
    provider pool's slots. Workers claim from the same ledger queue, never the same row."""
    from orchestration.dispatch import Ledger

    with Ledger.from_settings(cfg) as ledger:
        counts = ledger.counts(campaign_id=campaign_id, channel=channel)
    waiting = counts["pending"] + counts["failed"]
    slots = PROVIDER_POOLS[Channel(channel)].slots
    wanted = min(slots, -(-waiting // CONTACTS_PER_WORKER))
    log.info("%s: %s contacts waiting, %s worker(s)", channel, waiting, wanted)
    return list(range(wanted))


def send_channel(channel: str, campaign_id: str, worker: int) -> dict[str, int]:
    """One worker of one channel: send what is due for the campaign (the body of the mapped
    ``send_<channel>`` tasks)."""
    from orchestration.dispatch import run

    log.info("Worker %s of %s for campaign %s", worker, channel, campaign_id)
    return dict(run.dispatch_channel(dispatch_settings(), channel, campaign_id=campaign_id))


def campaign_dags(directory: Path) -> list[DAG]:
    """One DAG per valid campaign file of ``directory`` (broken files are left out here and
    reported by :func:`raise_for_broken_files`)."""
    campaigns, _ = load_all(directory)
    return [campaign_dag(campaign) for campaign in campaigns]


__all__ = [
    "DAG_PREFIX",
    "CampaignFilesInvalid",
    "campaign_dag",
    "campaign_dags",
    "campaign_doc",
    "current_campaign",
    "describe_offer",
    "raise_for_broken_files",
    "reason_to_skip",
]

"""Great Expectations checks on a campaign's audience, before anything is handed to dispatch.

``check_audience(cfg, campaign)`` is what each ``campaign_<id>`` DAG runs after dbt has built
the audiences. It reads this campaign's rows of the three outbound audiences
(``activation.sync_email_audience``, ``sync_loyalty_cashback_audience``,
``sync_store_offers_audience``) READ-ONLY into pandas (GX's SQL datasource on DuckDB is broken
upstream, as for the raw gate), with each contact's consent for its channel taken from
``marts.dim_customers`` the way the audience models define it (email: an address, email
consent, not unsubscribed or bounced; loyalty cashback: a loyalty account; in store: something
staff can recognise the customer by). Four rules, each a GX expectation:

- ``consent``: no contact to a customer without consent for the channel (nor to an unknown
  customer);
- ``duplicates``: no two contacts with the same (campaign, customer, trigger_key, channel);
- ``holdout_share``: the share of held-out decisions (one decision per customer and trigger
  occurrence) is within a binomial tolerance of ``holdout_percent`` (``HOLDOUT_Z`` standard
  deviations); skipped below ``MIN_HOLDOUT_SAMPLE`` decisions, where chance alone moves it
  (except with no holdout configured: then nobody may be held out);
- ``budget``: the estimated cost of the treated (non-holdout) decisions is at most the offer's
  ``budget_cap_eur``.

A failed rule raises :class:`ActivationCheckFailed` with a readable summary (the Airflow task
log) and the full summary dict. The summary (passed or not) is also written as JSON under
``cfg.quality_dir / "activation"``. The returned summary carries a ``fingerprint`` of the
checked contacts, so the hand-off can verify it sends exactly what was checked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from orchestration.campaigns.config import Campaign
from orchestration.settings import Settings

log = logging.getLogger(__name__)

AUDIENCE_TABLES: dict[str, str] = {
    "email": "sync_email_audience",
    "loyalty_cashback": "sync_loyalty_cashback_audience",
    "in_store": "sync_store_offers_audience",
}
SCHEMA = "activation"
CONTACT_KEY = ("campaign_id", "customer_id", "trigger_key", "channel")
REQUIRED_COLUMNS = (
    "contact_id",
    *CONTACT_KEY,
    "is_holdout",
    "estimated_cost_eur",
)
MIN_HOLDOUT_SAMPLE = 200  # fewer decisions than this: the holdout share is not checked
HOLDOUT_Z = 4.0  # standard deviations of the binomial share allowed (false alarm ~ 6e-5)
EXAMPLES = 3


class ActivationCheckFailed(RuntimeError):
    """The audience failed a check; ``str(error)`` is the readable summary, ``.summary`` all."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass
class CheckResult:
    """The outcome of one rule on one campaign's audience."""

    name: str
    passed: bool
    observed: str
    skipped: bool = False
    unexpected: int = 0
    examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- reading the audience (read-only) -------------------------------------------------------


def _consent_sql(has_blocks: bool) -> str:
    """Why a contact's channel is not allowed for the customer (null when it is)."""
    blocks_join = (
        f"left join {SCHEMA}.int_customer_channel_blocks as blocks "
        "on contacts.customer_id = blocks.customer_id and contacts.channel = blocks.channel"
        if has_blocks
        else ""
    )
    block_reason = "blocks.block_reason" if has_blocks else "cast(null as varchar)"
    return f"""
        select
            contacts.*,
            case
                when customers.customer_id is null then 'unknown_customer'
                when contacts.channel = 'email' and customers.email is null
                    then 'no_email_address'
                when contacts.channel = 'email' and not coalesce(customers.has_email_consent, false)
                    then 'no_email_consent'
                when contacts.channel = 'loyalty_cashback'
                    and not coalesce(customers.is_loyalty_member, false)
                    then 'not_loyalty_member'
                when contacts.channel = 'in_store' and customers.loyalty_account_id is null
                    and customers.phone is null and customers.email is null
                    then 'not_recognisable_in_store'
                when contacts.channel not in ('email', 'loyalty_cashback', 'in_store')
                    then 'unknown_channel'
                else {block_reason}
            end as consent_problem
        from contacts
        left join marts.dim_customers as customers
            on contacts.customer_id = customers.customer_id
        {blocks_join}
    """


def _existing_tables(con: Any) -> set[str]:
    rows = con.execute(
        "select table_schema || '.' || table_name from information_schema.tables"
    ).fetchall()
    return {str(row[0]) for row in rows}


def read_audience(cfg: Settings, campaign_id: str) -> pd.DataFrame:
    """This campaign's contacts of the three ``sync_`` audiences (holdout rows included), with
    ``consent_problem`` (null when the channel is allowed). Opens the warehouse read-only.

    Raises :class:`ActivationCheckFailed` when the warehouse or an audience is missing.
    """
    import duckdb

    if not cfg.warehouse_path.exists():
        raise ActivationCheckFailed(
            f"no warehouse at {cfg.warehouse_path}: the audiences were never built",
            {"campaign_id": campaign_id, "passed": False},
        )
    con = duckdb.connect(str(cfg.warehouse_path), read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        tables = _existing_tables(con)
        wanted = [f"{SCHEMA}.{name}" for name in AUDIENCE_TABLES.values()]
        missing = [name for name in [*wanted, "marts.dim_customers"] if name not in tables]
        if missing:
            raise ActivationCheckFailed(
                f"audience tables missing in the warehouse: {', '.join(missing)} "
                "(warehouse_build has not built the activation models)",
                {"campaign_id": campaign_id, "passed": False, "missing": missing},
            )
        union = "\n union all by name \n".join(
            f"select * from {name} where campaign_id = $campaign_id" for name in wanted
        )
        has_blocks = f"{SCHEMA}.int_customer_channel_blocks" in tables
        sql = f"with contacts as ({union})\n{_consent_sql(has_blocks)}\norder by contact_id"
        frame = con.execute(sql, {"campaign_id": campaign_id}).df()
    finally:
        con.close()
    absent = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if absent:
        raise ActivationCheckFailed(
            f"audience tables lack column(s) {', '.join(absent)}",
            {"campaign_id": campaign_id, "passed": False},
        )
    return frame


def decisions(contacts: pd.DataFrame) -> pd.DataFrame:
    """One row per decision (customer x trigger occurrence): holdout flag and offer cost.

    The cost is per decision (the offer is the same on every channel), so it is counted once.
    """
    frame = contacts.drop_duplicates(["customer_id", "trigger_key"])[
        ["customer_id", "trigger_key", "is_holdout", "estimated_cost_eur"]
    ].reset_index(drop=True)
    holdout = frame["is_holdout"].fillna(False).astype(bool)
    cost = pd.to_numeric(frame["estimated_cost_eur"], errors="coerce").fillna(0.0).astype(float)
    return pd.DataFrame(
        {
            "decision_id": frame["customer_id"].astype(str)
            + "|"
            + frame["trigger_key"].astype(str),
            "holdout": holdout.astype(float),
            "treated_cost_eur": cost.where(~holdout, 0.0),
        }
    )


def fingerprint(contacts: pd.DataFrame) -> str:
    """A short digest of the contact ids (and holdout flags): what exactly was checked."""
    if contacts.empty:
        return hashlib.sha256(b"").hexdigest()[:16]
    keys = contacts["contact_id"].astype(str) + ":" + contacts["is_holdout"].astype(str)
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


def holdout_tolerance(holdout_percent: float, decisions_count: int) -> float:
    """Allowed |share - expected| for ``decisions_count`` independent draws (binomial):
    ``HOLDOUT_Z`` standard deviations plus half a decision (continuity)."""
    expected = holdout_percent / 100
    deviation = math.sqrt(expected * (1 - expected) / decisions_count)
    return HOLDOUT_Z * deviation + 0.5 / decisions_count


# --- the GX validation ----------------------------------------------------------------------


class _Frames:
    """One ephemeral GX context with a pandas datasource; one asset per validated frame."""

    def __init__(self, campaign_id: str) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        from orchestration.quality.suites import _silence_gx_loggers

        self._gx = gx
        self._campaign_id = campaign_id
        _silence_gx_loggers()
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.datasource = self.context.data_sources.add_pandas("activation")

    def validate(self, name: str, frame: pd.DataFrame, expectations: list[Any]) -> list[Any]:
        """Validate ``frame`` against ``expectations``; GX's results, in the same order."""
        suite = self._gx.ExpectationSuite(name=f"activation.{self._campaign_id}.{name}")
        for expectation in expectations:
            suite.add_expectation(expectation)
        asset = self.datasource.add_dataframe_asset(name=name)
        batch = asset.add_batch_definition_whole_dataframe(name).get_batch(
            batch_parameters={"dataframe": frame}
        )
        index = "contact_id" if "contact_id" in frame.columns else "decision_id"
        result = batch.validate(
            suite,
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": [index],
                "return_unexpected_index_query": False,
            },
        )
        by_rule = {
            ((item.expectation_config.meta if item.expectation_config else None) or {}).get(
                "rule"
            ): item
            for item in result.results
        }
        return [by_rule[expectation.meta["rule"]] for expectation in expectations]


def _raised(item: Any) -> str | None:
    if item.exception_info.get("raised_exception"):
        return str(item.exception_info.get("exception_message", "error"))[:300]
    return None


def _unexpected_ids(item: Any, index: str) -> list[str]:
    return [str(row[index]) for row in (item.result.get("unexpected_index_list") or [])]


def _contact_examples(contacts: pd.DataFrame, ids: list[str], show: str) -> list[str]:
    chosen = contacts[contacts["contact_id"].astype(str).isin(ids[: EXAMPLES * 4])]
    examples = [
        f"{row.customer_id} on {row.channel}" + (f" ({getattr(row, show)})" if show else "")
        for row in chosen.itertuples()
    ]
    return list(dict.fromkeys(examples))[:EXAMPLES]


def _row_check(name: str, item: Any, contacts: pd.DataFrame, show: str, what: str) -> CheckResult:
    error = _raised(item)
    if error is not None:
        return CheckResult(name, False, f"GX could not evaluate the rule: {error}")
    ids = _unexpected_ids(item, "contact_id")
    count = int(item.result.get("unexpected_count") or len(ids))
    if item.success:
        return CheckResult(name, True, f"0 {what}")
    return CheckResult(
        name,
        False,
        f"{count:,} {what}",
        unexpected=count,
        examples=_contact_examples(contacts, ids, show),
    )


def _run_checks(campaign: Campaign, contacts: pd.DataFrame) -> list[CheckResult]:
    import great_expectations as gx

    expect = gx.expectations
    frames = _Frames(campaign.id)
    contact_results = frames.validate(
        "contacts",
        contacts[["contact_id", *CONTACT_KEY, "consent_problem"]].astype(object),
        [
            expect.ExpectColumnValuesToBeNull(column="consent_problem", meta={"rule": "consent"}),
            expect.ExpectCompoundColumnsToBeUnique(
                column_list=list(CONTACT_KEY), ignore_row_if="never", meta={"rule": "duplicates"}
            ),
        ],
    )
    checks = [
        _row_check(
            "consent",
            contact_results[0],
            contacts,
            "consent_problem",
            "contacts to customers without consent for the channel",
        ),
        _row_check(
            "duplicates",
            contact_results[1],
            contacts,
            "",
            "contacts repeating (campaign, customer, trigger_key, channel)",
        ),
    ]

    decided = decisions(contacts)
    count = len(decided)
    expected = campaign.holdout_percent / 100
    budget = float(campaign.offer.budget_cap_eur)
    decision_expectations: list[Any] = [
        expect.ExpectColumnSumToBeBetween(
            column="treated_cost_eur", min_value=0, max_value=budget, meta={"rule": "budget"}
        )
    ]
    tolerance = holdout_tolerance(campaign.holdout_percent, count)
    # No holdout configured: any held-out decision is wrong, whatever the audience size.
    check_holdout = count >= MIN_HOLDOUT_SAMPLE or expected == 0
    if check_holdout:
        decision_expectations.append(
            expect.ExpectColumnMeanToBeBetween(
                column="holdout",
                min_value=max(0.0, expected - tolerance),
                max_value=min(1.0, expected + tolerance),
                meta={"rule": "holdout_share"},
            )
        )
    decision_results = frames.validate("decisions", decided, decision_expectations)

    cost = float(decided["treated_cost_eur"].sum())
    budget_item = decision_results[0]
    error = _raised(budget_item)
    checks.append(
        CheckResult(
            "budget",
            bool(budget_item.success) and error is None,
            error
            or f"estimated cost {cost:,.2f} EUR of {count - int(decided['holdout'].sum()):,} "
            f"treated decisions against a budget cap of {budget:,.2f} EUR",
        )
    )
    share = float(decided["holdout"].mean()) if count else 0.0
    observed = f"holdout {share:.1%} of {count:,} decisions, configured {expected:.1%}" + (
        f" (tolerance +/-{tolerance:.1%})" if check_holdout else ""
    )
    if check_holdout:
        item = decision_results[1]
        error = _raised(item)
        checks.append(
            CheckResult("holdout_share", bool(item.success) and error is None, error or observed)
        )
    else:
        checks.append(
            CheckResult(
                "holdout_share",
                True,
                f"{observed}; not checked below {MIN_HOLDOUT_SAMPLE} decisions",
                skipped=True,
            )
        )
    return checks


# --- the entry point ------------------------------------------------------------------------


def _channel_counts(contacts: pd.DataFrame, holdout: bool) -> dict[str, int]:
    chosen = contacts[contacts["is_holdout"].fillna(False).astype(bool) == holdout]
    counts = chosen.groupby("channel").size()
    return {channel: int(counts.get(channel, 0)) for channel in AUDIENCE_TABLES}


def failure_message(summary: dict[str, Any]) -> str:
    """The readable summary of a failed check (what the Airflow task log shows)."""
    lines = [
        f"Activation checks FAILED for campaign {summary['campaign_id']} "
        f"({summary['contacts']:,} contacts, {summary['decisions']:,} decisions):"
    ]
    for check in summary["checks"]:
        if check["passed"]:
            continue
        examples = f", e.g. {'; '.join(check['examples'])}" if check["examples"] else ""
        lines.append(f"- {check['name']}: {check['observed']}{examples}")
    lines.append("Nothing was handed to dispatch for this run.")
    if summary.get("summary_path"):
        lines.append(f"Full summary: {summary['summary_path']}")
    return "\n".join(lines)


def pass_message(summary: dict[str, Any]) -> str:
    """One line per check of a passed audience."""
    lines = [
        f"Activation checks passed for campaign {summary['campaign_id']}: "
        f"{summary['contacts']:,} contacts, {summary['decisions']:,} decisions"
    ]
    lines.extend(
        f"- {check['name']}: {check['observed']}" + (" (skipped)" if check["skipped"] else "")
        for check in summary["checks"]
    )
    return "\n".join(lines)


def _write_summary(cfg: Settings, summary: dict[str, Any]) -> None:
    directory = cfg.quality_dir / "activation"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{summary['campaign_id']}-latest.json"
    summary["summary_path"] = str(path)
    path.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")


def check_audience(
    cfg: Settings, campaign: Campaign, contacts: pd.DataFrame | None = None
) -> dict[str, Any]:
    """Validate ``campaign``'s audience with GX; return the summary, or raise
    :class:`ActivationCheckFailed` (readable message) when a rule fails.

    ``contacts``: the frame of :func:`read_audience` when the caller already has it (default:
    read it, read-only). An empty audience passes with nothing checked (nothing to send).
    """
    from orchestration.quality.suites import quiet_gx

    if contacts is None:
        contacts = read_audience(cfg, campaign.id)
    summary: dict[str, Any] = {
        "campaign_id": campaign.id,
        "checked_at": datetime.now(UTC).isoformat(),
        "contacts": len(contacts),
        "decisions": int(contacts[["customer_id", "trigger_key"]].drop_duplicates().shape[0]),
        "treated_by_channel": _channel_counts(contacts, holdout=False),
        "holdout_by_channel": _channel_counts(contacts, holdout=True),
        "fingerprint": fingerprint(contacts),
    }
    if contacts.empty:
        summary.update(passed=True, checks=[])
        log.info("Campaign %s: empty audience, nothing to check or send", campaign.id)
        _write_summary(cfg, summary)
        return summary
    with quiet_gx():
        checks = _run_checks(campaign, contacts)
    summary["checks"] = [check.as_dict() for check in checks]
    summary["passed"] = all(check.passed for check in checks)
    _write_summary(cfg, summary)
    if not summary["passed"]:
        raise ActivationCheckFailed(failure_message(summary), summary)
    log.info("%s", pass_message(summary))
    return summary


__all__ = [
    "AUDIENCE_TABLES",
    "ActivationCheckFailed",
    "CheckResult",
    "check_audience",
    "decisions",
    "fingerprint",
    "holdout_tolerance",
    "read_audience",
]

"""The `omni` command: one entry point for engineers and marketers.

Commands that read the warehouse (report, customer, campaigns preview, dispatch run) hold the
warehouse reader lock while they read, and the writers (dbt, ingest, quality) the writer
lock (:mod:`orchestration.warehouse`): a reader during a build waits for it with a message
instead of breaking it, and a second build waits for the first.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from orchestration import settings as settings_module


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """Hold the warehouse reader lock (waits, with a message, while a writer is at work)."""
    from orchestration import warehouse

    with warehouse.reading(settings_module.load(), what):
        yield


def _print(result: object) -> None:
    print(json.dumps(result, indent=2, default=str))


def _sandbox_generate(args: argparse.Namespace) -> int:
    from orchestration.sandbox import world

    cfg = settings_module.load()
    end = date.fromisoformat(args.end_date) if args.end_date else None
    _print(world.generate(cfg.world_dir, args.customers, args.days, args.seed, end_date=end))
    return 0


def _sandbox_advance(args: argparse.Namespace) -> int:
    from orchestration.sandbox import services, world

    cfg = settings_module.load()
    _print(
        world.advance(
            cfg.world_dir,
            args.days,
            sandbox_dir=cfg.sandbox_dir,  # the closed loop: what the write APIs delivered
            campaigns_dir=cfg.campaigns_dir,
        )
    )
    services.reload_if_running(cfg)
    return 0


def _sandbox_inbox(args: argparse.Namespace) -> int:
    from orchestration.sandbox.services.inbox import write_inbox

    print(f"file://{write_inbox(settings_module.load())}")
    return 0


def _sandbox_up(args: argparse.Namespace) -> int:
    from orchestration.sandbox import services

    cfg = settings_module.load()
    _print(services.up(cfg, foreground=args.foreground))
    return 0


def _sandbox_down(args: argparse.Namespace) -> int:
    from orchestration.sandbox import services

    _print(services.down(settings_module.load()))
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from orchestration.sources import IngestError, ingest

    try:
        _print(ingest(args.source))
    except IngestError as error:
        print(f"ingest {args.source} failed: {error}", file=sys.stderr)
        return 1
    return 0


def _quality(args: argparse.Namespace) -> int:
    from orchestration.quality import QualityGateFailed, check_raw

    try:
        _print(check_raw())
    except QualityGateFailed as failure:
        print(failure, file=sys.stderr)
        return 1
    return 0


def _campaigns_validate(args: argparse.Namespace) -> int:
    from orchestration.campaigns import load_all
    from orchestration.campaigns.loader import format_report

    campaigns, errors = load_all(settings_module.load().campaigns_dir)
    print(format_report(campaigns, errors), file=sys.stderr if errors else sys.stdout)
    return 1 if errors else 0


def _campaigns_preview(args: argparse.Namespace) -> int:
    from orchestration.campaigns.preview import PreviewError, preview

    try:
        with _reading("omni campaigns preview"):
            result = preview(settings_module.load(), args.campaign_id, args.customer, args.out)
    except PreviewError as error:
        print(f"preview failed: {error}", file=sys.stderr)
        return 1
    _print(result)
    return 0


def _dbt(args: argparse.Namespace) -> int:
    import subprocess

    from orchestration import warehouse

    try:
        warehouse.dbt(settings_module.load(), *args.dbt_args)
    except subprocess.CalledProcessError as failed:
        return failed.returncode or 1  # dbt printed why
    return 0


def _airflow(args: argparse.Namespace) -> int:
    from orchestration import airflow_local
    from orchestration.sandbox import services

    cfg = settings_module.load()
    if args.init_only:
        airflow_local.init(cfg)
        return 0
    services.up(cfg)
    try:
        return airflow_local.standalone(cfg)
    finally:
        services.down(cfg)


def _demo(args: argparse.Namespace) -> int:
    from orchestration import demo

    demo.run(settings_module.load(), args.customers, args.days, args.seed)
    return 0


def _predict(args: argparse.Namespace) -> int:
    import logging

    from orchestration.predictions import PredictionError, PredictionsUnavailable, predict

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        result = predict(settings_module.load())
    except (PredictionError, PredictionsUnavailable) as error:
        print(f"predict failed: {error}", file=sys.stderr)
        return 1
    _print(result)
    return 0


def _customer(args: argparse.Namespace) -> int:
    from orchestration.measurement.customer import (
        CustomerHistoryError,
        UnknownCustomer,
        customer_history,
        format_history,
    )

    try:
        with _reading("omni customer"):
            history = customer_history(settings_module.load(), args.customer_id)
    except UnknownCustomer as error:
        print(error, file=sys.stderr)
        return 2
    except CustomerHistoryError as error:
        print(f"customer history failed: {error}", file=sys.stderr)
        return 1
    if args.json:
        _print(history)
    else:
        print(format_history(history))
    return 0


def _report(args: argparse.Namespace) -> int:
    from orchestration.measurement.report import ReportError, write_report

    try:
        with _reading("omni report"):
            path = write_report(settings_module.load(), args.out)
    except ReportError as error:
        print(f"report failed: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _dispatch_run(args: argparse.Namespace) -> int:
    import logging
    from datetime import timedelta

    from orchestration.dispatch.run import dispatch

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with _reading("omni dispatch run"):
        result = dispatch(
            settings_module.load(),
            campaign_id=args.campaign,
            channels=args.channel or None,
            stale_after=timedelta(seconds=args.stale_after),
            limit=args.limit,
        )
    _print(result)
    errors = result["prepare"]["handoffs"]["errors"]
    for error in errors:
        print(f"hand-off not recorded: {error}", file=sys.stderr)
    if result["staff_sheets_error"]:
        print(f"staff sheets not written: {result['staff_sheets_error']}", file=sys.stderr)
    print(result["summary"])
    return 1 if errors or result["staff_sheets_error"] else 0


def _dispatch_retry(args: argparse.Namespace) -> int:
    from orchestration.dispatch.run import requeue

    result = requeue(
        settings_module.load(),
        campaign_id=args.campaign,
        channel=args.channel,
        reason=args.reason,
        dry_run=args.dry_run,
    )
    for reason, count in sorted(result["by_reason"].items(), key=lambda item: -item[1]):
        print(f"{count:>8}  {reason}")
    if args.dry_run:
        print(f"{result['dead_letters']} dead letters would be requeued (dry run)")
    else:
        print(f"{result['requeued']} dead letters requeued: the next dispatch run sends them")
    return 0


def _dispatch_status(args: argparse.Namespace) -> int:
    from orchestration.dispatch.run import status

    rows = status(settings_module.load(), campaign_id=args.campaign)
    for row in rows:
        print(
            f"{row['campaign_id']:<32} {row['channel']:<17} {row['state']:<14} {row['contacts']:>8}"
        )
    if not rows:
        print("the dispatch ledger is empty")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omni", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sandbox = commands.add_parser("sandbox", help="the simulated retail world and its APIs")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", required=True)

    generate = sandbox_commands.add_parser("generate", help="generate a seeded retail world")
    generate.add_argument("--customers", type=int, default=5_000)
    generate.add_argument("--days", type=int, default=90)
    generate.add_argument("--seed", type=int, default=42)
    generate.add_argument("--end-date", help="the simulated today, YYYY-MM-DD (default: today)")
    generate.set_defaults(handler=_sandbox_generate)

    advance = sandbox_commands.add_parser("advance", help="append the next days of activity")
    advance.add_argument("--days", type=int, default=1)
    advance.set_defaults(handler=_sandbox_advance)

    up = sandbox_commands.add_parser("up", help="start the sandbox services on loopback")
    up.add_argument("--foreground", action="store_true", help="serve in this process")
    up.set_defaults(handler=_sandbox_up)

    inbox = sandbox_commands.add_parser(
        "inbox", help="write the emails the sandbox SendGrid accepted as HTML pages"
    )
    inbox.set_defaults(handler=_sandbox_inbox)
    down = sandbox_commands.add_parser("down", help="stop the sandbox services")
    down.set_defaults(handler=_sandbox_down)

    ingest = commands.add_parser("ingest", help="pull one source into its raw schema (dlt)")
    ingest.add_argument("source", choices=["shop", "pos", "social"])
    ingest.set_defaults(handler=_ingest)

    quality = commands.add_parser("quality", help="run the quality gate on new raw rows")
    quality.set_defaults(handler=_quality)

    campaigns = commands.add_parser("campaigns", help="marketers: check and preview campaigns")
    campaign_commands = campaigns.add_subparsers(dest="campaigns_command", required=True)
    validate = campaign_commands.add_parser("validate", help="check every campaign file")
    validate.set_defaults(handler=_campaigns_validate)
    preview = campaign_commands.add_parser(
        "preview", help="render a campaign for a real customer, with audience and cost"
    )
    preview.add_argument("campaign_id")
    preview.add_argument("--customer", help="customer_id (default: one from the audience)")
    preview.add_argument("--out", type=Path, help="write email.html, email.txt, ... here")
    preview.set_defaults(handler=_campaigns_preview)

    dbt = commands.add_parser("dbt", help="run dbt on the project, e.g. `omni dbt build`")
    dbt.add_argument("dbt_args", nargs=argparse.REMAINDER)
    dbt.set_defaults(handler=_dbt)

    airflow = commands.add_parser("airflow", help="serve the Airflow UI with the sandbox up")
    airflow.add_argument(
        "--init-only",
        action="store_true",
        help="only prepare the metadata DB, pool and connections (docker-compose uses this)",
    )
    airflow.set_defaults(handler=_airflow)

    demo = commands.add_parser("demo", help="run the pipeline end to end on a generated world")
    demo.add_argument("--customers", type=int, default=5_000)
    demo.add_argument("--days", type=int, default=90)
    demo.add_argument("--seed", type=int, default=42)
    demo.set_defaults(handler=_demo)

    predict = commands.add_parser(
        "predict",
        help="score every customer (p_alive, purchases and value in 90 days) after dbt build",
    )
    predict.set_defaults(handler=_predict)

    customer = commands.add_parser(
        "customer", help="one customer's whole history across channels, in time order"
    )
    customer.add_argument("customer_id", help="the unified customer id (dim_customers)")
    customer.add_argument("--json", action="store_true", help="print the history as JSON")
    customer.set_defaults(handler=_customer)

    report = commands.add_parser(
        "report", help="write the measurement report (HTML) under OMNI_HOME/reports"
    )
    report.add_argument("--out", type=Path, help="write the report here instead")
    report.set_defaults(handler=_report)

    dispatch = commands.add_parser("dispatch", help="send the handed-off contacts (ledger first)")
    dispatch_commands = dispatch.add_subparsers(dest="dispatch_command", required=True)
    run = dispatch_commands.add_parser(
        "run", help="record the outbox, check offers, send every channel, print the counts"
    )
    run.add_argument("--campaign", help="only this campaign's contacts")
    run.add_argument(
        "--channel",
        action="append",
        choices=["email", "loyalty_cashback", "in_store"],
        help="only this channel (repeatable; default: all)",
    )
    run.add_argument(
        "--stale-after",
        type=float,
        default=600,
        help="seconds after which a contact left in 'sending' by a crashed run is recovered",
    )
    run.add_argument("--limit", type=int, help="at most this many contacts per channel")
    run.set_defaults(handler=_dispatch_run)
    retry = dispatch_commands.add_parser(
        "retry",
        help="requeue dead letters (by campaign, channel, reason); the next run sends them",
    )
    retry.add_argument("--campaign", help="only this campaign's dead letters")
    retry.add_argument(
        "--channel", choices=["email", "loyalty_cashback", "in_store"], help="only this channel"
    )
    retry.add_argument("--reason", help="only dead letters whose reason contains this text")
    retry.add_argument(
        "--dry-run", action="store_true", help="list what would be requeued, change nothing"
    )
    retry.set_defaults(handler=_dispatch_retry)
    dispatch_status = dispatch_commands.add_parser(
        "status", help="ledger contacts per campaign, channel and state"
    )
    dispatch_status.add_argument("--campaign", help="only this campaign")
    dispatch_status.set_defaults(handler=_dispatch_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from orchestration.warehouse import WarehouseBusy

    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except WarehouseBusy as busy:  # waited long enough for another reader or writer
        print(busy, file=sys.stderr)
        return 75  # EX_TEMPFAIL: try again later


if __name__ == "__main__":
    sys.exit(main())

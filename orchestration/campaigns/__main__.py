"""Validate and preview campaign files without the warehouse.

    python -m orchestration.campaigns validate [--dir campaigns/]
    python -m orchestration.campaigns preview ID [--out DIR] [--date YYYY-MM-DD]

``preview`` renders every channel with the example customer and trigger data of the
campaign's trigger (:func:`example_context`); ``omni campaigns preview`` does the same for a
real customer from the warehouse.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from orchestration.campaigns.loader import format_report, load_all
from orchestration.campaigns.templating import RenderError, example_context, render_contact


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.campaigns")
    parser.add_argument("--dir", type=Path, default=None, help="default: campaigns/")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("validate", help="check every campaign file; exit 1 on any error")
    preview = commands.add_parser("preview", help="render a campaign with example data")
    preview.add_argument("campaign_id")
    preview.add_argument("--out", type=Path, default=None, help="write the channels here")
    preview.add_argument("--date", type=date.fromisoformat, default=None, help="send date")
    args = parser.parse_args(argv)
    if args.dir is None:
        from orchestration import settings

        args.dir = settings.load().campaigns_dir
    campaigns, errors = load_all(args.dir)
    if args.command == "validate":
        print(format_report(campaigns, errors), file=sys.stderr if errors else sys.stdout)
        return 1 if errors else 0
    by_id = {campaign.id: campaign for campaign in campaigns}
    if args.campaign_id not in by_id:
        print(format_report(campaigns, errors), file=sys.stderr)
        print(f"no valid campaign with id {args.campaign_id!r}", file=sys.stderr)
        return 1
    campaign = by_id[args.campaign_id]
    customer, extra = example_context(campaign.trigger.type)
    try:
        contact = render_contact(campaign, customer, extra, today=args.date)
    except RenderError as error:
        print(f"preview failed: {error}", file=sys.stderr)
        return 1
    if args.out is not None:
        for path in contact.write_files(args.out):
            print(f"wrote {path}")
        return 0
    for title, body in (
        ("SUBJECT", contact.subject),
        ("PREHEADER", contact.preheader),
        ("TEXT", contact.text),
        ("LOYALTY CASHBACK LINE", contact.cashback_line),
        ("STORE STAFF CARD", contact.staff_card),
    ):
        if body is not None:
            print(f"--- {title}\n{body.rstrip()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `omni` command: one entry point for engineers and marketers."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import date

from orchestration import settings as settings_module


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
    _print(world.advance(cfg.world_dir, args.days))
    services.reload_if_running(cfg)
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

    down = sandbox_commands.add_parser("down", help="stop the sandbox services")
    down.set_defaults(handler=_sandbox_down)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = args.handler
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the world simulator: seconds, rows and peak memory per world size.

Each size runs `world.generate` in a fresh child process (so the peak resident memory of
that run alone is measured, from the child's own rusage) into a temporary folder that is
removed afterwards. Run it with ``python -m orchestration.bench.generation [N ...]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from orchestration.bench.measure import run_measured

END_DATE = date(2026, 11, 22)


def _child(customers: int, days: int, seed: int, world_dir: Path) -> dict[str, Any]:
    from orchestration.sandbox import world

    summary = world.generate(world_dir, customers, days, seed, end_date=END_DATE)
    size = sum(path.stat().st_size for path in world_dir.glob("*/part-*.parquet"))
    return {
        "seconds": summary["seconds"],
        "rows": summary["rows"],
        "stores": summary["stores"],
        "parquet_mib": round(size / 2**20, 1),
    }


def run_one(customers: int, days: int = 90, seed: int = 42) -> dict[str, Any]:
    """Generate one world in a child process; its seconds, rows and peak memory."""
    with tempfile.TemporaryDirectory(prefix="omni-bench-") as tmp:
        command = [
            sys.executable, "-m", "orchestration.bench.generation", "--child",
            "--customers", str(customers), "--days", str(days), "--seed", str(seed),
            "--world-dir", str(Path(tmp) / "world"),
        ]  # fmt: skip
        measured = run_measured(command)
        result = json.loads(measured.stdout)
    rows = result.pop("rows")
    return {
        "customers": customers,
        "days": days,
        **result,
        "wall_seconds": measured.seconds,
        "total_rows": sum(rows.values()),
        "cpu_seconds": measured.cpu_seconds,  # less sensitive to load
        "peak_mib": measured.peak_mib,
        "rows": rows,
    }


def run(
    customers_list: Sequence[int] = (100_000, 1_000_000), days: int = 90, seed: int = 42
) -> list[dict[str, Any]]:
    """Benchmark every size in turn; prints one JSON line per size and returns the results."""
    results = []
    for customers in customers_list:
        result = run_one(customers, days, seed)
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sizes", nargs="*", type=int, default=[100_000, 1_000_000])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--customers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--world-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.customers, args.days, args.seed, args.world_dir)))
        return 0
    run(args.sizes, args.days, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the pipeline on a large world: ingest, quality gate and dbt build per stage.

A world is generated in a temporary OMNI_HOME, the sandbox services start, then every stage
runs as its own `omni` child process so its time and peak memory are its own. The same stages
run a second time after `omni sandbox advance --days 1` to measure the daily incremental run.
Run it with ``python -m orchestration.bench.pipeline [--customers N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestration import settings, warehouse
from orchestration.bench.measure import run_measured

SOURCES = ("shop", "pos", "social")
MODEL_LAYERS = ("staging", "intermediate", "marts")


def _omni(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("omni")), *args]


def _stage(name: str, command: list[str], env: dict[str, str], rows_of: Any) -> dict[str, Any]:
    measured = run_measured(command, env)
    rows = int(rows_of(measured.stdout))
    result = {
        "stage": name,
        "seconds": measured.seconds,
        "rows": rows,
        "rows_per_second": round(rows / measured.seconds) if measured.seconds else None,
        "peak_mib": measured.peak_mib,
    }
    print(json.dumps(result), flush=True)
    return result


def _ingested_rows(stdout: str) -> int:
    return sum(json.loads(stdout)["rows"].values())


_COUNT_MODEL_ROWS = f"""
from orchestration import settings, warehouse
counts = warehouse.layer_counts(settings.load())
print(sum(sum(counts.get(layer, {{}}).values()) for layer in {MODEL_LAYERS!r}))
"""


def _model_rows(env: dict[str, str]) -> int:
    """Rows in the model layers, counted in a child: a child process forked from a large parent
    inherits the parent's peak memory figure on Linux, so this process stays small."""
    return int(run_measured([sys.executable, "-c", _COUNT_MODEL_ROWS], env).stdout)


def _run_stages(label: str, env: dict[str, str]) -> list[dict[str, Any]]:
    stages = [
        _stage(f"{label} ingest {source}", _omni("ingest", source), env, _ingested_rows)
        for source in SOURCES
    ]
    stages.append(
        _stage(
            f"{label} quality gate",
            _omni("quality"),
            env,
            lambda out: json.loads(out)["rows_checked"],
        )
    )
    stages.append(
        _stage(f"{label} dbt build", _omni("dbt", "build"), env, lambda _: _model_rows(env))
    )
    return stages


def run(customers: int = 100_000, days: int = 90, seed: int = 42) -> list[dict[str, Any]]:
    from orchestration.sandbox import services

    with tempfile.TemporaryDirectory(prefix="omni-bench-pipeline-") as tmp:
        home = Path(tmp)
        env = {**os.environ, "OMNI_HOME": str(home)}
        os.environ["OMNI_HOME"] = str(home)
        cfg = settings.load()
        results = [
            _stage(
                "generate world",
                _omni("sandbox", "generate", "--customers", str(customers), "--days", str(days),
                      "--seed", str(seed)),
                env,
                lambda out: sum(json.loads(out)["rows"].values()),
            )
        ]  # fmt: skip
        warehouse.ensure_manifest(cfg)
        services.up(cfg)
        try:
            results += _run_stages("backfill", env)
            run_measured(_omni("sandbox", "advance", "--days", "1"), env)
            results += _run_stages("daily", env)
        finally:
            services.down(cfg)
    total = {
        "stage": "total (ingest + quality + build, backfill and daily)",
        "seconds": round(sum(r["seconds"] for r in results[1:]), 1),
        "peak_mib": max(r["peak_mib"] for r in results[1:]),
    }
    print(json.dumps(total), flush=True)
    return [*results, total]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.bench.pipeline")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args(argv)
    run(args.customers, args.days)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Backtest of the predictive lifecycle on the simulated world, through the warehouse.

A 90-day world is ingested; dbt builds the marts as of day 60 (var ``as_of_date``), so the
lifecycle stage and the recency score are those a marketer saw that day; the model is fitted
on the orders of days 1..60 and predicts purchases in the next 30 days. dbt then builds the
orders again without the cut and the purchases of days 61..90 are counted. Printed: the AUC of
"who buys again" for the model, the stage and the recency score side by side, calibration by
decile, and the cost of ``omni predict`` (seconds, peak memory) as a child process.
Run it with ``python -m orchestration.bench.predictions [--customers N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from orchestration import settings, warehouse
from orchestration.bench.measure import run_measured
from orchestration.predictions import backtest, run

CALIBRATION_DAYS = 60


def _orders_after(cfg: settings.Settings, cut: date, horizon_days: int) -> pd.Series:
    """Purchase days per customer in (cut, cut + horizon]."""
    import duckdb

    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        return (
            con.execute(
                "select customer_id, count(distinct cast(ordered_at as date)) as purchases "
                "from marts.fct_orders where customer_id is not null "
                "and cast(ordered_at as date) > ? and cast(ordered_at as date) <= ? "
                "group by 1",
                [cut, cut + timedelta(days=horizon_days)],
            )
            .df()
            .set_index("customer_id")["purchases"]
        )


def _stages(cfg: settings.Settings) -> pd.DataFrame:
    import duckdb

    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        return con.execute(
            "select customer_id, lifecycle_stage, recency_score from marts.dim_customers"
        ).df()


def backtest_warehouse(
    cfg: settings.Settings, start: date, end: date, calibration_days: int = CALIBRATION_DAYS
) -> dict[str, Any]:
    """On an ingested world: marts as of the cut, fit, then the truth after it (see module)."""
    cut = start + timedelta(days=calibration_days - 1)
    horizon = (end - cut).days
    cut_vars = json.dumps({"as_of_date": cut.isoformat()})
    warehouse.dbt(
        cfg, "--quiet", "run", "--select", "+dim_customers", "+fct_orders", "--vars", cut_vars
    )
    as_of, customers, orders = run.read_history(cfg)
    if as_of != cut:
        raise RuntimeError(f"the marts are as of {as_of}, not the cut {cut}")
    table, fit = run.score(as_of, customers, orders, cfg, horizon_days=horizon)
    scored = table.to_pandas()
    scored = scored.loc[scored["prediction_status"] == "predicted"]
    frame = scored.merge(_stages(cfg), on="customer_id", how="left")
    warehouse.dbt(cfg, "--quiet", "run", "--select", "+fct_orders", "--full-refresh")
    actual = _orders_after(cfg, cut, horizon)
    frame = frame.assign(
        actual_purchases=frame["customer_id"].map(actual).fillna(0),
        expected_purchases=frame["expected_purchases_90d"],  # here: over the horizon
    )
    result = backtest.evaluate(frame)
    return {
        "cut": cut.isoformat(),
        "horizon_days": horizon,
        "fit_seconds": fit["seconds"],
        "parameters": fit["parameters"],
        **result,
    }


def run_backtest(customers: int = 5_000, days: int = 90, seed: int = 42) -> dict[str, Any]:
    from orchestration.sandbox import services, world
    from orchestration.sources import ingest

    cache = str(settings.load().compile_cache_dir)  # keep the caller's compile cache
    with tempfile.TemporaryDirectory(prefix="omni-bench-predictions-") as tmp:
        home = Path(tmp)
        os.environ["OMNI_HOME"] = str(home)
        os.environ["OMNI_COMPILE_CACHE"] = cache
        env = {**os.environ}
        cfg = settings.load()
        meta = world.generate(cfg.world_dir, customers, days, seed)
        warehouse.ensure_manifest(cfg)
        with services.running(cfg.world_dir) as urls:
            for source in ("shop", "pos", "social"):
                ingest(source, base_url=urls[source], cfg=cfg)
        start, end = date.fromisoformat(meta["start_date"]), date.fromisoformat(meta["end_date"])
        result = backtest_warehouse(cfg, start, end)
        # The production step as it runs in the DAG (90-day horizon, on the full marts), as a
        # child process: its own seconds and peak memory, import included.
        warehouse.dbt(cfg, "--quiet", "run", "--select", "+dim_customers")
        measured = run_measured([str(Path(sys.executable).with_name("omni")), "predict"], env)
    result["omni_predict"] = {
        "customers": customers,
        "seconds": measured.seconds,
        "cpu_seconds": measured.cpu_seconds,
        "peak_mib": measured.peak_mib,
        "model_seconds": json.loads(measured.stdout)["seconds"],
    }
    return result


def _print_table(result: dict[str, Any]) -> None:
    auc = result["auc"]
    print(
        f"# backtest: fit on orders to {result['cut']}, compare the next "
        f"{result['horizon_days']} days; {result['customers']} customers with orders, "
        f"{result['bought_again']} bought again"
    )
    print("# AUC (who buys again):")
    for name in ("lifecycle_stage", "recency_score", "model_expected_purchases", "model_p_alive"):
        print(f"#   {name:<26} {auc.get(name, float('nan')):.3f}")
    print(
        f"# purchases predicted {result['predicted_purchases']} vs actual "
        f"{result['actual_purchases']}; by decile of the prediction (predicted / actual):"
    )
    for row in result["calibration"]:
        print(f"#   {row['decile']:>2}: {row['mean_predicted']:.2f} / {row['mean_actual']:.2f}")
    for key, label in (("by_stage", "lifecycle_stage"), ("by_recency_score", "recency_score")):
        print(f"# by {label} (customers, bought again, actual / predicted purchases):")
        for row in result.get(key, []):
            print(
                f"#   {row[label]!s:<16} {row['customers']:>6} {row['bought_again']:.2f} "
                f"{row['mean_actual']:.2f} / {row['mean_predicted']:.2f}"
            )


def run_and_print(customers: int = 5_000, days: int = 90, seed: int = 42) -> dict[str, Any]:
    result = run_backtest(customers, days, seed)
    print(json.dumps({"benchmark": "predictions backtest", **result}), flush=True)
    _print_table(result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.bench.predictions")
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    run_and_print(args.customers, args.days, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())

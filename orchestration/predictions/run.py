"""Score every customer of the warehouse and write ``predictions.customer_predictions``.

Runs after the marts are built (task ``predict`` of ``warehouse_build``, ``omni predict``):

1. reads, read-only, ``marts.dim_customers`` (every customer and the warehouse's as-of date)
   and ``marts.fct_orders`` (web and store orders of unified customers, up to that date);
2. fits the model (:mod:`orchestration.predictions.model`) on the customers with orders;
3. replaces ``predictions.customer_predictions`` in one short DuckDB write transaction: one
   row per customer of ``dim_customers``. A customer without an order, or every customer when
   the history is too short to fit, gets a row with null scores and the reason in
   ``prediction_status``; nothing is silently missing.

The dbt source ``predictions.customer_predictions`` (``stg_predictions__customer_predictions``)
lets models read it; campaign audiences filter on ``p_alive``.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import pyarrow as pa

from orchestration.predictions import model
from orchestration.settings import Settings

log = logging.getLogger(__name__)

SCHEMA = "predictions"
TABLE = "customer_predictions"

TABLE_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("as_of_date", pa.date32()),
        ("prediction_status", pa.string()),  # predicted | no_orders | not_enough_history
        ("p_alive", pa.float64()),
        ("expected_purchases_90d", pa.float64()),
        ("predicted_value_90d", pa.float64()),
        ("repeat_purchase_days", pa.int64()),  # the model's inputs, for the curious
        ("days_first_to_last_purchase", pa.int64()),
        ("days_since_first_purchase", pa.int64()),
        ("model_name", pa.string()),
        ("fitted_at", pa.timestamp("us")),
    ]
)


class PredictionsUnavailable(RuntimeError):
    """The warehouse has no customer marts to score yet."""


def read_history(cfg: Settings) -> tuple[date, pd.DataFrame, pd.DataFrame]:
    """(as-of date, every customer id, their orders up to that date) from the marts."""
    import duckdb

    if not cfg.warehouse_path.exists():
        raise PredictionsUnavailable(f"no warehouse at {cfg.warehouse_path}: build it first")
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        found = {
            name
            for (name,) in con.execute(
                "select table_name from information_schema.tables "
                "where table_schema = 'marts' and table_name in ('dim_customers', 'fct_orders')"
            ).fetchall()
        }
        if found != {"dim_customers", "fct_orders"}:
            raise PredictionsUnavailable(
                "the warehouse has no marts.dim_customers / marts.fct_orders yet: run dbt build"
            )
        row = con.execute("select max(as_of_date) from marts.dim_customers").fetchone()
        if row is None or row[0] is None:
            raise PredictionsUnavailable("marts.dim_customers is empty: nobody to score")
        as_of: date = row[0]
        customers = con.execute(
            "select customer_id from marts.dim_customers order by customer_id"
        ).df()
        orders = con.execute(
            "select customer_id, cast(ordered_at as date) as order_date, "
            "cast(total_amount as double) as amount "
            "from marts.fct_orders "
            "where customer_id is not null and cast(ordered_at as date) <= ?",
            [as_of],
        ).df()
    return as_of, customers, orders


def score(
    as_of: date,
    customers: pd.DataFrame,
    orders: pd.DataFrame,
    cfg: Settings,
    horizon_days: int = model.HORIZON_DAYS,
) -> tuple[pa.Table, dict[str, Any]]:
    """One row per customer (``TABLE_SCHEMA``) and a summary of the fit."""
    summary = model.summarise(orders, as_of)
    fit = model.fit_predict(summary, horizon_days, cache_dir=cfg.compile_cache_dir)
    fitted_at = datetime.now(UTC).replace(tzinfo=None)
    frame = customers[["customer_id"]].merge(summary, on="customer_id", how="left")
    frame = frame.merge(fit.predictions, on="customer_id", how="left")
    if fit.skipped_reason is None:
        status = frame["p_alive"].notna().map({True: "predicted", False: "no_orders"})
    else:
        status = frame["frequency"].notna().map({True: "not_enough_history", False: "no_orders"})
    table = pa.table(
        {
            "customer_id": frame["customer_id"].astype(str),
            "as_of_date": [as_of] * len(frame),
            "prediction_status": status,
            "p_alive": _floats(frame["p_alive"]),
            "expected_purchases_90d": _floats(frame["expected_purchases"]),
            "predicted_value_90d": _floats(frame["predicted_value"]),
            "repeat_purchase_days": _ints(frame["frequency"]),
            "days_first_to_last_purchase": _ints(frame["recency"]),
            "days_since_first_purchase": _ints(frame["T"]),
            "model_name": [model.MODEL_NAME] * len(frame),
            "fitted_at": [fitted_at] * len(frame),
        },
        schema=TABLE_SCHEMA,
    )
    result = {
        "as_of_date": as_of.isoformat(),
        "customers": len(frame),
        "predicted": int((status == "predicted").sum()),
        "no_orders": int((status == "no_orders").sum()),
        "not_enough_history": int((status == "not_enough_history").sum()),
        "model": model.MODEL_NAME,
        "parameters": {name: round(value, 6) for name, value in fit.parameters.items()},
        "seconds": fit.seconds,
    }
    if fit.skipped_reason:
        result["skipped_reason"] = fit.skipped_reason
    return table, result


def _floats(values: pd.Series) -> pa.Array:
    return pa.array(values.astype(float).tolist(), type=pa.float64(), from_pandas=True)


def _ints(values: pd.Series) -> pa.Array:
    return pa.array([None if pd.isna(value) else int(value) for value in values], type=pa.int64())


def write(cfg: Settings, table: pa.Table) -> None:
    """Replace ``predictions.customer_predictions`` in one transaction; close the file."""
    import duckdb

    con = duckdb.connect(str(cfg.warehouse_path))
    try:
        con.execute("begin transaction")
        try:
            con.execute(f"create schema if not exists {SCHEMA}")
            con.register("incoming_predictions", table)
            con.execute(
                f"create or replace table {SCHEMA}.{TABLE} as select * from incoming_predictions"
            )
            con.unregister("incoming_predictions")
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    finally:
        con.close()


def predict(cfg: Settings, horizon_days: int = model.HORIZON_DAYS) -> dict[str, Any]:
    """Read the marts, fit, write the predictions table; return what happened (counts,
    parameters, seconds). Holds the DuckDB write lock only for the final replace."""
    started = time.perf_counter()
    as_of, customers, orders = read_history(cfg)
    table, result = score(as_of, customers, orders, cfg, horizon_days)
    write(cfg, table)
    result["seconds"] = {**result["seconds"], "total": round(time.perf_counter() - started, 3)}
    if "skipped_reason" in result:
        log.warning("No predictions as of %s: %s", as_of, result["skipped_reason"])
    log.info("Wrote %s.%s: %s", SCHEMA, TABLE, result)
    return result


__all__ = ["SCHEMA", "TABLE", "TABLE_SCHEMA", "PredictionsUnavailable", "predict", "score"]

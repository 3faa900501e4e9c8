"""The buy-till-you-die model: Pareto/NBD for purchases and survival, Gamma-Gamma for spend.

Input: one row per order (``customer_id``, ``order_date``, ``amount``), web and store alike
(the warehouse's ``marts.fct_orders`` of unified customers). Orders of one customer on one day
are one transaction (the models count purchase days). Per customer with at least one order up
to the as-of date, the classic summary (days):

- ``frequency``: repeat purchase days (purchase days - 1);
- ``recency``: days from the first to the last purchase day;
- ``T``: days from the first purchase day to the as-of date;
- ``monetary_value``: mean spend of the repeat purchase days (0 without a repeat).

Both models are fitted by maximum a posteriori (pymc-marketing's ``method="map"``: one
optimisation, no sampling) and give, per customer: the probability of still being a customer
(``p_alive``), the expected purchase days in the next ``horizon_days`` and that number times
the expected spend per purchase (``predicted_value``). docs/decisions.md says why this model
and what it costs.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MODEL_NAME = "pareto_nbd+gamma_gamma (pymc-marketing, MAP)"
HORIZON_DAYS = 90
# Fewer buyers (or repeat buyers) than this: no model is fitted and no customer is scored.
MIN_BUYERS = 20
MIN_REPEAT_BUYERS = 5


class PredictionError(RuntimeError):
    """The model could not be fitted or gave values outside their range."""


@dataclass
class Fit:
    """What one fit produced: per-customer predictions and how it went."""

    predictions: pd.DataFrame  # customer_id, p_alive, expected_purchases, predicted_value
    parameters: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    skipped_reason: str | None = None  # set when there was too little history to fit


def summarise(orders: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """One row per customer with an order on or before ``as_of`` (see the module docstring).

    ``orders`` has ``customer_id``, ``order_date`` (date) and ``amount``; later orders are
    ignored, so a history can be cut at any date (the backtest does).
    """
    columns = ["customer_id", "frequency", "recency", "T", "monetary_value"]
    dates = pd.to_datetime(orders["order_date"])
    known = orders.assign(order_day=dates).loc[dates <= pd.Timestamp(as_of)]
    if known.empty:
        return pd.DataFrame(columns=columns)
    days = (
        known.groupby(["customer_id", "order_day"], as_index=False)["amount"]
        .sum()
        .sort_values(["customer_id", "order_day"])
    )
    days["is_repeat"] = days.duplicated("customer_id")
    per_customer = days.groupby("customer_id")
    first = per_customer["order_day"].min()
    last = per_customer["order_day"].max()
    repeats = days.loc[days["is_repeat"]].groupby("customer_id")["amount"]
    summary = pd.DataFrame(
        {
            "frequency": per_customer.size() - 1,
            "recency": (last - first).dt.days,
            "T": (pd.Timestamp(as_of) - first).dt.days,
            "monetary_value": repeats.mean(),
        }
    )
    summary["monetary_value"] = summary["monetary_value"].fillna(0.0)
    summary = summary.rename_axis("customer_id").reset_index()
    for name in ("frequency", "recency", "T", "monetary_value"):
        summary[name] = summary[name].astype(float)
    return summary[columns]


def prepare_pytensor(cache_dir: Path) -> None:
    """Point pytensor's compile cache at ``cache_dir`` (read once, when pytensor is imported).

    The first fit in a fresh cache compiles C code for minutes; later fits reuse it.
    """
    if "pytensor" in sys.modules:
        return  # already imported in this process: its cache is set for good
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    if "base_compiledir" not in flags:
        cache_dir.mkdir(parents=True, exist_ok=True)
        os.environ["PYTENSOR_FLAGS"] = ",".join(
            part for part in (flags, f"base_compiledir={cache_dir}") if part
        )


def fit_predict(
    summary: pd.DataFrame, horizon_days: int = HORIZON_DAYS, *, cache_dir: Path | None = None
) -> Fit:
    """Fit both models on ``summary`` (from :func:`summarise`) and score every customer in it."""
    empty = pd.DataFrame(
        columns=["customer_id", "p_alive", "expected_purchases", "predicted_value"]
    )
    buyers = len(summary)
    repeat_buyers = int((summary["frequency"] > 0).sum()) if buyers else 0
    if buyers < MIN_BUYERS or repeat_buyers < MIN_REPEAT_BUYERS:
        reason = (
            f"{buyers} customers with orders and {repeat_buyers} with a repeat purchase; "
            f"the model needs at least {MIN_BUYERS} and {MIN_REPEAT_BUYERS}"
        )
        return Fit(empty, skipped_reason=reason)
    if cache_dir is not None:
        prepare_pytensor(cache_dir)
    try:
        with warnings.catch_warnings():  # arviz's refactor notice, pytensor's BLAS notice
            warnings.simplefilter("ignore")
            purchases, spend, scores, seconds = _fit(summary, horizon_days)
    except Exception as error:  # the libraries raise many kinds; keep the cause
        raise PredictionError(f"the model could not be fitted: {error}") from error
    p_alive, expected, per_purchase = scores
    p_alive = np.clip(p_alive, 0.0, 1.0)  # 1 + 1e-15 from floating point
    parameters = {
        **_parameters(purchases, ("r", "alpha", "s", "beta")),
        **_parameters(spend, ("p", "q", "v")),
    }
    predictions = pd.DataFrame(
        {
            "customer_id": summary["customer_id"].to_numpy(),
            "p_alive": p_alive,
            "expected_purchases": expected,
            "predicted_value": expected * per_purchase,
        }
    )
    _check(predictions, parameters)
    return Fit(predictions, parameters, {name: round(value, 3) for name, value in seconds.items()})


def _fit(
    summary: pd.DataFrame, horizon_days: int
) -> tuple[Any, Any, tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, float]]:
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    from pymc_marketing.clv import GammaGammaModel, ParetoNBDModel

    seconds["import"] = time.perf_counter() - started

    started = time.perf_counter()
    purchases = ParetoNBDModel()  # the library's priors: see docs/decisions.md
    purchases.fit(
        summary[["customer_id", "frequency", "recency", "T"]], method="map", progressbar=False
    )
    seconds["fit_purchases"] = time.perf_counter() - started

    started = time.perf_counter()
    spenders = summary.loc[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    spend = GammaGammaModel()
    spend.fit(
        spenders[["customer_id", "frequency", "monetary_value"]], method="map", progressbar=False
    )
    seconds["fit_spend"] = time.perf_counter() - started

    started = time.perf_counter()
    data = summary[["customer_id", "frequency", "recency", "T", "monetary_value"]]
    order = summary["customer_id"]
    scores = (
        _point(purchases.expected_probability_alive(data=data), order),
        _point(purchases.expected_purchases(data=data, future_t=horizon_days), order),
        _point(spend.expected_customer_spend(data=data), order),
    )
    seconds["predict"] = time.perf_counter() - started
    return purchases, spend, scores, seconds


def _point(values: Any, order: pd.Series) -> np.ndarray:
    """The MAP estimate per customer (one chain of one draw), in the order of ``order``
    (xarray may sort the customers)."""
    series = values.mean(("chain", "draw")).to_series()
    return np.asarray(series.reindex(order.to_numpy()).to_numpy(), dtype=float)


def _parameters(model: Any, names: tuple[str, ...]) -> dict[str, float]:
    posterior = model.idata.posterior
    return {name: float(posterior[name].mean()) for name in names if name in posterior}


def _check(predictions: pd.DataFrame, parameters: dict[str, float]) -> None:
    """Refuse a fit whose numbers cannot be right (a failed optimisation, not bad luck)."""
    problems = []
    if not all(np.isfinite(value) and value > 0 for value in parameters.values()):
        problems.append(f"parameters {parameters}")
    p_alive = predictions["p_alive"]
    if not p_alive.between(0, 1).all():
        problems.append("p_alive outside [0, 1]")
    for name in ("expected_purchases", "predicted_value"):
        values = predictions[name]
        if not (np.isfinite(values).all() and (values >= 0).all()):
            problems.append(f"{name} negative or not finite")
    if problems:
        raise PredictionError("the fitted model gives impossible values: " + "; ".join(problems))


__all__ = [
    "HORIZON_DAYS",
    "MODEL_NAME",
    "Fit",
    "PredictionError",
    "fit_predict",
    "prepare_pytensor",
    "summarise",
]

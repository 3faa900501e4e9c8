"""The predictive lifecycle model on the simulated world's own orders (no warehouse needed).

The world's persons are the unified customers the warehouse should find; their web orders and
identified store sales are the history. The model is fitted on days 1..60 and must rank the
persons who buy again in days 61..90 above those who do not, and count their purchases in
the right order of magnitude. The warehouse path (marts -> predictions table -> audiences) is
tested in tests/campaigns/test_activation_audiences.py; the side-by-side with the lifecycle
stage and the recency score is `make bench` (orchestration/bench/predictions.py).

The first fit in a fresh pytensor compile cache compiles C code (about 1-2 minutes on two
cores); later sessions reuse OMNI_COMPILE_CACHE (tests/conftest.py: `.omni/pytensor`).
"""

from __future__ import annotations

from datetime import date, timedelta
from itertools import product

import pandas as pd
import pytest

from orchestration import settings
from orchestration.predictions import backtest, model

from .world_orders import world_orders

CUSTOMERS = 800
DAYS = 90
SEED = 31
END_DATE = date(2026, 11, 20)
CALIBRATION_DAYS = 60


def test_summary_counts_purchase_days_and_ignores_later_orders() -> None:
    orders = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b", "c"],
            "order_date": [
                date(2026, 1, 1),
                date(2026, 1, 1),  # same day: one purchase
                date(2026, 1, 11),
                date(2026, 2, 1),  # after the as-of date
                date(2026, 1, 5),
                date(2026, 2, 1),  # only after the as-of date: not a customer yet
            ],
            "amount": [10.0, 20.0, 50.0, 99.0, 7.0, 5.0],
        }
    )
    summary = model.summarise(orders, date(2026, 1, 21)).set_index("customer_id")
    assert list(summary.index) == ["a", "b"]
    assert summary.loc["a"].to_dict() == {
        "frequency": 1.0,
        "recency": 10.0,
        "T": 20.0,
        "monetary_value": 50.0,  # repeat purchases only
    }
    assert summary.loc["b"].to_dict() == {
        "frequency": 0.0,
        "recency": 0.0,
        "T": 16.0,
        "monetary_value": 0.0,
    }


def test_auc_is_the_share_of_correctly_ordered_pairs() -> None:
    scores = [0.9, 0.2, 0.5, 0.5, 0.1, 0.7, 0.5]
    labels = [True, False, True, False, False, True, True]
    pairs = [
        1.0 if high > low else 0.5 if high == low else 0.0
        for (high, is_positive), (low, is_negative) in product(
            zip(scores, labels, strict=True), repeat=2
        )
        if is_positive and not is_negative
    ]
    assert backtest.auc(scores, labels) == pytest.approx(sum(pairs) / len(pairs))
    assert backtest.auc([1, 2, 3], [False, True, True]) == 1.0
    assert backtest.auc([1, 1, 1], [False, True, True]) == 0.5
    with pytest.raises(ValueError):
        backtest.auc([1, 2], [True, True])


def test_calibration_groups_by_predicted_and_averages() -> None:
    rows = backtest.calibration_by_decile([4, 1, 3, 2], [8, 2, 6, 0], bins=2)
    assert rows == [
        {"decile": 1, "customers": 2, "mean_predicted": 1.5, "mean_actual": 1.0},
        {"decile": 2, "customers": 2, "mean_predicted": 3.5, "mean_actual": 7.0},
    ]


def test_too_little_history_scores_nobody() -> None:
    summary = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "frequency": [1.0, 0.0],
            "recency": [3.0, 0.0],
            "T": [9.0, 4.0],
            "monetary_value": [20.0, 0.0],
        }
    )
    fit = model.fit_predict(summary)
    assert fit.predictions.empty
    assert fit.skipped_reason is not None and "at least" in fit.skipped_reason


@pytest.fixture(scope="module")
def backtested(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from orchestration.sandbox import world

    world_dir = tmp_path_factory.mktemp("predictions") / "world"
    meta = world.generate(world_dir, CUSTOMERS, DAYS, SEED, end_date=END_DATE)
    start = date.fromisoformat(meta["start_date"])
    cut = start + timedelta(days=CALIBRATION_DAYS - 1)
    horizon = (END_DATE - cut).days
    orders = world_orders(world_dir)
    summary = model.summarise(orders, cut)
    fit = model.fit_predict(summary, horizon, cache_dir=settings.load().compile_cache_dir)
    after = orders.loc[(orders["order_date"] > cut) & (orders["order_date"] <= END_DATE)]
    actual = after.drop_duplicates(["customer_id", "order_date"]).groupby("customer_id").size()
    frame = fit.predictions.assign(
        actual_purchases=fit.predictions["customer_id"].map(actual).fillna(0)
    )
    days_since_last = (summary["T"] - summary["recency"]).to_numpy()
    return {
        "fit": fit,
        "result": backtest.evaluate(frame),
        "recency_auc": backtest.auc(-days_since_last, frame["actual_purchases"] > 0),
    }


def test_model_ranks_who_buys_again_above_who_does_not(backtested: dict[str, object]) -> None:
    result = backtested["result"]
    assert isinstance(result, dict)
    auc = result["auc"]
    print(auc, "days since last order:", backtested["recency_auc"])
    assert result["customers"] > 200 and 0 < result["bought_again"] < result["customers"]
    assert auc["model_expected_purchases"] > 0.62, auc
    assert auc["model_p_alive"] > 0.58, auc


def test_model_counts_purchases_in_the_right_order(backtested: dict[str, object]) -> None:
    """Predicted purchase days within a factor 1.5 of what happened, overall, and the top
    decile of the prediction buys more than the bottom one."""
    result = backtested["result"]
    assert isinstance(result, dict)
    ratio = result["predicted_purchases"] / result["actual_purchases"]
    assert 1 / 1.5 < ratio < 1.5, result
    calibration = result["calibration"]
    assert calibration[-1]["mean_actual"] > 2 * calibration[0]["mean_actual"], calibration
    fit = backtested["fit"]
    assert isinstance(fit, model.Fit)
    assert set(fit.parameters) == {"r", "alpha", "s", "beta", "p", "q", "v"}
    predictions = fit.predictions
    assert predictions["p_alive"].between(0, 1).all()
    assert (predictions["predicted_value"] >= 0).all()

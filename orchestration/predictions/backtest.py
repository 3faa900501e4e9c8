"""How well a score ranks and counts who buys again: AUC and calibration by decile.

A backtest cuts the order history at a date, fits on what came before and compares with what
came after (``orchestration/bench/predictions.py`` runs it on the simulated world, through the
warehouse). Plain numpy: the AUC is the Mann-Whitney statistic with tied scores counted half.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

# The lifecycle stage as a score: the stages' order of "still buying" (docs/lifecycle.md).
STAGE_ORDER = {
    "loyalty": 4,
    "retention": 3,
    "experimentation": 2,
    "recovery": 1,
    "acquisition": 0,
}


def auc(scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    values = np.asarray(scores, dtype=float)
    positive = np.asarray(labels, dtype=bool)
    n_positive, n_negative = int(positive.sum()), int((~positive).sum())
    if n_positive == 0 or n_negative == 0:
        raise ValueError("AUC needs at least one customer who bought again and one who did not")
    ranks = pd.Series(values).rank(method="average").to_numpy()
    rank_sum = float(ranks[positive].sum())
    return (rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)


def calibration_by_decile(
    predicted: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, bins: int = 10
) -> list[dict[str, Any]]:
    """Customers in ``bins`` groups of equal size by predicted purchases (lowest first): the
    mean predicted and the mean actual purchases of each group."""
    frame = pd.DataFrame({"predicted": predicted, "actual": actual}).sort_values(
        "predicted", kind="stable"
    )
    groups = np.array_split(np.arange(len(frame)), bins)
    rows = []
    for decile, positions in enumerate(groups, start=1):
        if len(positions) == 0:
            continue
        part = frame.iloc[positions]
        rows.append(
            {
                "decile": decile,
                "customers": len(part),
                "mean_predicted": round(float(part["predicted"].mean()), 3),
                "mean_actual": round(float(part["actual"].mean()), 3),
            }
        )
    return rows


def by_group(frame: pd.DataFrame, group: str) -> list[dict[str, Any]]:
    """Per value of ``group`` (a stage, a recency score): customers, share who bought again,
    mean actual purchases and the model's mean predicted purchases."""
    rows = []
    for value, part in frame.groupby(group, dropna=False, sort=True):
        rows.append(
            {
                group: _plain(value),
                "customers": len(part),
                "bought_again": round(float(part["bought_again"].mean()), 3),
                "mean_actual": round(float(part["actual_purchases"].mean()), 3),
                "mean_predicted": round(float(part["expected_purchases"].mean()), 3),
            }
        )
    return rows


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value (JSON-ready); missing as None."""
    if pd.isna(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def evaluate(frame: pd.DataFrame) -> dict[str, Any]:
    """AUC of each score and calibration, from one row per customer scored at the cut:
    ``actual_purchases`` (purchase days after the cut), ``expected_purchases``, ``p_alive``,
    and when known ``lifecycle_stage`` and ``recency_score`` (as of the cut)."""
    frame = frame.assign(bought_again=frame["actual_purchases"] > 0)
    labels = frame["bought_again"].to_numpy()
    scores: dict[str, float] = {
        "model_expected_purchases": auc(frame["expected_purchases"], labels),
        "model_p_alive": auc(frame["p_alive"], labels),
    }
    result: dict[str, Any] = {
        "customers": len(frame),
        "bought_again": int(labels.sum()),
        "predicted_purchases": round(float(frame["expected_purchases"].sum()), 1),
        "actual_purchases": int(frame["actual_purchases"].sum()),
    }
    if "lifecycle_stage" in frame:
        stage_score = frame["lifecycle_stage"].map(STAGE_ORDER).fillna(-1)
        scores["lifecycle_stage"] = auc(stage_score, labels)
        result["by_stage"] = by_group(frame, "lifecycle_stage")
    if "recency_score" in frame:
        scores["recency_score"] = auc(frame["recency_score"].fillna(0), labels)
        result["by_recency_score"] = by_group(frame, "recency_score")
    result["auc"] = {name: round(value, 3) for name, value in scores.items()}
    result["calibration"] = calibration_by_decile(
        frame["expected_purchases"], frame["actual_purchases"]
    )
    return result


__all__ = ["STAGE_ORDER", "auc", "by_group", "calibration_by_decile", "evaluate"]

"""Predictive lifecycle: who is still a customer, how much they will buy, and what it is worth.

A buy-till-you-die model (Pareto/NBD with Gamma-Gamma spend, pymc-marketing, fitted by maximum
a posteriori) on the warehouse's order history; the scores land in
``predictions.customer_predictions`` for campaign audiences (``audience.min_p_alive`` /
``max_p_alive``), ``omni customer`` and the report. ``omni predict`` runs it; the
``warehouse_build`` DAG runs it after the marts and before the audiences.
"""

from orchestration.predictions.model import HORIZON_DAYS, MODEL_NAME, PredictionError
from orchestration.predictions.run import PredictionsUnavailable, predict

__all__ = ["HORIZON_DAYS", "MODEL_NAME", "PredictionError", "PredictionsUnavailable", "predict"]

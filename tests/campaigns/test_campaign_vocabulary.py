"""The words campaigns may use are the words the warehouse writes."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from orchestration.campaigns.vocabulary import LIFECYCLE_STAGES, SEGMENTS, VALUE_BANDS
from orchestration.settings import REPO_ROOT

MARTS_YAML = REPO_ROOT / "dbt_project" / "models" / "marts" / "_marts__models.yml"


def _accepted_values(model: str, column: str) -> list[str] | None:
    document: dict[str, Any] = yaml.safe_load(MARTS_YAML.read_text(encoding="utf-8"))
    for entry in document.get("models", []):
        if entry.get("name") != model:
            continue
        for col in entry.get("columns", []):
            if col.get("name") != column:
                continue
            for test in col.get("data_tests", []):
                if isinstance(test, dict) and "accepted_values" in test:
                    spec = test["accepted_values"]
                    values = spec.get("arguments", spec).get("values")
                    return [str(value) for value in values]
    return None


@pytest.mark.parametrize(
    ("column", "vocabulary"),
    [("lifecycle_stage", LIFECYCLE_STAGES), ("rfm_segment", SEGMENTS)],
)
def test_vocabulary_matches_dim_customers(column: str, vocabulary: tuple[str, ...]) -> None:
    accepted = _accepted_values("dim_customers", column)
    assert accepted is not None, f"dim_customers.{column} has no accepted_values test"
    assert sorted(accepted) == sorted(vocabulary)


def test_value_bands_match_once_the_warehouse_has_them() -> None:
    accepted = _accepted_values("dim_customers", "value_band")
    if accepted is None:
        pytest.skip("dim_customers has no value_band column yet")
    assert sorted(accepted) == sorted(VALUE_BANDS)

"""The words campaigns and the warehouse share.

Lifecycle stages, RFM segments and value bands are named here once. The dbt marts
(`dim_customers.lifecycle_stage`, `rfm_segment`, and a value band) use exactly these values
(a test compares them with the `accepted_values` of `dim_customers`). A campaign file may only
name values listed here, so a typo in a YAML file is a validation error instead of an
audience that silently matches nobody.
"""

from __future__ import annotations

from enum import StrEnum


class LifecycleStage(StrEnum):
    """The customer lifecycle of the product brief (seed 000): one stage per customer."""

    ACQUISITION = "acquisition"
    EXPERIMENTATION = "experimentation"
    LOYALTY = "loyalty"
    RETENTION = "retention"
    RECOVERY = "recovery"


class Segment(StrEnum):
    """RFM segments (recency, frequency, monetary quintile scores), as ``dim_customers.rfm_segment``
    computes them in ``int_customer_lifecycle``."""

    CHAMPIONS = "champions"
    LOYAL = "loyal"
    PROMISING = "promising"
    AT_RISK = "at_risk"
    HIBERNATING = "hibernating"
    NEEDS_ATTENTION = "needs_attention"
    NO_PURCHASE = "no_purchase"


class ValueBand(StrEnum):
    """Customer value bands by spend. ``dim_customers`` has no ``value_band`` column yet; the
    audience SQL must expose one with exactly these values."""

    LOW = "low"
    MID = "mid"
    HIGH = "high"


LIFECYCLE_STAGES: tuple[str, ...] = tuple(stage.value for stage in LifecycleStage)
SEGMENTS: tuple[str, ...] = tuple(segment.value for segment in Segment)
VALUE_BANDS: tuple[str, ...] = tuple(band.value for band in ValueBand)

"""The words campaigns and the warehouse share.

Lifecycle stages, RFM segments and value bands are named here once. The dbt marts
(`dim_customers.lifecycle_stage`, its RFM segment and value band) must use exactly these
values; a campaign file may only name values listed here, so a typo in a YAML file is a
validation error instead of an audience that silently matches nobody.
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
    """RFM segments (recency, frequency, monetary), coarse enough for marketers to target."""

    CHAMPIONS = "champions"
    LOYAL = "loyal"
    POTENTIAL_LOYALIST = "potential_loyalist"
    NEW = "new"
    AT_RISK = "at_risk"
    HIBERNATING = "hibernating"
    LOST = "lost"


class ValueBand(StrEnum):
    """Customer value bands (terciles of spend in the warehouse)."""

    LOW = "low"
    MID = "mid"
    HIGH = "high"


LIFECYCLE_STAGES: tuple[str, ...] = tuple(stage.value for stage in LifecycleStage)
SEGMENTS: tuple[str, ...] = tuple(segment.value for segment in Segment)
VALUE_BANDS: tuple[str, ...] = tuple(band.value for band in ValueBand)

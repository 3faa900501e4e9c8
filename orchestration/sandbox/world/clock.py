"""Simulated time: days, local clocks and UTC microseconds.

All timestamps inside the simulator are int64 microseconds since the Unix epoch (UTC).
Local times (store opening hours, when people browse) are turned into UTC with the day's
offset of three zones: Europe/Madrid, Atlantic/Canary and Europe/Lisbon (the index of a
zone in `ZONES` is its code in the arrays).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from orchestration.sandbox.world.reference import CANARY, LISBON, MADRID

ZONES: tuple[str, ...] = (MADRID, CANARY, LISBON)
SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def day_start_us(day: date) -> int:
    """Midnight UTC of `day` in microseconds."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * SECOND


def clock_end_us(end_date: date) -> int:
    """The last microsecond of the simulated today (`end_date` 23:59:59.999999 UTC)."""
    return day_start_us(end_date + timedelta(days=1)) - 1


def zone_offsets_us(day: date) -> np.ndarray:
    """UTC offset of each zone at noon of `day`, microseconds (index = zone code)."""
    noon = datetime(day.year, day.month, day.day, 12)
    offsets = []
    for zone in ZONES:
        delta = noon.replace(tzinfo=ZoneInfo(zone)).utcoffset()
        offsets.append(int(delta.total_seconds()) * SECOND if delta else 0)
    return np.array(offsets, dtype=np.int64)


def local_to_utc(day: date, local_us: np.ndarray, zone: np.ndarray) -> np.ndarray:
    """UTC microseconds of local times (microseconds after local midnight of `day`)."""
    return day_start_us(day) + local_us.astype(np.int64) - zone_offsets_us(day)[zone]


def season_factor(day: date) -> float:
    """Demand multiplier for the retail calendar: Black Friday week, Christmas, sales."""
    if day.month == 11:
        # Black Friday: the day after the fourth Thursday of November, and its weekend.
        first = date(day.year, 11, 1)
        thursday = first + timedelta(days=(3 - first.weekday()) % 7 + 21)
        offset = (day - thursday).days
        if 1 <= offset <= 4:
            return 2.2 if offset == 1 else 1.6
    if day.month == 12 and day.day <= 24:
        return 1.35
    if day.month == 1 and 7 <= day.day <= 31:
        return 1.25
    if day.month == 8:
        return 0.85
    return 1.0

"""Data quality with Great Expectations: the gate on raw data as it arrives.

``check_raw(cfg, sources)`` validates the new raw loads, quarantines bad rows into
``quarantine.raw_rows`` and raises :class:`QualityGateFailed` with a readable summary when
the data is too bad to build on. Importing this package is cheap: GX is imported only when
a validation runs.
"""

from orchestration.quality.gate import QualityGateFailed, check_raw

__all__ = ["QualityGateFailed", "check_raw"]

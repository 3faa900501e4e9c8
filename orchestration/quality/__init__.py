"""Data quality with Great Expectations: the gate on raw data as it arrives, and the checks on
each campaign's audience before it is handed to dispatch.

``check_raw(cfg, sources)`` validates the new raw loads, quarantines bad rows into
``quarantine.raw_rows`` and raises :class:`QualityGateFailed` with a readable summary when
the data is too bad to build on. ``check_audience(cfg, campaign)``
(:mod:`orchestration.quality.activation`) validates one campaign's ``activation.sync_*`` rows
(consent, duplicates, holdout share, budget) and raises :class:`ActivationCheckFailed`.
Importing this package is cheap: GX is imported only when a validation runs.
"""

from orchestration.quality.activation import ActivationCheckFailed, check_audience
from orchestration.quality.gate import QualityGateFailed, check_raw

__all__ = ["ActivationCheckFailed", "QualityGateFailed", "check_audience", "check_raw"]

"""Dispatch: from handed-off audiences to delivered contacts, through a transactional ledger.

:mod:`.ledger` records every intended contact before anything is sent and tracks it to an
outcome; :mod:`.states` holds the state machine and the per-channel crash semantics.
"""

from orchestration.dispatch.ledger import (
    EXPORT_COLUMNS,
    ConcurrentChange,
    Contact,
    ContactEvent,
    Ledger,
    UnknownContact,
    contact_id_for,
)
from orchestration.dispatch.states import (
    STALE_SENDING_RECOVERY,
    TRANSITIONS,
    WAREHOUSE_STATUS,
    Channel,
    IllegalTransition,
    State,
)

__all__ = [
    "EXPORT_COLUMNS",
    "STALE_SENDING_RECOVERY",
    "TRANSITIONS",
    "WAREHOUSE_STATUS",
    "Channel",
    "ConcurrentChange",
    "Contact",
    "ContactEvent",
    "IllegalTransition",
    "Ledger",
    "State",
    "UnknownContact",
    "contact_id_for",
]

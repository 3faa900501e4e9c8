"""The dispatch state machine: contact states, legal transitions, per-channel semantics.

Every rule about what may happen to an intended contact lives here, so the ledger (and a
reader of this file) has one place to check:

``TRANSITIONS``
    the legal moves between states; anything else raises :class:`IllegalTransition`.
``STALE_SENDING_RECOVERY``
    what a contact left in ``sending`` by a crashed dispatcher becomes, per channel. A contact
    is ``sending`` only while its own request is in flight, so a crash leaves at most the
    requests that were in flight. An email whose send may or may not have reached SendGrid
    becomes ``unknown``: it is settled against SendGrid's records (its events, else an Email
    Activity lookup by its ``dispatch_id``) and sent again only when SendGrid never saw it, so
    an email is never sent twice and never lost. A cashback credit goes back to ``pending``: the
    loyalty API honours the contact id as an Idempotency-Key, so a retry cannot credit twice. An
    in-store offer goes back to ``pending``: the store API receives it as an idempotent upsert
    keyed by the contact id.
``WAREHOUSE_STATUS``
    how a ledger state reads in the warehouse contract ``dispatch.contacts.status``.

``dead_lettered`` is final for the dispatcher; only an operator brings a dead letter back
(``omni dispatch retry``: back to ``pending``).
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum


class State(StrEnum):
    """Where an intended contact stands."""

    PENDING = "pending"  # recorded, waiting for its send time and a dispatcher
    SENDING = "sending"  # claimed by one dispatcher, the provider call is under way
    SENT = "sent"  # the provider accepted it (terminal)
    FAILED = "failed"  # the provider refused it for now (429, 5xx): retried later
    DEAD_LETTERED = "dead_lettered"  # will not be sent: permanent error or retry horizon passed
    SUPPRESSED = "suppressed"  # blocked before sending, with a reason (terminal)
    UNKNOWN = "unknown"  # the outcome of an attempt is unknown: settled from the provider's records


class Channel(StrEnum):
    """The dispatch channels (the ``channel`` column of the ``sync_*`` audiences)."""

    EMAIL = "email"
    LOYALTY_CASHBACK = "loyalty_cashback"
    IN_STORE = "in_store"


class IllegalTransition(ValueError):
    """A state change the state machine does not allow."""


TRANSITIONS: dict[State, frozenset[State]] = {
    # PENDING -> DEAD_LETTERED: the contact's request cannot even be built (no address...).
    State.PENDING: frozenset({State.SENDING, State.SUPPRESSED, State.DEAD_LETTERED}),
    # SENDING -> PENDING only through stale recovery of a channel whose retries are idempotent.
    State.SENDING: frozenset(
        {State.SENT, State.FAILED, State.DEAD_LETTERED, State.UNKNOWN, State.PENDING}
    ),
    State.FAILED: frozenset({State.SENDING, State.DEAD_LETTERED, State.SUPPRESSED}),
    # UNKNOWN is left only by reconciliation: the provider's records show the message (SENT) or
    # prove it never arrived (PENDING: sent again).
    State.UNKNOWN: frozenset({State.SENT, State.PENDING}),
    State.SENT: frozenset(),
    # DEAD_LETTERED -> PENDING only by an operator (`omni dispatch retry`).
    State.DEAD_LETTERED: frozenset({State.PENDING}),
    State.SUPPRESSED: frozenset(),
}

TERMINAL: frozenset[State] = frozenset(state for state, nxt in TRANSITIONS.items() if not nxt)
# States in which the dispatcher leaves a contact for good (an operator may requeue a dead letter).
FINAL: frozenset[State] = TERMINAL | {State.DEAD_LETTERED}

# States a dispatcher may claim (move to SENDING) when they are due.
CLAIMABLE: frozenset[State] = frozenset({State.PENDING, State.FAILED})

STALE_SENDING_RECOVERY: dict[Channel, State] = {
    # SendGrid may have accepted the message before the crash: sending it again could deliver
    # it twice. It waits in UNKNOWN for reconciliation against the provider's records.
    Channel.EMAIL: State.UNKNOWN,
    # The credit call carries Idempotency-Key = contact_id; the loyalty API answers a repeat
    # with the first credit, so a retry is safe and credits exactly once.
    Channel.LOYALTY_CASHBACK: State.PENDING,
    # The store API upserts the offer keyed by contact_id: sending it again changes nothing.
    Channel.IN_STORE: State.PENDING,
}

# How far ahead of its scheduled send time a contact is sent. Audiences schedule each contact
# inside the customer's contact window, often the next morning; a daily run must not wait for
# it. An email goes out with SendGrid's `send_at` (at most 72 h ahead), an in-store offer with
# `valid_from` on that day, a cashback credit at once (it is valid from its creation).
DISPATCH_LOOKAHEAD = timedelta(hours=71)

WAREHOUSE_STATUS: dict[State, str] = {
    # Still intended (waiting, in flight, to be retried, or awaiting reconciliation): counts
    # for the frequency cap and re-entry like a contact, so nobody is selected twice meanwhile.
    State.PENDING: "queued",
    State.SENDING: "queued",
    State.FAILED: "queued",
    State.UNKNOWN: "queued",
    State.SENT: "sent",
    # Never delivered: re-entry ignores `failed` and `cancelled` (var re_entry_ignored_statuses).
    State.DEAD_LETTERED: "failed",
    State.SUPPRESSED: "cancelled",
}


def check_transition(from_state: State | str, to_state: State | str) -> None:
    """Raise :class:`IllegalTransition` unless ``from_state -> to_state`` is allowed."""
    source, target = State(from_state), State(to_state)
    if target not in TRANSITIONS[source]:
        raise IllegalTransition(f"illegal transition {source.value} -> {target.value}")


__all__ = [
    "CLAIMABLE",
    "DISPATCH_LOOKAHEAD",
    "FINAL",
    "STALE_SENDING_RECOVERY",
    "TERMINAL",
    "TRANSITIONS",
    "WAREHOUSE_STATUS",
    "Channel",
    "IllegalTransition",
    "State",
    "check_transition",
]

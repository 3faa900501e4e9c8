"""How people write their identities: emails, phones and handles, messily.

The same person types the same email with other capitals or stray spaces, gives the phone
at the till as `600112233`, `+34 600 11 22 33` or `0034600112233`, and writes a social
handle with or without `@`. These functions turn canonical identities into such variants,
vectorised with pyarrow compute (no Python loop per person).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Phone formats seen at tills and in web forms, with their share.
PHONE_FORMATS = ("+34 ddd dd dd dd", "ddddddddd", "0034ddddddddd", "+34ddddddddd", "ddd ddd ddd")
PHONE_FORMAT_SHARES = (0.3, 0.3, 0.15, 0.15, 0.1)


def join(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation of string arrays and literals."""
    return pc.binary_join_element_wise(*parts, "")


def digits(values: np.ndarray, width: int = 0) -> pa.Array:
    """Integers as strings, left-padded with zeros to `width`."""
    text = pc.cast(pa.array(values.astype(np.int64)), pa.string())
    return pc.utf8_lpad(text, width=width, padding="0") if width else text


def e164(national: np.ndarray) -> pa.Array:
    """Spanish mobile numbers (9 digits) in E.164: `+34600112233`."""
    return join("+34", digits(national))


def _slice(text: pa.Array, start: int, stop: int) -> pa.Array:
    return pc.utf8_slice_codeunits(text, start=start, stop=stop)


def messy_phone(rng: np.random.Generator, national: np.ndarray) -> pa.Array:
    """Each phone in one of the formats of `PHONE_FORMATS`, drawn by their share."""
    text = digits(national)
    variants = [
        join(
            "+34 ",
            _slice(text, 0, 3),
            " ",
            _slice(text, 3, 5),
            " ",
            _slice(text, 5, 7),
            " ",
            _slice(text, 7, 9),
        ),
        text,
        join("0034", text),
        join("+34", text),
        join(_slice(text, 0, 3), " ", _slice(text, 3, 6), " ", _slice(text, 6, 9)),
    ]
    which = rng.choice(len(variants), size=len(national), p=PHONE_FORMAT_SHARES)
    return pc.choose(pa.array(which.astype(np.int8)), *variants)


def messy_email(rng: np.random.Generator, emails: pa.Array) -> pa.Array:
    """Emails as typed: ~12% capitalised, ~4% upper case, ~6% with stray spaces."""
    n = len(emails)
    case = rng.choice(3, size=n, p=(0.84, 0.12, 0.04))
    cased = pc.choose(
        pa.array(case.astype(np.int8)), emails, pc.utf8_capitalize(emails), pc.utf8_upper(emails)
    )
    spaces = rng.choice(3, size=n, p=(0.94, 0.04, 0.02))
    return pc.choose(pa.array(spaces.astype(np.int8)), cased, join(" ", cased), join(cased, "  "))


def messy_handle(rng: np.random.Generator, handles: pa.Array) -> pa.Array:
    """Social handles with a leading `@` (~30%) and capitals (~25%)."""
    n = len(handles)
    case = rng.choice(3, size=n, p=(0.75, 0.2, 0.05))
    cased = pc.choose(
        pa.array(case.astype(np.int8)),
        handles,
        pc.utf8_capitalize(handles),
        pc.utf8_upper(handles),
    )
    at = rng.random(n) < 0.3
    return pc.if_else(pa.array(at), join("@", cased), cased)


def pick(values: tuple[str, ...] | list[str], index: np.ndarray) -> pa.Array:
    """`values[index]` as an arrow string array."""
    return pa.array(values, type=pa.string()).take(pa.array(index.astype(np.int64)))

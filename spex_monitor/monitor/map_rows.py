"""Decoding helpers for encoded :class:`~.maps.InteractionMap` payloads: validated numbers and the
optional trailing fields of request-sample rows (older encoders wrote fewer)."""

from __future__ import annotations

import numpy as np

KeyTuple = tuple[str, ...]


def finite_number(value: object, field: str) -> float:
    """A finite JSON number from a decoded map (``bool`` is not one); else ``ValueError`` naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ValueError(f"{field}: {value!r} is not a finite number")
    return float(value)


def sample_present(row: list) -> list[str]:
    """The ``present`` keys of an encoded sample row (``[]`` for a five-field row from an older encoder)."""
    if len(row) == 5:
        return []
    if len(row) not in (6, 7) or not all(isinstance(k, str) for k in row[5]):
        raise ValueError("a request sample holds 5 to 7 fields, the 6th a list of keys")
    return row[5]


def sample_decisive(row: list) -> tuple[KeyTuple, ...]:
    """The decisive key tuples of an encoded sample row (a 7th field; none in older rows)."""
    if len(row) < 7:
        return ()
    if not all(isinstance(key, list) and all(isinstance(k, str) for k in key) for key in row[6]):
        raise ValueError("a request sample's 7th field is a list of key tuples")
    return tuple(tuple(key) for key in row[6])

"""HL7 v2 data types the reader hands out as Python values (timestamps)."""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache

__all__ = ["parse_ts"]

# YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ]. HL7 allows 1-4 fraction digits; up to 6 are read
# (some senders write microseconds). The offset may follow any precision.
_DTM = re.compile(
    r"(\d{4})(?:(\d\d)(?:(\d\d)(?:(\d\d)(?:(\d\d)(?:(\d\d)(?:\.(\d{1,6}))?)?)?)?)?)?"
    r"(?:[+-]\d{4})?",
    re.ASCII,
)


# a message repeats its times (OBR-7, every OBX-14); a datetime is immutable, so share it
@lru_cache(maxsize=4096)
def parse_ts(value: str) -> datetime | None:
    """Read an HL7 DTM/TS value; None when empty or unreadable (never raises).

    The result is naive and holds the sender's wall-clock time: a UTC offset, if any, is read and
    dropped on purpose (rule windows are months long, and mixing aware and naive datetimes breaks
    comparisons). Missing parts default to the start of the period ("202403" is 1 March 2024,
    00:00). A whole TS field with the legacy "^precision" component is accepted: only the part
    before the first '^' is read.
    """
    if not value:
        return None
    text = value.partition("^")[0].strip()
    m = _DTM.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction = m.groups()
    try:
        return datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int(fraction.ljust(6, "0")) if fraction else 0,
        )
    except ValueError:  # month 13, 30 February, year 0, hour 24...
        return None

"""A deterministic measure of the work a call does, for linearity tests without timings.

`measure(fn)` runs fn with a trace function and a profile function installed and counts
  - every line executed in lisguard's own code (Python work), and
  - the length of every str/bytes a whole-string C method is called on from lisguard code
    (``s.split``, ``s.replace``, ``s.upper`` ...: the scans a Python line hands to C).
    Methods that may stop early or start at an offset (find, partition, strip, startswith)
    are not charged: their receiver's length says nothing about what they read.
The sum is the same on every run and every machine. It does not see operators (``x in s``) or
the regex engine's own steps, which is why the regex in escapes.py is linear by construction
(possessive quantifiers, none nested). A budget stops a super-linear run early instead of letting
it burn minutes: it raises BudgetExceeded once the count passes it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import lisguard

PACKAGE = str(Path(lisguard.__file__).resolve().parent)
WHOLE_SCANS = frozenset(
    {
        "split", "rsplit", "splitlines", "replace", "translate", "count", "encode", "decode",
        "upper", "lower", "casefold", "swapcase", "title", "capitalize", "expandtabs",
        "isdigit", "isdecimal", "isnumeric", "isalnum", "isalpha", "isspace", "isupper",
        "islower", "isprintable", "isidentifier", "fromhex", "hex",
    }
)  # fmt: skip


class BudgetExceededError(Exception):
    pass


def measure(
    fn: Callable[[], Any], budget: int | None = None, *, scans: bool = True
) -> tuple[int, Any]:
    """(work units, fn's result); scans=False counts lines only."""
    work = 0
    ours: dict[str, bool] = {}

    def is_ours(frame: FrameType) -> bool:
        name = frame.f_code.co_filename
        found = ours.get(name)
        if found is None:
            found = ours[name] = str(Path(name).resolve()).startswith(PACKAGE)
        return found

    def charge(units: int) -> None:
        nonlocal work
        work += units
        if budget is not None and work > budget:
            raise BudgetExceededError(f"more than {budget} work units")

    def line_tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            charge(1)
        return line_tracer

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        return line_tracer if event == "call" and is_ours(frame) else None

    def profiler(frame: FrameType, event: str, arg: Any) -> None:
        if scans and event == "c_call" and is_ours(frame):
            receiver = getattr(arg, "__self__", None)
            if isinstance(receiver, str | bytes | bytearray) and arg.__name__ in WHOLE_SCANS:
                charge(len(receiver))

    old_trace, old_profile = sys.gettrace(), sys.getprofile()
    sys.settrace(tracer)
    sys.setprofile(profiler)
    try:
        result = fn()
    finally:
        sys.settrace(old_trace)
        sys.setprofile(old_profile)
    return work, result

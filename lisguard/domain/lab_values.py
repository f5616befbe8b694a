"""Numbers in results: a quantitative immunoglobulin (value, unit, reference range) and an HBV
serology marker, read into the patient's state.

Units matter: one lab reports IgG 350 mg/dL, another 3.5 g/L, a third 3500 mg/L; all are the
same low IgG. A value is judged in mg/dL when its unit (OBX-6) is a mass concentration; when
OBX-6 is empty, the unit is read off the size of the reference range (OBX-7), since adult IgG
ranges differ by orders of magnitude between the three units (Mayo 767-1,590 mg/dL; NWL
Pathology 5.4-16.1 g/L). Nothing is guessed beyond that: an IgG with neither is kept, unjudged.
"""

from __future__ import annotations

import re
from datetime import datetime

from lisguard.domain.facts import Observation
from lisguard.domain.kb_models import TestCategory, mg_dl_factor
from lisguard.domain.patient import ImmunoglobulinResult, SerologyResult

_NUMBER = re.compile(r"\s*(?P<cmp>[<>]=?|≤|≥)?\s*(?P<num>\d+(?:[.,]\d+)?)")
_RANGE = re.compile(r"(?P<low>\d+(?:[.,]\d+)?)\s*(?:-|–|to)\s*(?P<high>\d+(?:[.,]\d+)?)")
_LOWER_BOUND = re.compile(r"(?:>=?|≥)\s*(?P<low>\d+(?:[.,]\d+)?)")
LOW_FLAGS = frozenset({"L", "LL", "<"})
NOT_LOW_FLAGS = frozenset({"N", "H", "HH", ">"})
IMMUNOGLOBULINS = {
    TestCategory.IGG: "igg",
    TestCategory.IGA: "iga",
    TestCategory.IGM: "igm",
}
HBV_MARKERS = frozenset({TestCategory.HBSAG, TestCategory.ANTI_HBC, TestCategory.ANTI_HBS})
# IgG reference-range lower limits by unit, to read a missing unit off the range: (lowest,
# highest) plausible lower limit in each unit.
_IGG_LOW_LIMITS = (("mg/dL", 200.0, 2000.0), ("g/L", 2.0, 20.0), ("mg/L", 2000.0, 20000.0))


def _float(text: str) -> float:
    return float(text.replace(",", "."))


def number(value: str) -> float | None:
    """The number a result value starts with ("350", "<5", "3,5"); None when it has none."""
    m = _NUMBER.match(value)
    return _float(m.group("num")) if m is not None else None


def reference_low(reference_range: str) -> float | None:
    """The lower limit of an OBX-7 range ("700-1600", "7.0 - 16.0 g/L", ">=70")."""
    m = _RANGE.search(reference_range)
    if m is not None:
        return _float(m.group("low"))
    m = _LOWER_BOUND.search(reference_range)
    return _float(m.group("low")) if m is not None else None


def _igg_unit_from_range(low: float | None) -> str:
    if low is None:
        return ""
    for unit, least, most in _IGG_LOW_LIMITS:
        if least <= low <= most:
            return unit
    return ""


def immunoglobulin_result(
    test: TestCategory, obs: Observation, when: datetime | None, message: str
) -> ImmunoglobulinResult | None:
    """The IgG/IgA/IgM an observation reports, None when its value is not a number."""
    value = next((v for v in (number(x) for x in obs.values) if v is not None), None)
    if value is None:
        return None
    low = reference_low(obs.reference_range)
    units = obs.units
    if not units and test is TestCategory.IGG:
        units = _igg_unit_from_range(low)
    factor = mg_dl_factor(units) if units else None
    flags = [f for f in obs.abnormal_flags if f]
    below: bool | None = None
    if low is not None:
        below = value < low
    elif any(f.upper() in LOW_FLAGS for f in flags):
        below = True
    elif any(f.upper() in NOT_LOW_FLAGS for f in flags):
        below = False
    return ImmunoglobulinResult(
        test=IMMUNOGLOBULINS[test],
        time=when,
        value=value,
        units=units,
        mg_dl=round(value * factor, 3) if factor is not None else None,
        low=low,
        flags=flags,
        below_range=below,
        message=message,
    )


def serology_result(
    marker: TestCategory,
    obs: Observation | None,
    when: datetime | None,
    message: str,
    reactive: bool | None,
) -> SerologyResult:
    """An HBV marker result (obs None: ordered, not yet resulted)."""
    value = obs.values[0][:80] if obs is not None and obs.values else ""
    return SerologyResult(
        marker=marker.value,
        time=when,
        value=value,
        reactive=reactive,
        pending=obs is None,
        message=message,
    )

"""`check`/`validate` remember the newest message keys to recognise resends (bounded memory on a
year's feed): a resend within that memory is a duplicate, one after it is screened as new, and
the keys let go are counted."""

from __future__ import annotations

from lisguard.domain.knowledge import load_knowledge_base
from lisguard.screening import RESEND_MEMORY, Screening

ORDER = (
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|20260302081500||ORM^O01|{cid}|P|2.5.1\r"
    "PID|1||MRN1^^^HOSP^MR||DOE^JANE\r"
    "ORC|NW|{cid}\r"
    "OBR|1|{cid}||890-4^Antibody screen^LN|||20260302081000\r"
)


def outcomes(screening: Screening, ids: list[str]) -> list[str]:
    return [screening.screen(ORDER.format(cid=cid)).outcome for cid in ids]


def test_a_resend_within_memory_is_a_duplicate_and_a_late_one_is_new() -> None:
    screening = Screening(load_knowledge_base(), resend_memory=2)
    assert outcomes(screening, ["A", "B", "A"]) == ["accepted", "accepted", "duplicate"]
    assert screening.forgotten == 0
    # A was seen again last: B is the oldest key and goes first
    assert outcomes(screening, ["C", "A", "B"]) == ["accepted", "duplicate", "accepted"]
    assert screening.forgotten == 2  # B when C came, C when B came back
    assert outcomes(screening, ["C"]) == ["accepted"]


def test_the_default_memory_holds_a_day_of_a_busy_feed() -> None:
    screening = Screening(load_knowledge_base())
    assert screening.resend_memory == RESEND_MEMORY >= 100_000
    ids = [f"M{n}" for n in range(300)]
    assert set(outcomes(screening, ids)) == {"accepted"}
    assert set(outcomes(screening, ids)) == {"duplicate"} and screening.forgotten == 0

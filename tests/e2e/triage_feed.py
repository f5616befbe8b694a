"""HL7 messages for the queue's triage tests (paging, the triage page, 500 open alerts): a
daratumumab dose, then tests ordered for the same patient, at times relative to now."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import TypedDict

_IDS = itertools.count(1)

DOSE = (
    "MSH|^~\\&|PHARM|HOSP|LISGUARD|BB|{at}||RAS^O17|RX-{mrn}-{n}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||{name}||{dob}|F\r"
    "PV1|1|O|INFUS\r"
    "ORC|RE|RXO-{mrn}\r"
    "RXA|0|1|{at}|{at}|J9145^daratumumab^HCPCS|1800|mg||||||||||||CP\r"
)
ORDER = (
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|{at}||ORM^O01|ORD-{order}-{n}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||{name}||{dob}|F\r"
    "PV1|1|O|{location}\r"
    "ORC|NW|{order}\r"
    "OBR|1|{order}||{test}|||{at}\r"
)
# OMB^O27: a blood product order by its structure (BPO-2 the product)
PRODUCT = (
    "MSH|^~\\&|EPIC|HOSP|LISGUARD|BB|{at}||OMB^O27^OMB_O27|BPO-{order}-{n}|P|2.5\r"
    "PID|1||{mrn}^^^HOSP^MR||{name}||{dob}|F\r"
    "PV1|1|I|{location}\r"
    "ORC|NW|{order}|||||||{at}\r"
    "BPO|1|{test}||2|||{at}\r"
)


class Who(TypedDict):
    """A patient's name (PID-5) and date of birth (PID-7)."""

    name: str
    dob: str


CROSSMATCH = "XM2^CROSSMATCH 2 UNITS^L"
TYPE_AND_SCREEN = "BBTS^TYPE AND SCREEN^L"
ANTIBODY_SCREEN = "890-4^Antibody screen^LN"
SPEP = "24351-9^Serum protein electrophoresis^LN"
RED_CELLS = "RBC^Red Blood Cells^L"
PLATELETS = "PLT^Platelets^L"


def hl7_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


def dose(mrn: str, when: datetime, name: str = "DOE^JANE", dob: str = "19600101") -> str:
    return DOSE.format(mrn=mrn, at=hl7_time(when), name=name, dob=dob, n=next(_IDS))


def order(
    mrn: str,
    number: str,
    test: str,
    when: datetime,
    *,
    name: str = "DOE^JANE",
    dob: str = "19600101",
    location: str = "4W",
    product: bool = False,
) -> str:
    template = PRODUCT if product else ORDER
    return template.format(
        mrn=mrn,
        order=number,
        test=test,
        at=hl7_time(when),
        name=name,
        dob=dob,
        location=location,
        n=next(_IDS),
    )

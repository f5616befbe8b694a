"""An alert as an HL7 v2.5.1 ORU^R01, for sites that want it back in the LIS (built with hl7apy,
the reference model for outbound HL7; v2.5.1 has no TQ1 trouble).

    MSH  ... ORU^R01^ORU_R01, MSH-10 = the alert id (first 20 characters), MSH-11 = the
         processing id of the message that raised the alert (P; T or D for a test alert),
         MSH-18 = UNICODE UTF-8 (the bytes sent are UTF-8), original-mode ACK
    PID  PID-3 = patient ^^^ authority ^MR, PID-5 name, PID-7 date of birth (when known)
    PV1  PV1-3.1 = the point of care the alert carries
    ORC  RE, placer order = the order the alert is about
    OBR  OBR-3 = alert id ^LISGUARD (EI: our application's namespace), OBR-4 = LGALERT^...^99LSG,
         OBR-7 = event time, OBR-25 = F
    NTE  the alert text, then one line per evidence item
    OBX  rule (ST), severity (ST), audience (ST), one CWE per recommendation with its one-line
         meaning (and an NTE repeating the meaning in full), drugs (ST)

Codes of our own (OBR-4, OBX-3, the recommendation CWEs in OBX-5) name the coding system
`99LSG`: HL7 table 0396's form for a locally defined system ("99zzz"), which a receiver can map
apart from its own local codes - unlike "L", which every local system shares.

The message is a pure function of the stored alert and its creation time, so a retry sends the
same bytes with the same control id: a receiver that de-duplicates (as lisguard itself does)
replays its ACK instead of filing the alert twice.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hl7apy.core import Message

from lisguard.domain.alerts import RECOMMENDATION_TEXT, Alert
from lisguard.hl7v2.ack import escape
from lisguard.hl7v2.escapes import DEFAULT_ENCODING

VERSION = "2.5.1"
APPLICATION = "LISGUARD"  # MSH-3, and the namespace of the alert id in OBR-3 (EI, not a code)
CODE_SYSTEM = "99LSG"  # table 0396 "99zzz": lisguard's local codes (LGALERT, LGRULE, ...)
CHARSET = "UNICODE UTF-8"  # table 0211: what transport/hl7_outbound encodes the message as


def control_id(alert: Alert) -> str:
    """MSH-10 (ST, at most 20 characters in v2.5.1): stable for the alert."""
    return alert.id[:20]


def _text(value: str) -> str:
    # hl7apy parses what it is given as ER7: delimiters must be escaped first; line breaks
    # become spaces (hl7apy would double-escape a \.br\ formatting sequence)
    return escape(" ".join(value.split()), DEFAULT_ENCODING)


def _ts(value: datetime) -> str:
    # a naive time is the sender's own local time (rules never convert it): written as it came
    if value.tzinfo is None:
        return value.strftime("%Y%m%d%H%M%S")
    return value.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


def alert_oru(
    alert: Alert,
    created_at: datetime,
    *,
    sending_facility: str = "",
    receiving_application: str = "",
    receiving_facility: str = "",
) -> str:
    """The ORU^R01 (ER7, segments separated by CR) carrying one alert."""
    m = Message("ORU_R01", version=VERSION)
    msh = m.msh
    msh.msh_3 = APPLICATION
    msh.msh_4 = _text(sending_facility)
    msh.msh_5 = _text(receiving_application)
    msh.msh_6 = _text(receiving_facility)
    msh.msh_7 = _ts(created_at)
    msh.msh_9 = "ORU^R01^ORU_R01"
    msh.msh_10 = control_id(alert)
    # a test alert says so to the receiver too (routing sends it only where a site allows)
    msh.msh_11 = alert.processing_id if alert.processing_id in ("P", "T", "D") else "T"
    # the bytes are UTF-8 (a location "HÄMONK"): without MSH-18 a receiver reads ASCII
    msh.msh_18 = CHARSET

    result = m.add_group("ORU_R01_PATIENT_RESULT")
    patient = result.add_group("ORU_R01_PATIENT")
    pid = patient.pid
    pid.pid_1 = "1"
    pid.pid_3 = f"{_text(alert.patient)}^^^{_text(alert.patient_authority)}^MR"
    # the second identifiers, as lisguard last heard them (PID-5 family^given^middle, PID-7)
    if alert.patient_name:
        family, _, given = alert.patient_name.partition(", ")
        first, _, middle = given.partition(" ")
        pid.pid_5 = "^".join(_text(part) for part in (family, first, middle)).rstrip("^")
    if alert.birth_date:
        pid.pid_7 = alert.birth_date.replace("-", "")
    visit = patient.add_group("ORU_R01_VISIT")
    visit.pv1.pv1_1 = "1"
    visit.pv1.pv1_2 = "U"
    visit.pv1.pv1_3 = _text(alert.location)  # PV1-3.1, the point of care

    group = result.add_group("ORU_R01_ORDER_OBSERVATION")
    group.orc.orc_1 = "RE"
    group.orc.orc_2 = _text(alert.order)
    obr = group.obr
    obr.obr_1 = "1"
    obr.obr_2 = _text(alert.order)
    obr.obr_3 = f"{alert.id}^{APPLICATION}"
    obr.obr_4 = f"LGALERT^Therapy interference alert^{CODE_SYSTEM}"
    if alert.event_time is not None:
        obr.obr_7 = _ts(alert.event_time)
    obr.obr_22 = _ts(created_at)
    obr.obr_25 = "F"
    notes = [alert.text] + [f"Evidence {e.message} {e.location}: {e.text}" for e in alert.evidence]
    for index, note in enumerate(notes, 1):
        nte = group.add_segment("NTE")
        nte.nte_1 = str(index)
        nte.nte_2 = "L"
        nte.nte_3 = _text(note)

    observations: list[tuple[str, str, str, str]] = [
        ("ST", "LGRULE^Alert rule", alert.rule.value, ""),
        ("ST", "LGSEVERITY^Alert severity", alert.severity.value, ""),
        # who acts on it (blood_bank, serology, clinic, ...): a receiver may route on it
        ("ST", "LGAUDIENCE^Alert audience", alert.audience.value, ""),
    ]
    for rec in alert.recommendations:
        meaning = RECOMMENDATION_TEXT.get(rec, "")
        short = _text(meaning[:199])
        observations.append(
            ("CWE", "LGREC^Recommendation", f"{rec.value}^{short}^{CODE_SYSTEM}", meaning)
        )
    if alert.drugs:
        drugs = _text(", ".join(alert.drugs))
        observations.append(("ST", "LGDRUG^Drug or immunoglobulin product", drugs, ""))
    sub_ids: dict[str, int] = {}
    for index, (value_type, code, value, note) in enumerate(observations, 1):
        obs = group.add_group("ORU_R01_OBSERVATION")
        obx = obs.obx
        obx.obx_1 = str(index)
        obx.obx_2 = value_type
        obx.obx_3 = f"{code}^{CODE_SYSTEM}"
        sub_ids[code] = sub_ids.get(code, 0) + 1
        obx.obx_4 = str(sub_ids[code])
        obx.obx_5 = value
        obx.obx_11 = "F"
        if note:
            nte = obs.add_segment("NTE")
            nte.nte_1 = "1"
            nte.nte_3 = _text(note)
    return str(m.to_er7())

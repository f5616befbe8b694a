"""What of a message may be shown in a log line or an error text: structure, never content.

A header field is where the standard says, but a message is not always what it says: a raw
carriage return in free text makes a line start with a patient's name, a missing separator
shifts a name into MSH-9. So a segment name is shown only when HL7 v2 defines it (v2.8.2, which
includes every earlier version) or it is a Z-segment, and a message type or processing id only
when it has the shape of one.
"""

import re

_NAMES = """
    ABS ACC ADD ADJ AFF AIG AIL AIP AIS AL1 APR ARQ ARV AUT BHS BLC BLG BPO BPX BTS BTX BUI
    CDM CDO CER CM0 CM1 CM2 CNS CON CSP CSR CSS CTD CTI DB1 DG1 DMI DON DPS DRG DSC DSP ECD
    ECR EDU EQP EQU ERR EVN FAC FHS FT1 FTS GOL GP1 GP2 GT1 IAM IAR IIM ILT IN1 IN2 IN3 INV
    IPC IPR ISD ITM IVC IVT LAN LCC LCH LDP LOC LRL MCP MFA MFE MFI MRG MSA MSH NCK NDS NK1
    NPU NSC NST NTE OBR OBX ODS ODT OM1 OM2 OM3 OM4 OM5 OM6 OM7 OMC ORC ORG OVR PAC PCE PCR
    PD1 PDA PDC PEO PES PID PKG PM1 PMT PR1 PRA PRB PRC PRD PRT PSG PSH PSL PSS PTH PV1 PV2
    PYE QAK QID QPD QRD QRF QRI RCP RDF RDT REL RF1 RFI RGS RMI ROL RQ1 RQD RXA RXC RXD RXE
    RXG RXO RXR RXV SAC SCD SCH SCP SDD SFT SGH SGT SHP SID SLT SPM STF STZ TCC TCD TQ1 TQ2
    TXA UAC UB1 UB2 URD URS VAR VND
"""
STANDARD_SEGMENTS = frozenset(_NAMES.split())


def printable_segment_name(name: str) -> str | None:
    """The name when it is a known segment or a Z-segment (local), else None."""
    if name in STANDARD_SEGMENTS or (len(name) == 3 and name[0] == "Z" and name.isalnum()):
        return name
    return None


_MESSAGE_TYPE = re.compile(r"[A-Z][A-Z0-9]{2}(\^[A-Z0-9]{3}(\^[A-Z0-9_]{3,10})?)?")
_PROCESSING_ID = re.compile(r"[A-Z](\^[A-Z])?")
NOT_SHOWN = "(not shown: not a code)"


def printable_message_type(value: str) -> str:
    """MSH-9 as written when it looks like a message type (ORU^R01^ORU_R01), else NOT_SHOWN."""
    return value if _MESSAGE_TYPE.fullmatch(value) else NOT_SHOWN


def printable_processing_id(value: str) -> str:
    return value if _PROCESSING_ID.fullmatch(value) else NOT_SHOWN

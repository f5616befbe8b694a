"""A synthetic but realistic mixed hospital feed, built from the message shapes in hl7_samples/.

What a lab interface engine forwards in a day, in the proportions a mid-size hospital sends:
mostly results (CBC, chemistry) and lab orders, registration (ADT) noise, scheduling and notes
lisguard does not read, pharmacy orders/administrations for ordinary drugs, and blood-bank and
SPEP/IFE work. A few percent of patients are on daratumumab or isatuximab: their pharmacy
messages name the drug, so their type & screens and SPEPs raise alerts as in production.

Deterministic for a seed. `tag` makes every MSH-10 unique per benchmark phase, so one phase's
messages are never duplicates of another's while the clinical content stays the same.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

# (weight, kind): the share of each message kind in the feed
MIX: tuple[tuple[int, str], ...] = (
    (24, "oru_cbc"),
    (14, "oru_chem"),
    (12, "orm_lab"),
    (5, "oml_lab"),
    (8, "adt_a08"),
    (5, "adt_a04"),
    (4, "adt_a03"),
    (3, "siu"),
    (2, "mdm"),
    (7, "rde"),
    (6, "ras"),
    (2, "rds"),
    (4, "orm_ts"),
    (3, "oru_ts"),
    (1, "oml_spep"),
)
EXPOSED_SHARE = 0.03  # patients on an anti-CD38 antibody
EXPOSED_TRAFFIC = 0.08  # share of messages about them, on top of their share of the rest
MERGE_SHARE = 0.001  # ADT^A40 merges among ADT messages

FIRST = ("JUNE", "CLAIRE", "THEODORE", "FEMI", "DRAGANA", "KWAME", "ROSARIO", "HEIDI", "LEO")
LAST = ("CALLOWAY", "ABERNATHY", "KOWALCZYK", "OYELARAN", "PETROVIC", "OSEI", "RASMUSSEN")
UNITS = ("ONCDAY^^^RVH", "4W^412^B^RVH", "ED^BAY3^^RVH", "HEMONC^^^RVH", "INFCTR^CH04^^RVH")
# ordinary drugs: (code^text^system) as pharmacy systems send them
OTHER_DRUGS = (
    "00338-0049-04^VANCOMYCIN 1 G IN 200 ML^NDC",
    "ERX104422^ondansetron 8 mg tablet^ERX",
    "ERX220118^dexamethasone 20 mg tablet^ERX",
    "59572-0410-00^REVLIMID 10 MG CAPSULE^NDC",
    "J1100^DEXAMETHASONE SODIUM PHOSPHATE 1 MG^HCPCS",
    "ERX318500^enoxaparin 40 mg/0.4 mL syringe^ERX",
    "25021-0102-10^CEFAZOLIN 1 G VIAL^NDC",
)
ANTI_CD38 = (
    "57894-0503-01^DARZALEX FASPRO 1,800 MG-30,000 UNIT/15 ML SC SOLN^NDC",
    "57894-0502-20^DARZALEX 400 MG/20 ML IV SOLN^NDC^J9145^INJECTION, DARATUMUMAB, 10 MG^HCPCS",
    "ISAT^ISATUXIMAB-IRFC (SARCLISA) IV^BEACONRX^2282023^isatuximab-irfc injection^RXNORM",
)
CBC = (
    ("WBC^WHITE BLOOD CELLS^L", "6.1", "10*3/uL", "4.0-11.0"),
    ("RBC^RED BLOOD CELLS^L", "4.02", "10*6/uL", "3.9-5.2"),
    ("HGB^HEMOGLOBIN^L", "11.8", "g/dL", "12.0-15.5"),
    ("HCT^HEMATOCRIT^L", "35.2", "%", "36-46"),
    ("MCV^MCV^L", "88", "fL", "80-100"),
    ("PLT^PLATELETS^L", "212", "10*3/uL", "150-400"),
    ("ANC^NEUTROPHILS ABSOLUTE^L", "3.9", "10*3/uL", "1.8-7.7"),
    ("LYMA^LYMPHOCYTES ABSOLUTE^L", "1.4", "10*3/uL", "1.0-4.8"),
)
CHEM = (
    ("2951-2^Sodium^LN", "139", "mmol/L", "135-145"),
    ("2823-3^Potassium^LN", "4.1", "mmol/L", "3.5-5.1"),
    ("2075-0^Chloride^LN", "102", "mmol/L", "98-107"),
    ("2028-9^Carbon dioxide^LN", "25", "mmol/L", "22-29"),
    ("3094-0^Urea nitrogen^LN", "18", "mg/dL", "7-20"),
    ("2160-0^Creatinine^LN", "1.1", "mg/dL", "0.6-1.2"),
    ("2345-7^Glucose^LN", "97", "mg/dL", "70-99"),
    ("17861-6^Calcium^LN", "9.4", "mg/dL", "8.6-10.3"),
)
LAB_ORDERS = (
    "CBC^COMPLETE BLOOD COUNT^L",
    "BMP^BASIC METABOLIC PANEL^L",
    "24323-8^Comprehensive metabolic panel^LN",
    "PT^PROTHROMBIN TIME^L",
    "2157-6^Creatine kinase^LN",
)


@dataclass(frozen=True)
class Patient:
    mrn: str
    name: str
    birth: str
    sex: str
    unit: str
    exposed: str | None  # the anti-CD38 drug their pharmacy messages name, if any


def make_patients(n: int, rng: random.Random) -> list[Patient]:
    patients = []
    for i in range(n):
        exposed = rng.choice(ANTI_CD38) if rng.random() < EXPOSED_SHARE else None
        patients.append(
            Patient(
                mrn=f"MRN{i:07d}",
                name=f"{rng.choice(LAST)}^{rng.choice(FIRST)}^{chr(65 + i % 26)}^^^^L",
                birth=f"19{rng.randint(30, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
                sex=rng.choice("MF"),
                unit=rng.choice(UNITS),
                exposed=exposed,
            )
        )
    return patients


def _ts(t: datetime) -> str:
    return t.strftime("%Y%m%d%H%M%S")


Body = tuple[str, str, str]  # a message's sending application, MSH-9 and its other segments


def envelope(p: Patient, t: datetime, i: int, cid: str, body: Body) -> str:
    """MSH, PID and PV1 around a message body (app, type, segments); `i` varies the address
    and visit number. Original-mode ACKs (MSH-15/16 empty) except pharmacy, which asks for a
    commit ACK only."""
    app, mtype, segments = body
    modes = "|||AL|NE" if mtype[:3] in ("RDE", "RAS", "RDS") else ""
    return (
        f"MSH|^~\\&|{app}|RVH|LISGUARD|RVH|{_ts(t)}||{mtype}|{cid}|P|2.5.1{modes}\r"
        f"PID|1||{p.mrn}^^^RVH^MR||{p.name}||{p.birth}|{p.sex}|||"
        f"{100 + i % 900} OAK KNOLL RD^^ASHEVILLE^NC^28803^USA^H||^PRN^PH^^^828^5550190\r"
        f"PV1|1|O|{p.unit}||||6033^IWU^CHIDI^^^^MD|||ONC||||1|||6033^IWU^CHIDI^^^^MD|OP|"
        f"V{i:09d}\r" + segments
    )


class FeedBuilder:
    """Builds message `index` of the feed: same content for a seed, MSH-10 from `tag`."""

    def __init__(self, patients: int, seed: int = 6) -> None:
        self.seed = seed
        self.patients = make_patients(patients, random.Random(seed))
        self.exposed = [p for p in self.patients if p.exposed] or self.patients
        self.kinds = [kind for weight, kind in MIX for _ in range(weight)]
        self.start = datetime(2026, 1, 5, 6, 0, 0)

    def messages(self, count: int, tag: str) -> Iterator[str]:
        # the same messages for a tag whatever the count (a prefix is a prefix); another tag
        # draws other patients and events from the same population
        rng = random.Random(f"{self.seed}-{tag}")
        for i in range(count):
            yield self.message(i, tag, rng)

    def message(self, i: int, tag: str, rng: random.Random) -> str:
        # patients on therapy come back every week or two: they send more than their share
        p = rng.choice(self.exposed if rng.random() < EXPOSED_TRAFFIC else self.patients)
        kind = rng.choice(self.kinds)
        t = self.start + timedelta(seconds=2 * i)
        body = getattr(self, f"_{kind}")(p, t, f"{tag}O{i:08d}", rng)
        return envelope(p, t, i, f"{tag}{i:08d}", body)

    # -- results and orders

    def _results(self, rows: tuple[tuple[str, str, str, str], ...], t: datetime) -> str:
        return "".join(
            f"OBX|{n}|NM|{code}||{value}|{unit}|{ref}|N|||F|||{_ts(t)}\r"
            for n, (code, value, unit, ref) in enumerate(rows, 1)
        )

    def _oru_cbc(self, p: Patient, t: datetime, order: str, rng: random.Random) -> Body:
        obr = (
            f"ORC|RE|{order}^EPIC|H{order}^HEMLAB||CM\r"
            f"OBR|1|{order}^EPIC|H{order}^HEMLAB|CBC^COMPLETE BLOOD COUNT^L|||{_ts(t)}|||||||"
            f"{_ts(t)}||6033^IWU^CHIDI^^^^MD||||||{_ts(t)}||HM|F\r"
        )
        return "HEMLAB", "ORU^R01^ORU_R01", obr + self._results(CBC, t)

    def _oru_chem(self, p: Patient, t: datetime, order: str, rng: random.Random) -> Body:
        obr = (
            f"ORC|RE|{order}^EPIC|C{order}^CHEMLAB||CM\r"
            f"OBR|1|{order}^EPIC|C{order}^CHEMLAB|80048^BASIC METABOLIC PANEL^C4|||{_ts(t)}|||||||"
            f"{_ts(t)}||6033^IWU^CHIDI^^^^MD||||||{_ts(t)}||CH|F\r"
        )
        return "CHEMLAB", "ORU^R01^ORU_R01", obr + self._results(CHEM, t)

    def _orm_lab(self, p: Patient, t: datetime, order: str, rng: random.Random) -> Body:
        service = rng.choice(LAB_ORDERS)
        seg = (
            f"ORC|NW|{order}^CPOE|||||^^^{_ts(t)}^^R||{_ts(t)}|RN5^PIKE^DANA||"
            "6033^IWU^CHIDI^^^^MD\r"
            f"OBR|1|{order}^CPOE||{service}|R||{_ts(t)}|||||||||6033^IWU^CHIDI^^^^MD\r"
        )
        return "CPOE", "ORM^O01^ORM_O01", seg

    def _oml_lab(self, p: Patient, t: datetime, order: str, rng: random.Random) -> Body:
        service = rng.choice(LAB_ORDERS)
        seg = (
            f"ORC|NW|{order}^EPICLAB|||||||{_ts(t)}|||6033^IWU^CHIDI^^^^MD\r"
            f"TQ1|1||||||{_ts(t)}||R^Routine^HL70485\r"
            f"OBR|1|{order}^EPICLAB||{service}|R||{_ts(t)}|||||||||6033^IWU^CHIDI^^^^MD\r"
            "NTE|1|L|Fasting specimen\r"
        )
        return "EPICLAB", "OML^O21^OML_O21", seg

    def _orm_ts(self, p: Patient, t: datetime, order: str, rng: random.Random) -> Body:
        seg = (
            f"ORC|NW|{order}^CPOE|||||^^^{_ts(t)}^^S||{_ts(t)}|NRS4410^PAQUETTE^LISE||"
            "5520^MBEKI^THABO^^^^MD\r"
            f"OBR|1|{order}^CPOE||BBTS^TYPE AND SCREEN^L|S|{_ts(t)}|{_ts(t)}||||||"
            "Pre-op; hold 2 units|||5520^MBEKI^THABO^^^^MD\r"
        )
        return "CPOE", "ORM^O01^ORM_O01", seg

    def _oru_ts(self, p: Patient, t: datetime, order: str, rng: random.Random) -> Body:
        screen = "NEG^Negative^L" if rng.random() < 0.9 else "POS^Positive^L"
        seg = (
            f"ORC|RE|{order}^CPOE|BB{order}^BBANK||CM\r"
            f"OBR|1|{order}^CPOE|BB{order}^BBANK|BBTS^TYPE AND SCREEN^L|||{_ts(t)}|||||||"
            f"{_ts(t)}||5520^MBEKI^THABO^^^^MD||||||{_ts(t)}||BB|F\r"
            f"OBX|1|CE|883-9^ABO GROUP^LN||O^Group O^L||||||F|||{_ts(t)}\r"
            f"OBX|2|CE|10331-7^RH TYPE^LN||POS^Rh positive^L||||||F|||{_ts(t)}\r"
            f"OBX|3|CE|890-4^ANTIBODY SCREEN^LN||{screen}||||||F|||{_ts(t)}\r"
        )
        return "BBANK", "ORU^R01^ORU_R01", seg

    def _oml_spep(self, p: Patient, t: datetime, order: str, rng: random.Random) -> Body:
        seg = (
            f"ORC|NW|{order}^EPICLAB|||||||{_ts(t)}|||5018^GRAVES^NATHANIEL^^^^MD\r"
            f"OBR|1|{order}^EPICLAB||24351-9^Protein electrophoresis panel^LN^SPEP^PROTEIN "
            f"ELECTROPHORESIS SERUM^99LAB|R||{_ts(t)}|||||||||5018^GRAVES^NATHANIEL^^^^MD\r"
        )
        return "EPICLAB", "OML^O21^OML_O21", seg

    # -- pharmacy

    def _drug(self, p: Patient, rng: random.Random) -> str:
        return p.exposed if p.exposed is not None else rng.choice(OTHER_DRUGS)

    def _rde(self, p: Patient, t: datetime, order: str, rng: random.Random) -> Body:
        start = t + timedelta(days=7)
        seg = (
            f"ORC|NW|{order}^ONCORX|||||||{_ts(t)}|RN5^PIKE^DANA||6033^IWU^CHIDI^^^^MD\r"
            f"RXE||{self._drug(p, rng)}|1800||mg^milligram^UCUM|INJ^injection^L|"
            f"^Weekly x 8 weeks||N|||||RPH44^KWAN^LEO|{order}\r"
            f"TQ1|1||Q1W^Every week^HL70335|||8^wk|{_ts(start)}||R^Routine^HL70485\r"
            "RXR|SC^Subcutaneous^HL70162\r"
        )
        return "ONCORX", "RDE^O11^RDE_O11", seg

    def _ras(self, p: Patient, t: datetime, order: str, rng: random.Random) -> Body:
        seg = (
            f"ORC|RE|{order}^ONCORX|||CM||||{_ts(t)}\r"
            f"RXA|0|1|{_ts(t)}|{_ts(t)}|{self._drug(p, rng)}|1800|mg^milligram^UCUM||"
            "^C1D1|RN5^PIKE^DANA|^^^ONCDAY^^^^^RVH|||||||||CP|A\r"
            "RXR|SC^Subcutaneous^HL70162\r"
        )
        return "ONCMAR", "RAS^O17^RAS_O17", seg

    def _rds(self, p: Patient, t: datetime, order: str, rng: random.Random) -> Body:
        seg = (
            f"ORC|RE|{order}^RXSYS|D{order}^RXSYS||IP||||{_ts(t)}\r"
            f"RXD|1|{self._drug(p, rng)}|{_ts(t)}|3|VIAL^vial|SOLN^solution|{order}\r"
            "RXR|IV^Intravenous^HL70162\r"
        )
        return "RXSYS", "RDS^O13^RDS_O13", seg

    # -- noise lisguard stores and does not read (or reads and finds nothing in)

    def _adt_a08(self, p: Patient, t: datetime, order: str, rng: random.Random) -> Body:
        if rng.random() < MERGE_SHARE * 20:
            other = rng.choice(self.patients)
            return "REG", "ADT^A40^ADT_A39", f"MRG|T{other.mrn}^^^RVH^MR\r"
        return "REG", "ADT^A08^ADT_A01", f"EVN|A08|{_ts(t)}\rAL1|1|DA|PCN^PENICILLIN^L\r"

    def _adt_a04(self, p: Patient, t: datetime, order: str, rng: random.Random) -> Body:
        seg = f"EVN|A04|{_ts(t)}\rDG1|1||C90.00^MULTIPLE MYELOMA^I10|MULTIPLE MYELOMA||W\r"
        return "REG", "ADT^A04^ADT_A01", seg

    def _adt_a03(self, p: Patient, t: datetime, order: str, rng: random.Random) -> Body:
        return "REG", "ADT^A03^ADT_A03", f"EVN|A03|{_ts(t)}\r"

    def _siu(self, p: Patient, t: datetime, order: str, rng: random.Random) -> Body:
        seg = (
            f"SCH|{order}^SCHED|{order}^SCHED|||||CHEMO^Chemotherapy visit^L|NORMAL|45|min|"
            f"^^45^{_ts(t)}^{_ts(t)}|||||6033^IWU^CHIDI^^^^MD\r"
            "RGS|1|A\r"
            f"AIS|1|A|INFUSION^INFUSION VISIT^L|{_ts(t)}|||45|min\r"
        )
        return "SCHED", "SIU^S12^SIU_S12", seg

    def _mdm(self, p: Patient, t: datetime, order: str, rng: random.Random) -> Body:
        seg = (
            f"EVN|T02|{_ts(t)}\r"
            f"TXA|1|PN^Progress note^L|TX|{_ts(t)}|6033^IWU^CHIDI^^^^MD||||||||{order}||||AU\r"
            "OBX|1|TX|PNOTE^PROGRESS NOTE^L||Seen in clinic, tolerating therapy. Continue.||||||F\r"
        )
        return "NOTES", "MDM^T02^MDM_T02", seg


def feed(count: int, patients: int, tag: str, seed: int = 6) -> list[str]:
    """`count` messages over `patients` patients, MSH-10 prefixed with `tag`."""
    return list(FeedBuilder(patients, seed).messages(count, tag))

"""The feed a site sends once its interface engine filters to what lisguard reads: every message
clinically relevant, for a few dozen patients at a time.

Each patient goes through one course of treatment and its lab work, in time order and
interleaved with the other patients of the cohort: the therapy order (RDE), a baseline type &
screen and extended phenotype, dispense (RDS) and doses (RAS), IVIG for those who get it, an
SPEP with immunofixation and its result, an antibody identification with an AHG crossmatch,
a DAT, a bone marrow flow MRD, a type & screen on therapy, an IgG level and a red-cell
crossmatch order. Therapies: daratumumab (SC, IV), isatuximab, the bispecifics (teclistamab,
elranatamab, talquetamab; IVIG follows) and IVIG alone. The message shapes are those of
benchmarks/feed.py and hl7_samples/ (Epic-like pharmacy, Sunquest-like blood bank, Meditech
DAT, reference-lab SPEP/IFE, Cerner IgG, flow lab MRD).

After `patients` courses a new cohort of patients starts, so a patient's state holds about one
course (22 messages), however fast the server under test runs: two servers fed at different
rates then do the same work per message. Deterministic for a seed; `tag` makes every MSH-10,
order number and MRN unique per benchmark phase, like FeedBuilder.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from benchmarks.feed import (
    ANTI_CD38,
    FIRST,
    LAST,
    UNITS,
    Body,
    FeedBuilder,
    Patient,
    _ts,
    envelope,
)


@dataclass(frozen=True)
class Drug:
    code: str  # RXE-2 / RXA-5 as pharmacy systems send it
    dose: str
    unit: str
    route: str  # RXR-1
    sig: str


DARA_SC = Drug(ANTI_CD38[0], "1800", "mg^milligram^UCUM", "SC^Subcutaneous^HL70162", "Weekly x 8")
DARA_IV = Drug(ANTI_CD38[1], "1280", "mg^milligram^UCUM", "IV^Intravenous^HL70162", "16 mg/kg")
ISATUXIMAB = Drug(ANTI_CD38[2], "800", "mg^milligram^UCUM", "IV^Intravenous^HL70162", "10 mg/kg")
TECLISTAMAB = Drug(
    "57894-0449-01^TECVAYLI 30 MG/3 ML SC SOLN^NDC^J9380^INJECTION, TECLISTAMAB-CQYV, 0.5 MG^HCPCS",
    "4.8",
    "mg^milligram^UCUM",
    "SC^Subcutaneous^HL70162",
    "Step-up 0.06 mg/kg, 0.3 mg/kg, then 1.5 mg/kg weekly",
)
ELRANATAMAB = Drug(
    "00069-2522-02^ELREXFIO 44 MG/1.1 ML SC SOLN^NDC",
    "12",
    "mg^milligram^UCUM",
    "SC^Subcutaneous^HL70162",
    "Step-up 12 mg, 32 mg, then 76 mg weekly",
)
TALQUETAMAB = Drug(
    "TALQ^TALVEY (TALQUETAMAB-TGVS) 40 MG/ML SC SOLN^CMCRX",
    "0.01",
    "mg/kg^milligram per kilogram^UCUM",
    "SC^Subcutaneous^HL70162",
    "Step-up 0.01, 0.06, 0.4 mg/kg then 0.4 mg/kg weekly",
)
PRIVIGEN = Drug(
    "44206-0439-40^PRIVIGEN 10% 40 G/400 ML IV SOLN^NDC^J1459^INJ PRIVIGEN 500 MG^HCPCS",
    "30",
    "g^gram^UCUM",
    "IV^Intravenous^HL70162",
    "0.4 g/kg every 4 weeks",
)
GAMUNEX = Drug(
    "J1561^INJECTION, IMMUNE GLOBULIN (GAMUNEX-C/GAMMAKED), NON-LYOPHILIZED, 500 MG^HCPCS",
    "35",
    "g^gram^UCUM",
    "IV^Intravenous^HL70162",
    "0.4 g/kg every 4 weeks",
)
# (weight, therapy, gets IVIG too): who a site filtered feed is about
THERAPIES: tuple[tuple[int, Drug, bool], ...] = (
    (20, DARA_SC, False),
    (8, DARA_SC, True),
    (10, DARA_IV, False),
    (12, ISATUXIMAB, False),
    (8, TECLISTAMAB, True),
    (6, ELRANATAMAB, True),
    (4, TALQUETAMAB, True),
    (8, PRIVIGEN, False),
    (4, GAMUNEX, False),
)
# (day of the course, kind, order it belongs to): one course, in time order per patient
COURSE: tuple[tuple[float, str, str], ...] = (
    (0.0, "rde", "RX"),
    (0.1, "orm_ts", "TS1"),
    (0.4, "oru_ts", "TS1"),
    (0.5, "oru_pheno", "PH"),
    (1.0, "rds", "RX"),
    (1.1, "ras", "RX"),
    (1.3, "ras_ivig", "IG"),
    (8.0, "ras", "RX"),
    (14.0, "oml_spep", "SP"),
    (15.0, "oru_spep", "SP"),
    (15.1, "ras", "RX"),
    (21.0, "orm_bb", "BB"),
    (21.3, "oru_abid", "BB"),
    (22.0, "orm_dat", "DT"),
    (22.2, "oru_dat", "DT"),
    (28.0, "orm_mrd", "MR"),
    (29.0, "ras", "RX"),
    (30.0, "oru_mrd", "MR"),
    (35.0, "orm_ts", "TS2"),
    (35.3, "oru_ts", "TS2"),
    (35.4, "oru_igg", "IGG"),
    (35.5, "oml_xm", "XM"),
)
ISOTYPES = (
    (55, "IgG kappa monoclonal protein detected."),
    (20, "IgA lambda monoclonal protein detected."),
    (15, "Monoclonal IgG protein with lambda light chain specificity detected."),
    (10, "No monoclonal protein detected."),
)
PHENOTYPE = (
    ("1305-2^D ANTIGEN^LN", "POS"),
    ("948-0^C ANTIGEN^LN", "POS"),
    ("1159-3^c ANTIGEN^LN", "POS"),
    ("1021-5^E ANTIGEN^LN", "NEG"),
    ("ELAG^e ANTIGEN^L", "POS"),
    ("KAG^K ANTIGEN (KEL1)^L", "NEG"),
    ("KLAG^k ANTIGEN (KEL2, CELLANO)^L", "POS"),
    ("JKAAG^Jk(a) ANTIGEN^L", "POS"),
    ("JKBAG^Jk(b) ANTIGEN^L", "NEG"),
    ("1027-2^Fy(a) ANTIGEN^LN", "NEG"),
    ("1033-0^Fy(b) ANTIGEN^LN", "NEG"),
    ("SAG^S ANTIGEN^L", "NEG"),
    ("SLAG^s ANTIGEN^L", "POS"),
)
WORD = {"POS": "Positive", "NEG": "Negative"}
HEM = "8120^ABARA^CHUKWUMA^^^^MD"


@dataclass(frozen=True)
class Course:
    patient: Patient
    therapy: Drug
    ivig: Drug | None  # immunoglobulin given as well
    start: datetime


class RelevantFeedBuilder:
    """`messages(count, tag)` like FeedBuilder: cohorts of `patients` courses, one after another."""

    def __init__(self, patients: int = 40, seed: int = 6) -> None:
        self.seed, self.patients = seed, max(1, patients)
        self.shapes = FeedBuilder(1, seed)  # the message shapes feed.py builds (T&S, SPEP, RDS)
        self.therapies = [(d, ig) for weight, d, ig in THERAPIES for _ in range(weight)]
        self.isotypes = [text for weight, text in ISOTYPES for _ in range(weight)]
        self.start = datetime(2026, 1, 5, 6, 0, 0)

    def messages(self, count: int, tag: str) -> Iterator[str]:
        rng = random.Random(f"{self.seed}-relevant-{tag}")
        i = cohort = 0
        while i < count:
            for course, (day, kind, label), jitter in self._cohort(cohort, tag, rng):
                if i == count:
                    return
                t = course.start + timedelta(days=day, minutes=jitter)
                order = f"{course.patient.mrn[3:]}{label}"
                body = getattr(self, f"_{kind}")(course, t, order, rng)
                if body is not None:  # a step that is not this patient's (no IVIG)
                    yield envelope(course.patient, t, i, f"{tag}{i:08d}", body)
                    i += 1
            cohort += 1

    def _cohort(
        self, cohort: int, tag: str, rng: random.Random
    ) -> list[tuple[Course, tuple[float, str, str], int]]:
        base = self.start + timedelta(days=49 * cohort)
        steps = []
        for k in range(self.patients):
            therapy, gets_ivig = rng.choice(self.therapies)
            patient = Patient(
                mrn=f"MRN{tag}{cohort:04d}{k:03d}",
                name=f"{rng.choice(LAST)}^{rng.choice(FIRST)}^{chr(65 + k % 26)}^^^^L",
                birth=f"19{rng.randint(30, 70)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
                sex=rng.choice("MF"),
                unit=rng.choice(UNITS),
                exposed=therapy.code,
            )
            ivig = rng.choice((PRIVIGEN, GAMUNEX)) if gets_ivig else None
            course = Course(patient, therapy, ivig, base + timedelta(hours=rng.randint(0, 168)))
            steps += [(course, step, rng.randint(0, 90)) for step in COURSE]
        # the cohort's messages in the order they happen, patients interleaved
        steps.sort(key=lambda s: s[0].start + timedelta(days=s[1][0], minutes=s[2]))
        return steps

    # -- pharmacy

    def _rde(self, c: Course, t: datetime, order: str, rng: random.Random) -> Body:
        d = c.therapy
        seg = (
            f"ORC|NW|{order}^ONCORX|||||||{_ts(t)}|RN5^PIKE^DANA||6033^IWU^CHIDI^^^^MD\r"
            f"RXE||{d.code}|{d.dose}||{d.unit}|INJ^injection^L|^{d.sig}||N|||||RPH44^KWAN^LEO|"
            f"{order}\r"
            f"TQ1|1||Q1W^Every week^HL70335|||8^wk|{_ts(c.start + timedelta(days=1))}||"
            "R^Routine^HL70485\r"
            f"RXR|{d.route}\r"
        )
        return "ONCORX", "RDE^O11^RDE_O11", seg

    def _administration(self, d: Drug, t: datetime, order: str, note: str) -> Body:
        seg = (
            f"ORC|RE|{order}^ONCORX|||CM||||{_ts(t)}\r"
            f"RXA|0|1|{_ts(t - timedelta(hours=1))}|{_ts(t)}|{d.code}|{d.dose}|{d.unit}||"
            f"^{note}|RN5^PIKE^DANA|^^^ONCDAY^^^^^RVH|||||||||CP|A\r"
            f"RXR|{d.route}\r"
        )
        return "ONCMAR", "RAS^O17^RAS_O17", seg

    def _ras(self, c: Course, t: datetime, order: str, rng: random.Random) -> Body:
        day = (t - c.start).days + 1
        return self._administration(c.therapy, t, order, f"C1D{day}")

    def _ras_ivig(self, c: Course, t: datetime, order: str, rng: random.Random) -> Body | None:
        if c.ivig is None:
            return None
        return self._administration(c.ivig, t, order, "Immunoglobulin replacement")

    def _rds(self, c: Course, t: datetime, order: str, rng: random.Random) -> Body:
        return self.shapes._rds(c.patient, t, order, rng)

    # -- blood bank

    def _orm_ts(self, c: Course, t: datetime, order: str, rng: random.Random) -> Body:
        return self.shapes._orm_ts(c.patient, t, order, rng)

    def _oru_ts(self, c: Course, t: datetime, order: str, rng: random.Random) -> Body:
        return self.shapes._oru_ts(c.patient, t, order, rng)

    def _oru_pheno(self, c: Course, t: datetime, order: str, rng: random.Random) -> Body:
        k = "POS" if rng.random() < 0.09 else "NEG"  # about 9 % of people are K+
        rows = "".join(
            f"OBX|{n}|CE|{code}||{k if code.startswith('KAG') else v}^"
            f"{WORD[k if code.startswith('KAG') else v]}^L||||||F|||{_ts(t)}\r"
            for n, (code, v) in enumerate(PHENOTYPE, 1)
        )
        seg = (
            f"ORC|RE|{order}^CPOE|BB{order}^HEMOTRAC||CM||||{_ts(t)}\r"
            f"OBR|1|{order}^CPOE|BB{order}^HEMOTRAC|RBCPHEN^RBC ANTIGEN PHENOTYPE, EXTENDED^L|R|"
            f"|{_ts(t)}|||||||{_ts(t)}|BLD&Whole blood&HL70070|{HEM}||||||{_ts(t)}||BB|F\r"
            + rows
            + "NTE|1|L|Extended phenotype on a pre-treatment sample.\r"
        )
        return "HEMOTRAC", "ORU^R01", seg

    def _orm_bb(self, c: Course, t: datetime, order: str, rng: random.Random) -> Body:
        seg = (
            f"ORC|NW|{order}A^CPOE|||||||{_ts(t)}|||{HEM}\r"
            f"OBR|1|{order}A^CPOE||888-8^ANTIBODY IDENTIFICATION^LN|R||{_ts(t)}||||||"
            f"Screen positive; Hb 7.9|||{HEM}\r"
            f"ORC|NW|{order}X^CPOE|||||||{_ts(t)}|||{HEM}\r"
            f"OBR|2|{order}X^CPOE||1250-0^CROSSMATCH, AHG (MAJOR)^LN|S||{_ts(t)}||||||"
            f"Crossmatch 2 units RBC|||{HEM}\r"
        )
        return "CPOE", "ORM^O01^ORM_O01", seg

    def _oru_abid(self, c: Course, t: datetime, order: str, rng: random.Random) -> Body:
        seg = (
            f"ORC|RE|{order}A^CPOE|BB{order}^BBIS||CM\r"
            f"OBR|1|{order}A^CPOE|BB{order}^BBIS|888-8^ANTIBODY IDENTIFICATION^LN|||{_ts(t)}|||"
            f"||||{_ts(t)}||{HEM}||||||{_ts(t)}||BB|F\r"
            "OBX|1|CWE|888-8^ANTIBODY IDENTIFIED^LN||NONE^No alloantibody identified with "
            f"DTT-treated panel^L||||||F|||{_ts(t)}\r"
        )
        return "BBIS", "ORU^R01^ORU_R01", seg

    def _orm_dat(self, c: Course, t: datetime, order: str, rng: random.Random) -> Body:
        seg = (  # Meditech order entry
            f"ORC|NW|{order}|||||^^^{_ts(t)}^^R||{_ts(t)}|NRS2203^GAGNON^ELISE||{HEM}\r"
            f"OBR|1|{order}||DATP^DIRECT COOMBS POLYSPECIFIC^L|R||{_ts(t)}||||||"
            f"Pre-dose, Hb 9.1|||{HEM}\r"
        )
        return "MT_OE", "ORM^O01", seg

    def _oru_dat(self, c: Course, t: datetime, order: str, rng: random.Random) -> Body:
        positive = rng.random() < 0.4  # the drug coats red cells: often positive on therapy
        value, flag, igg = (
            ("POS^Positive^L", "A", "1+") if positive else ("NEG^Negative^L", "", "0")
        )
        seg = (  # Sunquest blood bank
            f"ORC|RE|{order}|BB{order}^SQ||CM\r"
            f"OBR|1|{order}|BB{order}^SQ|DAT^DIRECT ANTIGLOBULIN TEST^L^1007-4^Direct "
            "antiglobulin test.poly specific reagent [Presence] on Red Blood Cells^LN|||"
            f"{_ts(t)}|||||||{_ts(t)}||{HEM}||||||{_ts(t)}||BB|F\r"
            f"OBX|1|CE|DATPS^DAT POLYSPECIFIC^L^1007-4^^LN||{value}|||{flag}|||F|||{_ts(t)}\r"
            f"OBX|2|ST|DATIGG^DAT ANTI-IGG^L^1006-6^^LN||{igg}||||||F|||{_ts(t)}\r"
            f"OBX|3|ST|DATC3^DAT ANTI-C3D^L^1004-1^^LN||0||||||F|||{_ts(t)}\r"
        )
        return "SQ", "ORU^R01", seg

    def _oml_xm(self, c: Course, t: datetime, order: str, rng: random.Random) -> Body:
        seg = (
            f"ORC|NW|{order}^EPIC|||||||{_ts(t)}|RN5120^TILLMAN^ROSE||{HEM}\r"
            f"OBR|1|{order}^EPIC||XM2^CROSSMATCH 2 UNITS^L|R||{_ts(t)}||||||"
            f"Pre-procedure, possible transfusion|||{HEM}\r"
        )
        return "EPIC", "OML^O21^OML_O21", seg

    # -- protein lab, flow, immunoglobulins

    def _oml_spep(self, c: Course, t: datetime, order: str, rng: random.Random) -> Body:
        return self.shapes._oml_spep(c.patient, t, order, rng)

    def _oru_spep(self, c: Course, t: datetime, order: str, rng: random.Random) -> Body:
        seg = (
            f"ORC|RE|{order}^EPICLAB|S{order}^LABCORE||CM\r"
            f"OBR|1|{order}^EPICLAB|S{order}^LABCORE|24351-9^Protein electrophoresis panel^LN^"
            f"SPEP^PROTEIN ELECTROPHORESIS SERUM^99LAB|||{_ts(t)}|||||||{_ts(t)}||"
            f"5018^GRAVES^NATHANIEL^^^^MD||||||{_ts(t)}||CH|F\r"
            f"OBX|1|NM|33358-3^M-PROTEIN^LN||{rng.randint(1, 30) / 10}|g/dL^gram per deciliter"
            f"^UCUM|0.0|H|||F|||{_ts(t)}\r"
            f"OBX|2|TX|25700-6^IMMUNOFIXATION SERUM^LN||{rng.choice(self.isotypes)}||||||F|||"
            f"{_ts(t)}\r"
        )
        return "LABCORE", "ORU^R01^ORU_R01", seg

    def _orm_mrd(self, c: Course, t: datetime, order: str, rng: random.Random) -> Body:
        seg = (
            f"ORC|NW|{order}^CPOE|||||||{_ts(t)}|||{HEM}\r"
            f"OBR|1|{order}^CPOE||MRDFC^PLASMA CELL MRD, FLOW CYTOMETRY (BONE MARROW)^L|R||"
            f"{_ts(t)}||||||Post-induction MRD assessment||BM&Bone marrow&HL70070|{HEM}\r"
        )
        return "CPOE", "ORM^O01", seg

    def _oru_mrd(self, c: Course, t: datetime, order: str, rng: random.Random) -> Body:
        seg = (
            f"ORC|RE|{order}^CPOE|FC{order}^FLOWLAB||CM\r"
            f"OBR|1|{order}^CPOE|FC{order}^FLOWLAB|MRDFC^PLASMA CELL MRD, FLOW CYTOMETRY (BONE "
            f"MARROW)^L|||{_ts(t)}|||||||{_ts(t)}|BM&Bone marrow&HL70070|{HEM}||||||{_ts(t)}||"
            "FC|F\r"
            "OBX|1|TX|MRDRES^MRD RESULT^L||No residual clonal plasma cells detected (limit of "
            f"detection 2 x 10^-6 events).||||||F|||{_ts(t)}\r"
            "OBX|2|TX|MRDGATE^GATING STRATEGY^L||Plasma cells gated on CD138/VS38c and CD229; "
            f"CD38 multi-epitope reagent used.||||||F|||{_ts(t)}\r"
        )
        return "FLOWLAB", "ORU^R01", seg

    def _oru_igg(self, c: Course, t: datetime, order: str, rng: random.Random) -> Body:
        value = rng.randint(250, 1200)
        seg = (
            f"ORC|RE|{order}^POWERCHART|CL{order}^CERNER||CM\r"
            f"OBR|1|{order}^POWERCHART|CL{order}^CERNER|IGG^IMMUNOGLOBULIN G^CERNER^2465-3^IgG "
            f"[Mass/volume] in Serum or Plasma^LN|||{_ts(t)}|||||||{_ts(t)}||{HEM}||||||"
            f"{_ts(t)}||CH|F\r"
            f"OBX|1|NM|IGG^IMMUNOGLOBULIN G^CERNER^2465-3^IgG SerPl-mCnc^LN||{value}|mg/dL^"
            f"milligram per deciliter^UCUM|700-1600|{'L' if value < 700 else 'N'}|||F|||"
            f"{_ts(t)}\r"
        )
        return "CERNER_LAB", "ORU^R01^ORU_R01", seg


def relevant_feed(count: int, patients: int, tag: str, seed: int = 6) -> list[str]:
    return list(RelevantFeedBuilder(patients, seed).messages(count, tag))

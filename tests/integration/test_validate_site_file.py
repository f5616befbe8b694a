"""The go-live loop a lab runs: validate its own feed, paste the site file the report offers for
its unmapped local codes, validate again, and see those codes map and their alerts fire.

The feed (`local_feed`) is what a site's export looks like: several vendors' styles (Epic-like
RDE, Cerner-like ORM, a Sunquest-like OUL with ORC after OBR, v2.3 and v2.5.1, an MLLP-framed
file, a batch file, LF line ends), local codes lisguard cannot know ("BBPREOP^BB PREOP PANEL",
"IMFX^IMFIX SERUM", "RX88123^DARATUMU 16MG/KG IVPB", "77001^DARZALEXFASPRO1800MG", "TH^TYPE AND
HOLD", "FCMBM^FCM BONE MARROW", an IgG sent as a bare code), and names that only look alike.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

BIN = str(Path(sys.executable).parent / "lisguard")

# Names that look like what lisguard reads and are not (or are turned away by the knowledge
# base on purpose): none may be a candidate.
LOOKALIKES = (
    "DOS^DATE OF SERVICE^L",
    "FLWNT^FLOWSHEET NOTE^L",
    "IGG4^IGG SUBCLASS 4^L",
    "HGBEP^HEMOGLOBIN ELECTROPHORESIS^L",
    "PKFLOW^PEAK FLOW^L",
    "BBCMT^BB COMMENT^L",
    "LPEP^LIPOPROTEIN ELECTROPHORESIS^L",
    "CD4^CD4 COUNT FLOW^L",
    "ABSNEU^ABS NEUTROPHILS^L",
)
LOOKALIKE_ORDERS = (
    "HLAAB^HLA ANTIBODY SCREEN^L",
    "UPEP^URINE PROTEIN ELECTROPHORESIS^L",
    "EXM^ELECTRONIC XM^L",
)
LOOKALIKE_DRUGS = ("RX55^DARAPRIM 25 MG TAB^99RX", "RX56^DARUNAVIR 800 MG TAB^99RX")


def _msh(app: str, when: str, mtype: str, cid: str, version: str = "2.5.1") -> str:
    return f"MSH|^~\\&|{app}|VALH|LISGUARD|VALH|{when}||{mtype}|{cid}|P|{version}|||AL|NE"


def _pid(mrn: str) -> str:
    return f"PID|1||{mrn}^^^VALH^MR||TESTPATIENT^{mrn}^^^^^L||19550101|F"


def local_feed(directory: Path) -> Path:
    """Write the feed's files into `directory`; return it (validate reads directories)."""
    directory.mkdir(parents=True, exist_ok=True)
    a, b = "VAL001", "VAL002"
    pharmacy = [
        # Epic-like RDE: the pharmacy's own code, a truncated name
        "\r".join((
            _msh("EPICRX", "20260301090000", "RDE^O11^RDE_O11", "VRX0001"), _pid(a),
            "ORC|NW|VORD1^EPIC|||||||20260301090000",
            "RXE|^^^20260303^^R|RX88123^DARATUMU 16MG/KG IVPB^99RX|16||mg/kg|IVPB||||||||||VORD1",
            "RXR|IV^Intravenous^HL70162",
        )),
        # an infusion centre's RAS: the product name glued to its dose
        "\r".join((
            _msh("INFMAR", "20260302100000", "RAS^O17^RAS_O17", "VRX0002"), _pid(b),
            "ORC|RE|VORD2^INF|||CM||||20260302100000",
            "RXA|0|1|20260302093000|20260302094500|77001^DARZALEXFASPRO1800MG^LOCALRX|1800|mg"
            "|||||||||||||CP|A",
            "RXR|SC^Subcutaneous^HL70162",
        )),
        # other drugs whose names start like ours
        *(
            "\r".join((
                _msh("EPICRX", "20260301091500", "RDE^O11^RDE_O11", f"VRX01{i}"), _pid(a),
                f"ORC|NW|VORDX{i}^EPIC|||||||20260301091500",
                f"RXE|^^^20260301^^R|{drug}|1||TAB|PO||||||||||VORDX{i}",
            ))
            for i, drug in enumerate(LOOKALIKE_DRUGS)
        ),
    ]
    (directory / "01-pharmacy.hl7").write_text("\r".join(pharmacy) + "\r")
    lab = [
        # Cerner-like ORM, v2.3: the blood bank's pre-op panel under a local code
        "\r".join((
            _msh("CERNERLAB", "20260305080000", "ORM^O01", "VLB0001", "2.3"), _pid(a),
            "ORC|NW|VLO1^CPOE|||||||20260305080000",
            "OBR|1|VLO1^CPOE||BBPREOP^BB PREOP PANEL^L|R||20260305075500",
        )),
        # Sunquest-like OUL: ORC after its OBR; serum immunofixation under a local code
        "\r".join((
            _msh("SQLAB", "20260306110000", "OUL^R22^OUL_R22", "VLB0002"), _pid(a),
            "SPM|1|||SER^Serum^HL70487",
            "OBR|1|VLO2^SQ|VLF2^SQ|IMFX^IMFIX SERUM^99LAB|||20260306080000",
            "ORC|RE|VLO2^SQ|VLF2^SQ||CM",
            "OBX|1|TX|IMFXI^IMFIX INTERP^99LAB||Faint IgG kappa band||||||F",
        )),
        # a blood bank order that is no test of the patient's red cells (the review says so)
        "\r".join((
            _msh("CERNERLAB", "20260305081000", "ORM^O01", "VLB0007", "2.3"), _pid(a),
            "ORC|NW|VLO7^CPOE|||||||20260305081000",
            "OBR|1|VLO7^CPOE||BBREC^BB PRIOR RECORD CHECK^L|R||20260305075500",
        )),
        # the other patient's "type and hold" order
        "\r".join((
            _msh("CERNERLAB", "20260307080000", "ORM^O01", "VLB0003", "2.3"), _pid(b),
            "ORC|NW|VLO3^CPOE|||||||20260307080000",
            "OBR|1|VLO3^CPOE||TH^TYPE AND HOLD^L|R||20260307075500",
        )),
    ]
    # an LF-separated file, as some exports are
    (directory / "02-lab.txt").write_text("\n".join(m.replace("\r", "\n") for m in lab) + "\n")
    results = [
        # flow cytometry of the marrow under a local code, its results naming CD38
        "\r".join((
            _msh("FLOWLAB", "20260308150000", "ORU^R01^ORU_R01", "VLB0004"), _pid(a),
            "ORC|RE|VLO4^EPIC|VLF4^FLOW||CM",
            "OBR|1|VLO4^EPIC|VLF4^FLOW|FCMBM^FCM BONE MARROW^L|||20260308090000",
            "OBX|1|NM|CD38PCT^CD38 POSITIVE EVENTS^L||0.01|%||||F",
        )),
        # quantitative immunoglobulins, the IgG sent as a bare code
        "\r".join((
            _msh("CHEMLAB", "20260309120000", "ORU^R01^ORU_R01", "VLB0005"), _pid(a),
            "ORC|RE|VLO5^EPIC|VLF5^CHEM||CM",
            "OBR|1|VLO5^EPIC|VLF5^CHEM|QIG^IMMUNOGLOBULINS QUANT^L|||20260309080000",
            "OBX|1|NM|IGG^^L||250|mg/dL|700-1600|L|||F",
        )),
        # the look-alikes, as results of one order and as orders
        "\r".join((
            _msh("CHEMLAB", "20260309130000", "ORU^R01^ORU_R01", "VLB0006"), _pid(a),
            "ORC|RE|VLO6^EPIC|VLF6^CHEM||CM",
            "OBR|1|VLO6^EPIC|VLF6^CHEM|MISC^MISCELLANEOUS RESULTS^L|||20260309080000",
            *(f"OBX|{i}|ST|{code}||x||||||F" for i, code in enumerate(LOOKALIKES, 1)),
        )),
        *(
            "\r".join((
                _msh("CPOE", "20260309140000", "ORM^O01^ORM_O01", f"VLB01{i}"), _pid(a),
                f"ORC|NW|VLOX{i}^CPOE|||||||20260309140000",
                f"OBR|1|VLOX{i}^CPOE||{order}|R||20260309135500",
            ))
            for i, order in enumerate(LOOKALIKE_ORDERS)
        ),
    ]
    # an MLLP-framed capture
    (directory / "03-results.mllp").write_bytes(
        b"".join(b"\x0b" + m.encode() + b"\r\x1c\r" for m in results)
    )
    batch = "\r".join((
        "FHS|^~\\&|BATCHLAB|VALH|LISGUARD|VALH|20260310000000",
        "BHS|^~\\&|BATCHLAB|VALH|LISGUARD|VALH|20260310000000",
        _msh("BATCHLAB", "20260310010000", "ADT^A08^ADT_A01", "VBT0001"), _pid(b),
        "BTS|1", "FTS|1",
    ))
    (directory / "04-batch.hl7").write_text(batch + "\r")
    return directory


def validate(*args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc = subprocess.run([BIN, "validate", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = Path(args[args.index("--out") + 1])
    return proc, json.loads((out / "report.json").read_text())


def alerts_of(report: dict[str, Any]) -> dict[str, int]:
    return {rule: n for rule, n in report["alerts"]["by_rule"].items() if n}


def test_pasted_site_file_maps_the_local_codes_and_their_alerts_fire(tmp_path: Path) -> None:
    feed = local_feed(tmp_path / "feed")
    _, first = validate(str(feed), "--out", str(tmp_path / "run1"))
    assert first["messages"]["total"] == 15
    assert first["messages"]["by_outcome"]["accepted"] == 15  # the ADT A08 too: ADT is read
    assert alerts_of(first) == {}, "nothing maps yet: no drug on file, no known test"
    tests = {(t["field"], t["code"]): t for t in first["unmapped"]["tests"]}
    assert {k: t["suggested_test"] for k, t in tests.items()} == {
        ("OBR-4", "BBPREOP"): "type_and_screen",
        ("OBR-4", "IMFX"): "ife_serum",
        ("OBR-4", "TH"): "type_and_screen",
        ("OBR-4", "FCMBM"): "flow_mrd",
        ("OBX-3", "IGG"): "immunoglobulin_g",
        ("OBR-4", "BBREC"): "type_and_screen",
    }
    drugs = {d["code"]: d for d in first["unmapped"]["drugs"]}
    assert {c: d["drug"] for c, d in drugs.items()} == {
        "RX88123": "daratumumab_iv",
        "77001": "daratumumab_sc",
    }
    assert tests[("OBR-4", "BBPREOP")]["first_seen"]["message"] == "VLB0001"
    assert drugs["RX88123"]["count"] == 1
    for candidate in [*tests.values(), *drugs.values()]:
        assert yaml.safe_load(candidate["snippet"]), "each snippet is a site file of its own"

    # the reviewer finds the record check wrong, deletes it, pastes the rest and runs again
    site = yaml.safe_load(first["unmapped"]["site_file"])
    tas = next(e for e in site["tests"] if e["id"] == "type_and_screen")
    assert tas["local_codes"] == ["BBPREOP", "BBREC", "TH"]
    tas["local_codes"].remove("BBREC")
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site))
    (tmp_path / "lisguard.yaml").write_text("knowledge:\n  files: [site.yaml]\n")
    cfg = tmp_path / "lisguard.yaml"
    _, second = validate("--config", str(cfg), str(feed), "--out", str(tmp_path / "run2"))

    assert [t["code"] for t in second["unmapped"]["tests"]] == ["BBREC"]  # still unmapped
    assert second["unmapped"]["drugs"] == []
    orders = {r["code"]: r["maps_to"] for r in second["tests"]["orders"]}
    assert orders["BBPREOP"] == "iat_serology"
    assert orders["IMFX"] == "ife"
    assert orders["FCMBM"] == "flow_mrd"
    assert orders["HLAAB"] == orders["UPEP"] == orders["EXM"] == "unmapped"
    results = {r["code"]: r["maps_to"] for r in second["tests"]["results"]}
    assert results["IGG"] == "igg"
    assert alerts_of(second) == {
        "baseline-workup": 2,  # each patient's first anti-CD38 order or dose
        "bb-serology": 2,  # BB PREOP PANEL (patient A), TYPE AND HOLD (patient B)
        "spep-ife": 1,  # IMFIX SERUM
        "flow-mrd": 1,  # FCM BONE MARROW
        "hypogammaglobulinemia": 1,  # IgG 250 mg/dL on daratumumab
    }
    samples = second["alerts"]["samples"]
    bb = {s["alert"]["message"] for s in samples["bb-serology"]["sampled"]}
    assert bb == {"VLB0001", "VLB0003"}
    assert {s["alert"]["drugs"][0] for s in samples["baseline-workup"]["sampled"]} == {
        "daratumumab_iv",
        "daratumumab_sc",
    }
    sign = second["sign_off"]
    assert sign["configuration"]["file"] == str(cfg)
    assert [Path(f["path"]).name for f in sign["knowledge_base"]["files"]][-1] == "site.yaml"
    assert sign["knowledge_base"]["sha256"] != first["sign_off"]["knowledge_base"]["sha256"]
    assert sign["knowledge_base"]["version"] != first["sign_off"]["knowledge_base"]["version"]


def test_lookalikes_are_not_candidates(tmp_path: Path) -> None:
    feed = local_feed(tmp_path / "feed")
    _, report = validate(str(feed), "--out", str(tmp_path / "run"))
    flagged = {t["code"] for t in report["unmapped"]["tests"]}
    flagged |= {d["code"] for d in report["unmapped"]["drugs"]}
    looked = [x.split("^")[0] for x in (*LOOKALIKES, *LOOKALIKE_ORDERS, *LOOKALIKE_DRUGS)]
    seen = {r["code"] for key in ("orders", "results") for r in report["tests"][key]}
    assert set(looked) - {"RX55", "RX56"} <= seen, "every look-alike was read"
    assert flagged.isdisjoint(looked)

"""Field names for the message browser (lisguard.hl7v2.field_names): by segment and by the
message's own version, Z-segments and unknown versions by number only, and dead letters split
as tolerantly as they came."""

from __future__ import annotations

from lisguard.hl7v2.field_names import names_version, readable, segment_fields, segment_table

ORDER = (
    "MSH|^~\\&|OE|SMH|LISGUARD|SMH|20260302080000||ORM^O01|ORM1|P|{version}\r"
    "PID|1||MRN1^^^SMH^MR~444^^^SSA^SS||DOE^JANE||19500101|F\r"
    "ORC|NW|P1\r"
    "OBR|1|P1||890-4^Antibody screen^LN|||20260302075500\r"
    "ZLG|1|site value\\T\\kept"
)


def fields_of(table: dict, name: str) -> dict[int, dict]:
    [segment] = [s for s in table["segments"] if s["name"] == name]
    return {f["number"]: f for f in segment["fields"]}


def test_versions_are_taken_from_msh_12_or_the_nearest_the_reference_has() -> None:
    assert names_version("2.5.1") == ("2.5.1", True)
    assert names_version("2.3.1^USA") == ("2.3.1", True)  # VID: the version is its first part
    assert names_version("2.4.1") == ("2.4", False)
    assert names_version("2.9") == ("2.5.1", False)
    assert names_version("") == ("2.5.1", False)
    assert names_version("nonsense") == ("2.5.1", False)


def test_fields_are_named_by_segment_and_version() -> None:
    table = segment_table(ORDER.format(version="2.5.1"))
    assert (table["version"], table["names_from"], table["exact"]) == ("2.5.1", "2.5.1", True)
    msh = fields_of(table, "MSH")
    # MSH-1 is the field separator itself, so MSH-9 is the message type, as the standard counts
    assert (msh[1]["value"], msh[2]["value"]) == ("|", "^~\\&")
    assert (msh[9]["name"], msh[9]["value"]) == ("Message Type", "ORM^O01")
    assert [(c["name"], c["value"]) for c in msh[9]["components"]] == [
        ("Message Code", "ORM"),
        ("Trigger Event", "O01"),
    ]
    assert msh[10]["name"] == "Message Control ID"
    pid = fields_of(table, "PID")
    assert (pid[3]["name"], pid[3]["datatype"]) == ("Patient Identifier List", "CX")
    parts = {(c["repetition"], c["name"]): c["value"] for c in pid[3]["components"]}
    assert parts[(1, "ID Number")] == "MRN1"
    assert parts[(1, "Assigning Authority")] == "SMH"
    assert parts[(2, "Identifier Type Code")] == "SS"  # every repetition, each named
    assert 2 not in pid  # empty fields are left out; their numbers show the gap
    obr = fields_of(table, "OBR")
    assert obr[4]["name"] == "Universal Service Identifier"
    assert obr[7]["name"] == "Observation Date Time"


def test_a_z_segment_is_numbered_and_kept_verbatim() -> None:
    table = segment_table(ORDER.format(version="2.5.1"))
    [zlg] = [s for s in table["segments"] if s["name"] == "ZLG"]
    assert zlg["known"] is False and zlg["title"] == "Site-defined segment"
    values = {f["number"]: (f["name"], f["value"]) for f in zlg["fields"]}
    assert values == {1: ("", "1"), 2: ("", "site value\\T\\kept")}  # escapes as on the wire


def test_names_follow_the_version_of_the_message() -> None:
    old = fields_of(segment_table(ORDER.format(version="2.3")), "MSH")
    # 2.3 calls MSH-9's first component "Message Type" (CM_MSG), 2.5.1 "Message Code" (MSG)
    assert [c["name"] for c in old[9]["components"]] == ["Message Type", "Trigger Event"]
    assert segment_fields("SPM", "2.3") is None  # the specimen segment came with 2.5
    assert segment_fields("SPM", "2.5.1") is not None
    unknown = segment_table(ORDER.format(version="2.9"))
    assert (unknown["names_from"], unknown["exact"]) == ("2.5.1", False)
    assert fields_of(unknown, "PID")[3]["name"] == "Patient Identifier List"


def test_a_dead_letter_is_split_as_far_as_it_goes() -> None:
    text = "MSH#^~\\&#LAB#HOSP#LG#BB#2026##ORM^O01#BAD1#P#2.5\rPID#1##MRN7\rthis is not a segment"
    table = segment_table(text)
    msh = fields_of(table, "MSH")
    assert (msh[1]["value"], msh[10]["value"]) == ("#", "BAD1")  # the sender's own delimiters
    assert fields_of(table, "PID")[3]["value"] == "MRN7"
    last = table["segments"][-1]
    assert last["name"] == "" and last["title"] == "not a segment"
    assert last["fields"][0]["value"] == "this is not a segment"
    assert segment_table("")["segments"] == []


def test_names_read_as_the_standard_writes_them() -> None:
    assert readable("SET_ID_PID") == "Set ID PID"
    assert readable("MOTHER_S_MAIDEN_NAME") == "Mother's Maiden Name"
    assert readable("DEGREE_E_G_MD") == "Degree (e.g. MD)"
    assert readable("ID_NUMBER_ST") == "ID Number"  # a version's datatype suffix dropped
    assert readable("DATE_TIME_OF_BIRTH") == "Date Time of Birth"

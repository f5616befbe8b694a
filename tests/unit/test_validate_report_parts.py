"""The report's parts: site-file snippets the knowledge loader accepts, the SVG charts, the
progress line (lisguard.validation.snippets, charts, run.Progress)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from lisguard.domain.facts import Coded
from lisguard.domain.knowledge import (
    KnowledgeBase,
    KnowledgeBaseError,
    TestCategory,
    load_knowledge_base,
)
from lisguard.validation.charts import bar_chart, column_chart, daily_points, gaps, nice_ticks
from lisguard.validation.run import Progress, feed_files
from lisguard.validation.snippets import entry_for_drug, entry_for_test, name_pattern, render


def load(tmp_path: Path, text: str) -> KnowledgeBase:
    site = tmp_path / "site.yaml"
    site.write_text(text)
    return load_knowledge_base([site])


def test_a_snippet_is_a_site_file_that_maps_its_codes(tmp_path: Path) -> None:
    entries = [
        entry_for_test("type_and_screen", [("BBPREOP", "L")], ["BB PREOP PANEL"], "seen 3"),
        entry_for_test("type_and_screen", [("TH", "L")], ["TYPE AND HOLD"], "seen 1"),
        # odd characters a local code may hold: quotes, a colon, a hash, a backslash
        entry_for_test("ife_serum", [('IF"E:#1\\', "99LAB")], ["X"], "odd: # and 'quotes'"),
        entry_for_test("antibody_screen", [("890-4", "LN"), ("ABX", "L")], ["AB SCRN"], ""),
        entry_for_drug("daratumumab_iv", "RX88123", "DARATUMU", "truncated\nname"),
    ]
    text = render(entries)
    assert text.count("- id: type_and_screen") == 1, "one entry an id (the loader refuses two)"
    kb = load(tmp_path, text)
    assert kb.categorize(Coded("BBPREOP", "whatever", "L")) == {TestCategory.IAT_SEROLOGY}
    assert kb.categorize(Coded("TH", "", "L")) == {TestCategory.IAT_SEROLOGY}
    assert kb.categorize(Coded('IF"E:#1\\', "", "99LAB")) == {TestCategory.IFE}
    assert kb.categorize(Coded("ABX", "", "L")) == {TestCategory.IAT_SEROLOGY}
    drug = kb.drug_for_code(Coded("RX88123", "", "99RX"))
    assert drug is not None and drug.id == "daratumumab_iv"
    # nothing else changed: the lists are added to ours
    assert kb.categorize(Coded("890-4", "Antibody screen", "LN")) == {TestCategory.IAT_SEROLOGY}
    assert "890-4" in kb.tests["antibody_screen"].loinc


def test_a_code_less_element_gets_a_pattern_for_its_name_alone(tmp_path: Path) -> None:
    pattern = name_pattern("IMFIX  SERUM (SEND-OUT)")
    assert re.search(pattern, "IMFIX SERUM (SEND-OUT)", re.IGNORECASE)
    assert not re.search(pattern, "IMFIX SERUM (SEND-OUT) URINE", re.IGNORECASE)
    kb = load(tmp_path, render([entry_for_test("ife_serum", [], ["IMFIX SERUM (SEND-OUT)"], "")]))
    assert kb.categorize(Coded("", "imfix serum (send-out)", "")) == {TestCategory.IFE}
    kb = load(tmp_path, render([entry_for_drug("daratumumab_sc", "", "DARZFASP", "")]))
    drug = kb.drug_for_code(Coded("", "DARZFASP 1800 MG", ""))
    assert drug is not None and drug.id == "daratumumab_sc"


def test_a_bad_loinc_code_goes_in_as_a_local_code(tmp_path: Path) -> None:
    entry = entry_for_test("spep", [("1234-0", "LN")], [], "")  # fails the check digit
    assert entry.lists == {"local_codes": ["1234-0"]}
    load(tmp_path, render([entry]))  # loads


def test_the_loader_still_refuses_what_it_refuses(tmp_path: Path) -> None:
    # a drug local code that another drug claims: a snippet cannot slip that past the loader
    entries = [
        entry_for_drug("daratumumab_iv", "X1", "", ""),
        entry_for_drug("privigen", "X1", "", ""),
    ]
    with pytest.raises(KnowledgeBaseError, match="given for both"):
        load(tmp_path, render(entries))


def test_ticks_are_round_and_reach_the_top() -> None:
    assert nice_ticks(0) == [0, 1]
    assert nice_ticks(3) == [0, 1, 2, 3]
    assert nice_ticks(87) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(12_000) == [0, 5000, 10_000, 15_000]


def test_days_without_messages_are_plotted_and_listed() -> None:
    points = daily_points([("2026-01-01", 5), ("2026-01-04", 2), ("unknown", 9), ("2026-01-05", 1)])
    assert points == [
        ("2026-01-01", 5), ("2026-01-02", 0), ("2026-01-03", 0), ("2026-01-04", 2),
        ("2026-01-05", 1),
    ]
    assert gaps(points) == [("2026-01-02", "2026-01-03", 2)]
    svg = column_chart(points, label="per day")
    assert svg.count("<rect") == 5
    assert "<title>2026-01-02: 0</title>" in svg
    # a stray date decades away: only the days seen
    assert len(daily_points([("1988-08-18", 1), ("2026-01-01", 1)])) == 2


def test_chart_text_is_escaped() -> None:
    svg = bar_chart([("<script>x</script>", 3), ("A&B", 1)], label='"quoted"')
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "A&amp;B" in svg
    assert 'aria-label="&quot;quoted&quot;"' in svg


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_a_bar_on_a_terminal_and_nothing_on_a_short_plain_run(
    tmp_path: Path,
) -> None:
    from lisguard.hl7v2.relevance import Relevance
    from lisguard.intake import IngestPolicy, read_message

    feed = tmp_path / "f.hl7"
    text = "MSH|^~\\&|A|B|C|D|20260101||ADT^A08|1|P|2.5\rPID|1||X\r"
    feed.write_text(text * 2000)
    reading = read_message(text, IngestPolicy(), Relevance(load_knowledge_base()))
    tty = _Tty()
    bar = Progress(tty, feed.stat().st_size)
    bar.every = 0.0
    for _ in range(2048):
        bar.message(feed, reading)
    bar.finish()
    assert "\r[" in tty.getvalue() and "messages" in tty.getvalue()
    assert tty.getvalue().endswith("\r\x1b[K")
    plain = io.StringIO()
    quiet = Progress(plain, feed.stat().st_size)  # every 30 s: nothing in a short run
    for _ in range(2048):
        quiet.message(feed, reading)
    quiet.finish()
    assert plain.getvalue() == ""


def test_a_directory_gives_its_feed_files_and_skips_the_rest(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.txt").write_bytes(b"\xef\xbb\xbf\x0bMSH|^~\\&|A\r")
    (tmp_path / "1.hl7").write_bytes(b"FHS|^~\\&|A\r")
    (tmp_path / "README.md").write_text("# notes")
    (tmp_path / ".hidden.hl7").write_text("MSH|^~\\&|A\r")
    files, skipped = feed_files([tmp_path])
    assert files == [tmp_path / "1.hl7", tmp_path / "b" / "2.txt"]
    assert skipped == [tmp_path / "README.md"]
    named = tmp_path / "README.md"
    assert feed_files([named]) == ([named], []), "a file named is read as check reads it"

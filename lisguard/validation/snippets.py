"""Site-file YAML for the unmapped candidates, in the form the knowledge loader reads
(lisguard.domain.kb_loader, config/site.example.yaml): an entry naming an existing test or drug
by `id` and giving `local_codes` (or `loinc`, `name_patterns` for tests, `context_aliases` for
drugs). Those lists are ADDED to the knowledge base's, so a snippet changes nothing else.

Each candidate gets a snippet that loads on its own; `site_file` groups every candidate under
one `tests:` and one `drugs:` key (the loader refuses an id given twice in one file). Every
value is written as a JSON string, which is a YAML double-quoted scalar: codes and names with
quotes, colons or `#` need no care.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from lisguard.domain.catalog import LOINC_SYSTEMS
from lisguard.domain.kb_models import check_loinc

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Entry:
    """What one candidate adds to one knowledge-base entry."""

    section: str  # "tests" or "drugs"
    entry_id: str
    comment: str  # which candidate: shown next to each value it adds
    lists: dict[str, list[str]] = field(default_factory=dict)
    title: str = ""  # the entry's name in the knowledge base, shown next to its id


def entry_for_test(
    test_id: str,
    codes: Sequence[tuple[str, str]],
    texts: Sequence[str],
    comment: str,
    title: str = "",
) -> Entry:
    """A test candidate: its codes (code, system) as `loinc` (a valid LOINC code under a LOINC
    system) or `local_codes`; a name pattern for its text when it has no code at all."""
    entry = Entry("tests", test_id, comment, title=title)
    for code, system in codes:
        if not code:
            continue
        loinc = system.strip().upper() in LOINC_SYSTEMS and _is_loinc(code)
        key = "loinc" if loinc else "local_codes"
        _add(entry.lists, key, code)
    if not entry.lists:
        for text in texts:
            if text.strip():
                _add(entry.lists, "name_patterns", name_pattern(text))
    return entry


def entry_for_drug(drug_id: str, code: str, token: str, comment: str, title: str = "") -> Entry:
    """A drug candidate: its code as a local code; a word of its name as a context alias when
    it has no code (in a pharmacy segment an alias names the drug)."""
    entry = Entry("drugs", drug_id, comment, title=title)
    if code.strip():
        _add(entry.lists, "local_codes", code.strip())
    elif token:
        _add(entry.lists, "context_aliases", token)
    return entry


def name_pattern(text: str) -> str:
    """A pattern matching this name and only it, whatever the spacing."""
    words = text.split()
    return r"^\s*" + r"\s+".join(re.escape(w) for w in words) + r"\s*$"


def render(entries: Iterable[Entry]) -> str:
    """One site file: the entries grouped by section and id (their lists merged), one value a
    line with the comment of the candidate it came from, so that deleting a line the review
    found wrong deletes that candidate and nothing else."""
    sections: dict[str, dict[str, dict[str, dict[str, str]]]] = {"tests": {}, "drugs": {}}
    titles: dict[tuple[str, str], str] = {}
    for entry in entries:
        titles.setdefault((entry.section, entry.entry_id), entry.title)
        merged = sections[entry.section].setdefault(entry.entry_id, {})
        for key, values in entry.lists.items():
            for value in values:
                merged.setdefault(key, {}).setdefault(value, entry.comment)
    lines: list[str] = []
    for section, by_id in sections.items():
        if not by_id:
            continue
        lines.append(f"{section}:")
        for entry_id, by_key in by_id.items():
            title = _CONTROL.sub(" ", titles.get((section, entry_id), ""))
            lines.append(f"  - id: {entry_id}" + (f"  # {title}" if title else ""))
            for key, noted in by_key.items():
                lines.append(f"    {key}:")
                for value, comment in noted.items():
                    note = f"  # {_CONTROL.sub(' ', comment)}" if comment else ""
                    lines.append(f"      - {json.dumps(value)}{note}")
    return "\n".join(lines) + "\n" if lines else ""


def _add(lists: dict[str, list[str]], key: str, value: str) -> None:
    values = lists.setdefault(key, [])
    if value not in values:
        values.append(value)


def _is_loinc(code: str) -> bool:
    try:
        check_loinc(code)
    except ValueError:
        return False
    return True

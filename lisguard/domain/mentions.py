"""Reading free text as a blood bank would: what says "no", what says "then", what is a name.

A mention of a drug in a note is exposure evidence only when the sentence says the patient is or
was on it. Three readings decide that (their vocabularies are interpretation.yaml's):
- **negation** (`Negation`): a cue before the term in the same clause ("denies", "no hx of"),
  an answer after it ("daratumumab: none", "Hx of daratumumab? No"), or a list that goes on
  from a negated mention ("no daratumumab, isatuximab or elotuzumab"). Parentheses do not end
  a clause: "denies anti-CD38 therapy (daratumumab/isatuximab)" negates both.
- **dates** (`stated_date`): "discontinued 2019", "last dose 03/2024" date the mention at the
  latest day the words allow (31 Dec 2019, 31 Mar 2024: the window is judged from there, the
  safe side); a date after "since"/"started" is when it began and is not used.
- **context** (`in_medication_context`): shorthand that is also a name or a word ("Dara",
  "DRd") counts only next to a dose, "on ...", "cycle N", or in a medication list.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from lisguard.domain.kb_models import MedicationContext, MentionDates, NegationRules

_WORD = re.compile(r"[a-z0-9]+")
_NEVER = re.compile(r"(?!x)x")


def alternation(patterns: Sequence[str], flags: int = re.IGNORECASE) -> re.Pattern[str]:
    if not patterns:
        return _NEVER
    return re.compile("|".join(f"(?:{p})" for p in patterns), flags)


class Negation:
    """NegEx-style: a cue a few words before a term, in the same clause, negates it; so does
    a negative answer written right after it (`negated_after`)."""

    def __init__(self, rules: NegationRules) -> None:
        self.max_words = rules.max_words
        self._cues = alternation(rules.cues)
        self._pseudo = alternation(rules.pseudo)
        self._term = alternation(rules.terminators)
        self._after = alternation(rules.after)
        self._gap = alternation(rules.list_gap)

    def negated(self, text: str, start: int) -> bool:
        # Look back at most a clause: from the last terminator before the term.
        window_start = max(0, start - 200)
        prefix = text[window_start:start]
        cut = 0
        for term in self._term.finditer(prefix):
            cut = term.end()
        prefix = prefix[cut:]
        pseudo_spans = [(m.start(), m.end()) for m in self._pseudo.finditer(prefix)]
        for cue in self._cues.finditer(prefix):
            if any(s <= cue.start() < e for s, e in pseudo_spans):
                continue
            between = prefix[cue.end() :]
            if len(_WORD.findall(between.lower())) <= self.max_words:
                return True
        return False

    def negated_after(self, text: str, end: int) -> bool:
        return self._after.match(text[end : end + 80]) is not None

    def continues_list(self, gap: str) -> bool:
        """Whether the text between a negated mention and the next one continues a list."""
        return self._gap.fullmatch(gap) is not None


# ------------------------------------------------------------------------------------ dates
_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
_MONTH = r"(?P<mon>jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_YEAR = r"(?P<y>(?:19|20)\d{2})"
_DATES = [
    re.compile(rf"(?<!\d){_YEAR}-(?P<m>\d{{1,2}})-(?P<d>\d{{1,2}})(?!\d)"),
    re.compile(rf"(?<!\d)(?P<m>\d{{1,2}})/(?P<d>\d{{1,2}})/{_YEAR}(?!\d)"),
    re.compile(rf"(?<![\d/])(?P<m>\d{{1,2}})[/-]{_YEAR}(?!\d)"),
    re.compile(rf"\b{_MONTH}\s+(?:(?P<d>\d{{1,2}})(?:st|nd|rd|th)?,?\s+)?{_YEAR}(?!\d)", re.I),
    # a range of years: its end ("2019-2021")
    re.compile(rf"(?<![\d/])(?:19|20)\d{{2}}\s*[-\u2013]\s*{_YEAR}(?![\d/\-])"),
    re.compile(rf"(?<![\d/\-]){_YEAR}(?![\d/\-])"),
]
_AGO = re.compile(
    r"\b(?P<n>\d{1,3})\s*(?P<unit>d|days?|wks?|weeks?|mos?|months?|yrs?|years?)\s+ago\b", re.I
)
_SENTENCE_END = re.compile(r"[.;!\n\r](?!\d)")
_CLAUSE_END = re.compile(r"[.;!\n\r,](?!\d)")


def _end_of(year: int, month: int | None, day: int | None) -> datetime | None:
    """The latest moment the stated date allows (a year: its 31 Dec, a month: its last day)."""
    try:
        if month is None:
            return datetime(year, 12, 31)
        if day is None:
            return datetime(year, month, calendar.monthrange(year, month)[1])
        return datetime(year, month, day)
    except ValueError:
        return None


class DateReader:
    def __init__(self, rules: MentionDates) -> None:
        self._start = alternation([rf"(?:{p})\W+(?:\w+\W+){{0,3}}$" for p in rules.start_words])
        self._dose = alternation(rules.not_a_year_after)

    def dates_in(self, text: str, now: datetime | None, lead: str = "") -> list[datetime]:
        """Dates in `text`; `lead` is what comes before it (for "started <drug> <date>")."""
        found: list[datetime] = []
        taken: list[tuple[int, int]] = []
        for pattern in _DATES:
            for m in pattern.finditer(text):
                if any(s < m.end() and m.start() < e for s, e in taken):
                    continue  # part of a fuller date already read ("2024" of "03/2024")
                taken.append((m.start(), m.end()))
                if self._start.search(lead + text[: m.start()]) is not None:
                    continue  # "since 2019", "started 03/2024": when it began
                if self._dose.match(text[m.end() :]) is not None:
                    continue  # "2000 mg"
                groups = m.groupdict()
                month = groups.get("m")
                mon = groups.get("mon")
                month_no = int(month) if month else (_MONTHS.get(mon[:3].lower()) if mon else None)
                day = int(groups["d"]) if groups.get("d") else None
                when = _end_of(int(groups["y"]), month_no, day)
                if when is not None:
                    found.append(when)
        if now is not None:
            for m in _AGO.finditer(text):
                n, unit = int(m["n"]), m["unit"].lower()
                days = n * (1 if unit.startswith("d") else 7 if unit.startswith("w")
                            else 30 if unit.startswith("mo") else 365)
                found.append(now - timedelta(days=days))
        return [d for d in found if d.year >= 1990 and (now is None or d <= now)]

    def stated_date(
        self, text: str, start: int, end: int, next_start: int, now: datetime | None
    ) -> datetime | None:
        """The date the sentence gives the mention at [start, end): read after it up to the
        sentence end (or the next mention), else before it within its clause. The latest date
        wins ("2019-2021" -> 2021); dates after the message time are not the past."""
        rest = text[end:next_start]
        stop = _SENTENCE_END.search(rest)
        after = rest[: stop.start()] if stop else rest
        clause = text[max(0, start - 60) : end]
        cuts = list(_CLAUSE_END.finditer(clause))
        lead = clause[cuts[-1].end() :] if cuts else clause
        dates = self.dates_in(after[:120], now, lead)
        if not dates:
            before = text[max(0, start - 120) : start]
            cuts = list(_CLAUSE_END.finditer(before))
            if cuts:
                before = before[cuts[-1].end() :]
            dates = self.dates_in(before, now)
        return max(dates) if dates else None


# ---------------------------------------------------------------------------------- context
class MedicationContextReader:
    def __init__(self, rules: MedicationContext) -> None:
        self._before = alternation([rf"(?:{p})\s*$" for p in rules.before])
        self._after = alternation(rules.after)
        self._label = alternation(rules.list_labels)
        self._person = re.compile("|".join(f"(?:{p})" for p in rules.person_after) or "(?!x)x")

    def in_medication_context(self, text: str, start: int, end: int) -> bool:
        after = text[end : end + 40]
        if self._person.match(after) is not None:
            return False  # "Dara Nguyen RN": a person
        if self._after.match(after) is not None:
            return True
        if self._before.search(text[max(0, start - 40) : start]) is not None:
            return True
        return self._label.match(text) is not None

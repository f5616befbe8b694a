"""The figures of a validation run as plain data: report.json, and what report.html shows.

Pure: a Collector in, dicts and lists out (no I/O, no clock).
"""

from __future__ import annotations

from typing import Any

from lisguard.domain.alerts import Recommendation, RuleId
from lisguard.domain.facts import Coded
from lisguard.validation.collect import Collector, Pair
from lisguard.validation.counting import BoundedTable
from lisguard.validation.lookalike import AREAS
from lisguard.validation.snippets import Entry, entry_for_drug, entry_for_test, render

OUTCOMES = ("accepted", "ignored", "duplicate", "error", "rejected")
OUTCOME_WORDS = {
    "accepted": "accepted (AA), read by the rules",
    "ignored": "accepted (AA), a type lisguard does not read",
    "duplicate": "duplicate (a resend: nothing processed again)",
    "error": "unreadable (AE, kept as a dead letter)",
    "rejected": "refused (AR, by the site's ingest settings)",
}


def figures(c: Collector, *, top: int = 25) -> dict[str, Any]:
    return {
        "messages": _messages(c),
        "alerts": _alerts(c),
        "tests": {
            "orders": _top(c, c.orders, top, "OBR-4"),
            "results": _top(c, c.results, top, "OBX-3"),
            "orders_table": c.orders.summary(),
            "results_table": c.results.summary(),
        },
        "unmapped": _unmapped(c),
        "problems": {
            "messages": [
                {
                    "outcome": outcome,
                    "ack": ack,
                    "code": code,
                    "reason": reason,
                    "count": n,
                    "first_seen": _where(c.problems.first((outcome, ack, code, reason))),
                }
                for (outcome, ack, code, reason), n in c.problems.most_common()
            ],
            "files": list(c.file_problems),
            "table": c.problems.summary(),
        },
    }


def _messages(c: Collector) -> dict[str, Any]:
    return {
        "total": c.messages,
        "by_outcome": {k: c.outcomes.get(k, 0) for k in OUTCOMES},
        "by_day": [{"day": d, "count": n} for d, n in sorted(c.days.items())],
        "days_table": c.days.summary(),
        "by_type": [{"type": t, "count": n} for t, n in c.types.most_common()],
        "types_table": c.types.summary(),
        "per_file": dict(c.per_file),
    }


def _alerts(c: Collector) -> dict[str, Any]:
    order = {name: i for i, name in enumerate(c.per_file)}
    samples: dict[str, Any] = {}
    for rule in RuleId:
        reservoir = c.samples.get(rule.value)
        if reservoir is None:
            continue
        kept = sorted(reservoir.items, key=lambda s: (order.get(s["file"], 0), s["index"]))
        samples[rule.value] = {"alerts": reservoir.seen, "sampled": kept}
    return {
        "total": sum(c.alerts_by_rule.values()),
        "test": c.test_alerts,
        "by_rule": {r.value: c.alerts_by_rule.get(r.value, 0) for r in RuleId},
        "by_recommendation": {
            r.value: c.alerts_by_recommendation.get(r.value, 0) for r in Recommendation
        },
        "sample_size": c.sample_size,
        "seed": c.seed,
        "samples": samples,
    }


def _top(
    c: Collector, table: BoundedTable[str, Pair], top: int, field: str
) -> list[dict[str, Any]]:
    out = []
    for raw, n in table.most_common(top):
        pair = table.first(raw)
        assert pair is not None
        code, alt = pair
        cats = sorted(str(x) for x in c.lookalike.categories(code, alt))
        out.append(
            {
                **_coded(code), **_alt(alt), "count": n, "categories": cats,
                "maps_to": ", ".join(cats) if cats else "unmapped",
                "candidate": (field, code, alt) in c.test_candidates,
                "question": not cats and bool(c.kb.drugs_asked_about(code, alt)),
            }
        )
    return out


def _unmapped(c: Collector) -> dict[str, Any]:
    kb = c.kb
    tests, drugs, entries = [], [], []
    for (field, code, alt), n in c.test_candidates.most_common():
        cand = c.test_candidates.first((field, code, alt))
        assert cand is not None
        hint = cand.hint
        definition = kb.tests[hint.test_id]
        label = _label(code, alt)
        comment = f"{label} in {field}, {n} seen (e.g. {cand.where.message}): {hint.why}"
        codes = [(x.code, x.system) for x in (code, alt) if x.code]
        texts = [x.text for x in (code, alt) if x.text]
        entry = entry_for_test(hint.test_id, codes, texts, comment, definition.name)
        entries.append(entry)
        tests.append(
            {
                "field": field, **_coded(code), **_alt(alt), "count": n,
                "area": hint.area, "looks_like": AREAS[hint.area], "why": hint.why,
                "suggested_test": hint.test_id, "suggested_name": definition.name,
                "category": str(definition.category), "under": cand.under,
                "first_seen": cand.where.as_json(), "snippet": render([entry]),
            }
        )
    for coded, n in c.drug_candidates.most_common():
        dcand = c.drug_candidates.first(coded)
        assert dcand is not None
        dh = dcand.hint
        drug = kb.drugs[dh.drug_id]
        comment = (
            f"{_label(coded, Coded())} in {dcand.field}, {n} seen (e.g. {dcand.where.message}): "
            f"{dh.why}"
        )
        entry = entry_for_drug(dh.drug_id, coded.code, dh.token, comment, drug.name)
        entries.append(entry)
        drugs.append(
            {
                "field": dcand.field, **_coded(coded), "count": n, "drug": dh.drug_id,
                "drug_name": drug.name, "token": dh.token, "why": dh.why,
                "first_seen": dcand.where.as_json(), "snippet": render([entry]),
            }
        )
    return {
        "tests": tests,
        "drugs": drugs,
        "site_file": _site_file(entries),
        "tests_table": c.test_candidates.summary(),
        "drugs_table": c.drug_candidates.summary(),
    }


def _site_file(entries: list[Entry]) -> str:
    if not entries:
        return ""
    head = (
        "# lisguard site file from `lisguard validate`: the local codes of the unmapped\n"
        "# candidates. Delete every line the review found wrong, then list this file under\n"
        "# knowledge.files in the settings and run validate again.\n"
    )
    return head + render(entries)


def _label(code: Coded, alt: Coded) -> str:
    """The element's names for a comment next to its code ("no name" for a bare code)."""
    texts = [repr(x.text) for x in (code, alt) if x.text]
    return " / ".join(texts) or "no name"


def _coded(code: Coded) -> dict[str, str]:
    return {"code": code.code, "text": code.text, "system": code.system}


def _alt(alt: Coded) -> dict[str, str]:
    return {"alt_code": alt.code, "alt_text": alt.text, "alt_system": alt.system}


def _where(where: Any) -> dict[str, Any] | None:
    return where.as_json() if where is not None else None

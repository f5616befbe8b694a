"""report.html from report.json's data: every figure on the page is one of the JSON's, so the
two cannot disagree. Pure: a dict in, a string out (the template is package data)."""

from __future__ import annotations

from html import escape
from importlib import resources
from string import Template
from typing import Any

from lisguard.domain.alerts import RECOMMENDATION_TEXT, Recommendation
from lisguard.validation import sections
from lisguard.validation.charts import (
    bar_chart,
    column_chart,
    continuous,
    daily_points,
    gaps,
)
from lisguard.validation.figures import OUTCOME_WORDS
from lisguard.validation.sections import cell, fmt, table, when

RULE_WORDS = {
    "baseline-workup": "first anti-CD38 order or dose: baseline work-up",
    "bb-serology": "blood bank test on anti-CD38 / anti-CD47",
    "spep-ife": "SPEP/IFE on a therapeutic IgG-kappa antibody",
    "flow-mrd": "flow MRD on anti-CD38",
    "unexplained-panreactivity": "panreactive screen, no drug on file",
    "ig-passive-antibody": "serology within the passive window of IVIG/SCIG/RhIG",
    "positive-dat": "positive DAT on therapy or after immunoglobulin",
    "ivig-prophylaxis": "bispecific started without IVIG",
    "hypogammaglobulinemia": "low immunoglobulins on therapy",
}


def render_page(report: dict[str, Any]) -> str:
    template = Template(_asset("report.html"))
    inputs = report["inputs"]
    days = [d["day"] for d in report["messages"]["by_day"] if d["day"] != "unknown"]
    period = f"{days[0]} to {days[-1]}" if days else "no dated message"
    subtitle = (
        f"{fmt(report['messages']['total'])} messages in {len(inputs['files'])} file(s), "
        f"MSH-7 dates {period}"
    )
    body = "\n".join(
        (
            _summary(report),
            _volume(report["messages"]),
            _alerts(report["alerts"]),
            _samples(report["alerts"]),
            sections.unmapped(report["unmapped"]),
            sections.top_codes(report["tests"]),
            sections.problems(report["problems"], report["messages"]),
            sections.sign_off(report),
        )
    )
    return template.substitute(
        title="Validation report",
        subtitle=escape(subtitle),
        version=escape(report["lisguard_version"]),
        generated=escape(report["generated"]),
        css=_asset("report.css"),
        body=body,
    )


def _asset(name: str) -> str:
    folder = resources.files("lisguard.validation").joinpath("templates")
    return folder.joinpath(name).read_text("utf-8")


def _summary(report: dict[str, Any]) -> str:
    m, a, u = report["messages"], report["alerts"], report["unmapped"]
    out = m["by_outcome"]
    cards = [
        ("Messages", m["total"], "in the feed files", False),
        ("Read by the rules", out["accepted"], "accepted (AA)", False),
        ("Not read", out["ignored"], "types lisguard ignores (AA)", False),
        ("Duplicates", out["duplicate"], "resends, processed once", False),
        ("Unreadable", out["error"], "AE: dead letters", out["error"] > 0),
        ("Refused", out["rejected"], "AR: the site's ingest settings", out["rejected"] > 0),
        ("Alerts", a["total"], f"{fmt(a['test'])} of them from T/D messages", False),
        ("Unmapped candidates", len(u["tests"]) + len(u["drugs"]), "codes to review", bool(
            u["tests"] or u["drugs"])),
    ]
    html = ['<section id="summary"><div class="cards">']
    for title, n, what, bad in cards:
        html.append(
            f'<div class="card{" bad" if bad else ""}"><span class="n">{fmt(n)}</span>'
            f'{escape(title)}<br><span class="what">{escape(what)}</span></div>'
        )
    html.append("</div>")
    html.append(
        '<nav class="toc"><strong>Contents</strong><ol>'
        '<li><a href="#volume">Volume</a></li><li><a href="#alerts">Alerts</a></li>'
        '<li><a href="#samples">Alerts to review</a></li>'
        '<li><a href="#unmapped">Unmapped candidates</a></li>'
        '<li><a href="#codes">Top test codes</a></li>'
        '<li><a href="#problems">Unreadable and refused</a></li>'
        '<li><a href="#signoff">Sign-off</a></li></ol></nav></section>'
    )
    return "".join(html)


def _volume(m: dict[str, Any]) -> str:
    points = daily_points([(d["day"], d["count"]) for d in m["by_day"]])
    zero = sum(1 for _, n in points if n == 0)
    unknown = next((d["count"] for d in m["by_day"] if d["day"] == "unknown"), 0)
    html = [
        '<section id="volume"><h2>1. Volume</h2>',
        "<h3>Messages per day (MSH-7)</h3>",
        column_chart(points, label="Messages per day, by MSH-7 date"),
    ]
    notes = []
    if zero:
        notes.append(
            f"{fmt(zero)} day(s) between the first and the last date had no message at all "
            "(red marks on the axis): was the interface down, or is the export incomplete?"
        )
    if not continuous([(d["day"], d["count"]) for d in m["by_day"]]):
        notes.append(
            "The dates span more than eleven years (a stray old or future MSH-7?): the axis "
            "shows only the days that have messages, not the days between."
        )
    if unknown:
        notes.append(f"{fmt(unknown)} message(s) without a readable MSH-7 date are not plotted.")
    if not m["days_table"]["exact"]:
        notes.append("More distinct dates than the report keeps: counts are approximate.")
    html.extend(f'<p class="note">{escape(n)}</p>' for n in notes)
    runs = gaps(points)
    if runs:
        html.append(
            table(
                ("Days without a message", "From", "To"),
                [(cell(n, num=True), cell(a), cell(b)) for a, b, n in runs[:10]],
            )
        )
        if len(runs) > 10:
            html.append(f'<p class="note">The 10 longest of {fmt(len(runs))} gaps.</p>')
    rows = [(cell(d["day"]), cell(d["count"], num=True)) for d in m["by_day"]]
    html.append(
        f"<details><summary>Messages per day as a table ({fmt(len(rows))} days)</summary>"
        + table(("Day", "Messages"), rows)
        + "</details>"
    )
    html.append("<h3>Messages per type (MSH-9)</h3>")
    types = [(t["type"], t["count"]) for t in m["by_type"]]
    html.append(bar_chart(types[:30], label="Messages per message type"))
    if len(types) > 30:
        html.append(f'<p class="note">The 30 most frequent of {fmt(len(types))} types.</p>')
    html.append("<h3>What happened to them</h3>")
    html.append(
        table(
            ("Outcome", "Messages"),
            [(cell(OUTCOME_WORDS[k]), cell(n, num=True)) for k, n in m["by_outcome"].items()],
        )
    )
    html.append("</section>")
    return "".join(html)


def _alerts(a: dict[str, Any]) -> str:
    rules = list(a["by_rule"].items())
    html = [
        '<section id="alerts"><h2>2. Alerts</h2>',
        '<p class="note">What <code>lisguard serve</code> would have raised on these messages, '
        "once per patient, rule and order (the same alerts <code>lisguard check</code> prints)."
        "</p>",
        "<h3>Per rule</h3>",
        bar_chart([(r, n) for r, n in rules], label="Alerts per rule"),
        table(
            ("Rule", "Raised when", "Alerts"),
            [
                (cell(r, mono=True), cell(RULE_WORDS.get(r, "")), cell(n, num=True))
                for r, n in rules
            ],
            zero_rows={i for i, (_, n) in enumerate(rules) if n == 0},
        ),
        "<h3>Per recommendation</h3>",
    ]
    recs = list(a["by_recommendation"].items())
    html.append(
        table(
            ("Recommendation", "Meaning", "Alerts"),
            [
                (cell(r, mono=True), cell(RECOMMENDATION_TEXT[Recommendation(r)]),
                 cell(n, num=True))
                for r, n in recs
            ],
            zero_rows={i for i, (_, n) in enumerate(recs) if n == 0},
        )
    )
    html.append("</section>")
    return "".join(html)


def _samples(a: dict[str, Any]) -> str:
    html = [
        '<section id="samples"><h2>3. Alerts to review</h2>',
        f'<p class="note">Up to {fmt(a["sample_size"])} alerts of each rule, drawn at random '
        f'(seed {escape(str(a["seed"]))}: the same files, settings and seed draw the same '
        "alerts). For each, look the patient up in the LIS and pharmacy record and mark whether "
        "the alert was right: the drug was given and in its window, the test is the one the rule "
        "is about, the recommendation applies.</p>",
    ]
    if not a["samples"]:
        html.append('<p class="empty">No alert was raised: nothing to review.</p>')
    for rule, group in a["samples"].items():
        shown = len(group["sampled"])
        html.append(
            f'<h3 id="rule-{escape(rule)}"><code>{escape(rule)}</code>: {fmt(shown)} of '
            f'{fmt(group["alerts"])} alert(s)</h3>'
        )
        for n, sample in enumerate(group["sampled"], 1):
            html.append(_sample(rule, n, sample))
    html.append("</section>")
    return "".join(html)


def _sample(rule: str, n: int, sample: dict[str, Any]) -> str:
    alert = sample["alert"]
    sev = escape(alert["severity"])
    authority = alert["patient_authority"]
    patient = alert["patient"] + (f"^{authority}" if authority else "")
    test = " ".join(x for x in (alert.get("order_code", ""), alert.get("order_text", "")) if x)
    facts = [
        ("Patient (MRN)", patient),
        ("Event time", when(alert["event_time"]) or "-"),
        ("Test", test or "-"),
        ("Order", alert["order"] or "-"),
        ("Drugs", ", ".join(alert["drugs"]) or "-"),
        ("Location", alert["location"] or "-"),
    ]
    evidence = [
        (cell(e["message"], mono=True), cell(e["location"], mono=True), cell(e["text"]),
         cell(when(e["time"])))
        for e in alert["evidence"]
    ]
    test_badge = ' <span class="test-badge">TEST (MSH-11 T/D)</span>' if alert.get("test") else ""
    ident = escape(f"{rule}-{n}")
    recs = " ".join(f"<code>{escape(r)}</code>" for r in alert["recommendations"])
    return (
        f'<article class="sample sev-{sev}" id="sample-{ident}">'
        f'<h4>{n}. <span class="sev {sev}">{sev}</span> <code>{escape(rule)}</code> '
        f'<span class="mono muted">alert {escape(alert["id"])}</span>{test_badge}</h4>'
        f'<p class="where">Message <code>{escape(alert["message"])}</code> in '
        f'<code>{escape(sample["file"])}</code>, message {fmt(sample["index"])}</p>'
        + '<dl class="facts">'
        + "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts)
        + "</dl>"
        + f'<p class="recs">{recs}</p>'
        + f"<p>{escape(alert['text'])}</p>"
        + (table(("Message", "Where", "What it said", "When"), evidence) if evidence else "")
        + "<details open><summary>Segments of the message that raised it (patient identity "
        "segments left out)</summary>"
        + f"<pre>{escape(chr(10).join(sample['segments']))}</pre></details>"
        + '<div class="review"><span>Reviewer:</span>'
        f'<label><input type="checkbox" name="{ident}-right"> Right</label>'
        f'<label><input type="checkbox" name="{ident}-wrong"> Wrong</label>'
        '<span>Note <span class="line"></span></span>'
        '<span>Initials <span class="line short"></span></span></div>'
        "</article>"
    )

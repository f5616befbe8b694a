"""The report's tables: unmapped candidates, top test codes, problems, sign-off (page.py has
the charts and the alert samples). Pure: data in, HTML text out, every value escaped."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from html import escape
from typing import Any, NamedTuple


class Cell(NamedTuple):
    html: str
    num: bool = False


def fmt(n: int) -> str:
    return f"{n:,}"


def cell(value: Any, *, num: bool = False, mono: bool = False) -> Cell:
    if num and isinstance(value, int):
        return Cell(fmt(value), True)
    text = escape("" if value is None else str(value))
    return Cell(f"<code>{text}</code>" if mono and text else text, num)


def when(iso: str | None) -> str:
    """An ISO time as a person reads it: "2026-03-05 07:55" (seconds only when not :00)."""
    if not iso:
        return ""
    text = iso.replace("T", " ")
    return text[:16] if text[16:19] == ":00" and len(text) <= 19 else text


def raw(html: str) -> Cell:
    """A cell whose HTML the caller built (and escaped)."""
    return Cell(html)


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    *,
    zero_rows: Collection[int] = (),
    after: Sequence[str] = (),
    css: str = "",
) -> str:
    """A table; `after[i]`, when given, is HTML shown in a full-width row under row i (a
    candidate's site-file snippet)."""
    rows = list(rows)
    if not rows:
        return '<p class="empty">None.</p>'
    nums = [any(r[i].num for r in rows) for i in range(len(headers))]
    head = "".join(
        f'<th{" class=num" if nums[i] else ""}>{escape(h)}</th>' for i, h in enumerate(headers)
    )
    thead = f"<thead><tr>{head}</tr></thead>" if any(headers) else ""
    body = []
    for i, row in enumerate(rows):
        tds = "".join(f'<td{" class=num" if c.num else ""}>{c.html}</td>' for c in row)
        extra = after[i] if i < len(after) else ""
        classes = [k for k, on in (("zero", i in zero_rows), ("has-after", bool(extra))) if on]
        klass = f' class="{" ".join(classes)}"' if classes else ""
        body.append(f"<tr{klass}>{tds}</tr>")
        if extra:
            body.append(f'<tr class="after"><td colspan="{len(headers)}">{extra}</td></tr>')
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}>{thead}<tbody>{''.join(body)}</tbody></table>"


def _element(row: dict[str, Any], prefix: str = "") -> str:
    code, text, system = (row[f"{prefix}{k}"] for k in ("code", "text", "system"))
    if not (code or text):
        return "" if prefix else '<span class="muted">(empty)</span>'
    sys = f" <small>({escape(system)})</small>" if system else ""
    return f"<code>{escape(code or '-')}</code> {escape(text)}{sys}"


def _element_cell(row: dict[str, Any]) -> Cell:
    alt = _element(row, "alt_") if "alt_code" in row else ""
    return raw(_element(row) + (f"<br><small>alternate:</small> {alt}" if alt else ""))


def _seen(where: dict[str, Any] | None) -> Cell:
    if not where:
        return cell("")
    return raw(
        f"<code>{escape(where['message'])}</code><br><small>{escape(where['file'])}, "
        f"message {fmt(where['index'])}</small>"
    )


def _capped(summary: dict[str, Any], what: str) -> str:
    if summary["exact"]:
        return ""
    return (
        f'<p class="warn">More distinct {escape(what)} than the report keeps '
        f"({fmt(summary['capacity'])}): the counts shown may be up to "
        f"{fmt(summary['undercount'])} low; {fmt(summary['other'])} occurrences are in no row."
        "</p>"
    )


SHOWN = 200  # candidate rows on the page (report.json has them all)


def unmapped(u: dict[str, Any]) -> str:
    html = [
        '<section id="unmapped"><h2>4. Unmapped candidates</h2>',
        '<p class="note">Test and drug codes of this feed that look like what lisguard reads '
        "(blood bank, SPEP/IFE, flow cytometry, immunoglobulins; the anti-CD38 antibodies, "
        "bispecifics and immunoglobulin products) but match nothing in its knowledge base: "
        "until a site file names them, their orders and doses raise no alert. Each has a "
        "site-file snippet; the file at the end holds them all. Keep only those the review "
        "confirms, list the file under <code>knowledge.files</code>, and run validate again."
        "</p>",
        "<h3>Tests (OBR-4, OBX-3)</h3>",
        _capped(u["tests_table"], "candidate tests"),
    ]
    rows = [
        (
            cell(t["field"], mono=True),
            _element_cell(t),
            raw(
                f"{escape(t['looks_like'])}<br><small>{escape(t['why'])}"
                + (f"; under {escape(t['under'])}" if t["under"] else "")
                + f"<br>suggested: {escape(t['suggested_name'])}</small>"
            ),
            cell(t["count"], num=True),
            _seen(t["first_seen"]),
        )
        for t in u["tests"][:SHOWN]
    ]
    html.append(table(("Field", "Code and name", "Looks like", "Seen", "First seen"), rows,
                      after=[_snippet(t["snippet"]) for t in u["tests"][:SHOWN]],
                      css="candidates"))
    html.append(_more(len(u["tests"]), "test candidates"))
    html.append("<h3>Drugs (RXO-1, RXE-2, RXD-2, RXG-4, RXA-5)</h3>")
    html.append(_capped(u["drugs_table"], "candidate drugs"))
    drows = [
        (
            cell(d["field"], mono=True),
            _element_cell(d),
            raw(f"{escape(d['drug_name'])}<br><small>{escape(d['why'])}</small>"),
            cell(d["count"], num=True),
            _seen(d["first_seen"]),
        )
        for d in u["drugs"][:SHOWN]
    ]
    html.append(table(("Field", "Code and name", "Looks like", "Seen", "First seen"), drows,
                      after=[_snippet(d["snippet"]) for d in u["drugs"][:SHOWN]],
                      css="candidates"))
    html.append(_more(len(u["drugs"]), "drug candidates"))
    if u["site_file"]:
        html.append("<h3>All candidates as one site file</h3>")
        html.append(f'<pre class="snippet" id="site-file">{escape(u["site_file"])}</pre>')
    html.append("</section>")
    return "".join(html)


def _snippet(text: str) -> str:
    return (
        '<div class="snippet-label">Site file snippet</div>'
        f'<pre class="snippet">{escape(text)}</pre>'
    )


def _more(n: int, what: str) -> str:
    if n <= SHOWN:
        return ""
    return (
        f'<p class="note">The {SHOWN} most seen of {fmt(n)} {escape(what)}: report.json has '
        "them all.</p>"
    )


def top_codes(t: dict[str, Any]) -> str:
    html = [
        '<section id="codes"><h2>5. Top test codes</h2>',
        '<p class="note">The most frequent orders and results of the messages the rules read, '
        "and the knowledge-base category each maps to. Most of a feed is unmapped and should "
        "be (a CBC, a chemistry panel); a test your bench knows as blood bank, SPEP/IFE, flow "
        "or immunoglobulin that says unmapped needs a site-file entry.</p>",
    ]
    for key, title, what in (("orders", "Orders (OBR-4)", "orders"),
                             ("results", "Results (OBX-3)", "results")):
        html.append(f"<h3>{title}</h3>")
        html.append(_capped(t[f"{key}_table"], what))
        rows = [
            (
                _element_cell(r),
                cell(r["count"], num=True),
                _maps_to(r),
            )
            for r in t[key]
        ]
        html.append(table(("Code and name", "Count", "Maps to"), rows))
    html.append("</section>")
    return "".join(html)


CATEGORY_WORDS = {
    "iat_serology": "antibody screen/ID, IAT, crossmatch",
    "abo_rh": "ABO/RhD",
    "dat": "DAT",
    "spep": "protein electrophoresis",
    "ife": "immunofixation",
    "flow_mrd": "plasma-cell flow / MRD",
    "all_flow_mrd": "ALL MRD by flow",
    "rbc_phenotype": "red-cell antigen typing",
    "rbc_genotype": "red-cell genotyping",
    "blood_product_order": "red-cell product",
    "non_rbc_product": "platelets, plasma, cryo",
    "igg": "IgG", "iga": "IgA", "igm": "IgM",
    "hbsag": "HBsAg", "anti_hbc": "anti-HBc", "anti_hbs": "anti-HBs",
    "id_serology": "infectious-disease antibody",
}


def _maps_to(row: dict[str, Any]) -> Cell:
    if row["categories"]:
        return raw("<br>".join(
            f"<code>{escape(c)}</code> <small>{escape(CATEGORY_WORDS.get(c, ''))}</small>"
            for c in row["categories"]
        ))
    if row.get("question"):
        return raw('<span class="muted">an order question (read for the drugs it names)</span>')
    if row.get("candidate"):
        return raw('<span class="unmapped">unmapped: a candidate (section 4)</span>')
    return raw('<span class="muted">unmapped</span>')


def problems(p: dict[str, Any], m: dict[str, Any]) -> str:
    out = m["by_outcome"]
    html = [
        '<section id="problems"><h2>6. Unreadable and refused messages</h2>',
        f'<p class="note">{fmt(out["error"])} unreadable (serve answers AE and keeps a dead '
        f'letter) and {fmt(out["rejected"])} refused (AR, by the ingest settings), with the '
        "reasons serve's ACK and <code>lisguard check</code> give.</p>",
        _capped(p["table"], "reasons"),
        table(
            ("Outcome", "ACK", "ERR", "Reason", "Messages", "First seen"),
            [
                (cell(r["outcome"]), cell(r["ack"], mono=True), cell(r["code"], mono=True),
                 cell(r["reason"]), cell(r["count"], num=True), _seen(r["first_seen"]))
                for r in p["messages"]
            ],
        ),
    ]
    if p["files"]:
        html.append("<h3>Files</h3>")
        html.append(table(("File", "Problem"), [(cell(f["file"], mono=True), cell(f["error"]))
                                                for f in p["files"]]))
    html.append("</section>")
    return "".join(html)


def sign_off(report: dict[str, Any]) -> str:
    s, inputs = report["sign_off"], report["inputs"]
    kb, cfg = s["knowledge_base"], s["configuration"]
    files = inputs["files"]
    total_bytes = sum(f["bytes"] for f in files)
    facts = [
        ("lisguard version", cell(s["lisguard_version"], mono=True)),
        ("Report generated", cell(when(report["generated"]))),
        ("Knowledge base", raw(
            f"version <code>{escape(kb['version'])}</code> (as the service shows it: "
            f"<code>GET /api/knowledge</code>, printed slips)<br>{escape(kb['description'])}"
            f"<br>files SHA-256 <code>{escape(kb['sha256'])}</code>")),
        ("Configuration", raw(
            f"{escape(cfg['file'] or '(defaults: no --config)')}"
            + (f"<br>file SHA-256 <code>{escape(cfg['file_sha256'])}</code>"
               if cfg["file_sha256"] else "")
            + f"<br>effective settings SHA-256 <code>{escape(cfg['effective_sha256'])}</code>")),
        ("Feed", cell(f"{fmt(len(files))} file(s), {fmt(total_bytes)} bytes, "
                      f"{fmt(report['messages']['total'])} messages (SHA-256 of each below)")),
        ("Sample", cell(f"{report['alerts']['sample_size']} alerts per rule, seed "
                        f"{report['alerts']['seed']}")),
        ("Command", cell(s["command"], mono=True)),
    ]
    html = [
        '<section id="signoff" class="signoff"><h2>7. Sign-off</h2>',
        '<p class="note">CAP computer-system validation and AABB: lisguard was run on this '
        "site's own historical data with the configuration below, its alerts reviewed and its "
        "unmapped codes resolved, before it is used for patient care.</p>",
        table(("", ""), [(cell(k), v) for k, v in facts], css="facts"),
        '<p class="decision"><strong>Decision:</strong> '
        '<label><input type="checkbox" name="approved"> Approved for go-live</label>'
        '<label><input type="checkbox" name="not-approved"> Not approved: corrective actions '
        "below</label></p>",
        '<div class="sign">',
    ]
    for role in ("Reviewer", "Medical director"):
        html.append(f'<div class="role">{role}</div>')
        html.extend(
            f'<div class="field"><div class="blank"></div><span>{what}</span></div>'
            for what in ("Name", "Signature", "Date")
        )
    html.append('</div><p>Corrective actions / comments:</p>'
                + '<div class="blank wide"></div>' * 4)
    html.append("<h3>Knowledge base files</h3>")
    html.append(table(("File", "SHA-256"), [(cell(f["path"], mono=True),
                                             cell(f["sha256"], mono=True)) for f in kb["files"]],
                      css="files"))
    html.append("<h3>Feed files</h3>")
    html.append(table(
        ("File", "Bytes", "Messages", "SHA-256"),
        [(cell(f["path"], mono=True), cell(f["bytes"], num=True), cell(f["messages"], num=True),
          cell(f["sha256"] or "(not a regular file)", mono=True)) for f in files],
        css="files",
    ))
    if inputs["skipped"]:
        shown = ", ".join(inputs["skipped"][:50]) + (" …" if len(inputs["skipped"]) > 50 else "")
        html.append(f'<p class="note">Skipped in the directories given (no MSH, FHS or BHS at '
                    f"the start): {escape(shown)}</p>")
    resends = inputs.get("resend_memory")
    if resends:
        html.append(
            f'<p class="note">Resends recognised among the last {fmt(resends["keys"])} message '
            f"keys; {fmt(resends['forgotten'])} older keys were let go (a resend that late is "
            "counted as a new message; the live service, which keeps every message, would answer "
            "it as a duplicate).</p>"
        )
    html.append("</section>")
    return "".join(html)

// The patient view of the technologist page (app.js opens it from a card's "Patient" button):
// therapeutic antibody exposures, immunoglobulin products given, HBV serology, the latest
// IgG/IgA/IgM, RBC typing with K status, the M-protein isotype, snoozes and the alert history;
// its "Print slip" button opens the patient's special-requirements slip (slip.js).
// Uses app.js's helpers (el, api, when, day, STATUS_TEXT); every value goes in as text.
"use strict";

// processingId T or D: the patient as that test feed left it (kept apart from production)
async function openPatient(key, processingId = "P") {
  const test = processingId && processingId !== "P";
  $("patient-title").textContent = `${test ? "TEST feed · " : ""}Patient ${key.replace("^", " (") + (key.includes("^") ? ")" : "")}`;
  $("patient-body").replaceChildren(el("p", {}, "Loading…"));
  $("patient-dialog").showModal();
  try {
    const query = test ? `?processing_id=${encodeURIComponent(processingId)}` : "";
    const p = await api(`/api/patients/${encodeURIComponent(key)}${query}`);
    // a test feed's patient gets no slip: a sheet for the chart must be production's
    $("patient-body").replaceChildren(test ? "" : slipButton(p.patient_key), patientView(p));
  } catch (error) {
    $("patient-body").replaceChildren(el("p", { class: "error" }, error.message));
  }
}

// the special-requirements slip for the chart or the issue desk opens in its own tab (print.js)
function slipButton(patientKey) {
  const url = `/print/slip?patient=${encodeURIComponent(patientKey)}`;
  return el("p", { class: "slip-action" }, el("button", { type: "button", class: "print-slip",
    onclick: () => window.open(url, "_blank", "noopener") }, "Print slip"),
  " Special requirements for the chart or the blood bank issue desk (one page).");
}

function table(headers, rows, className) {
  if (!rows.length) return el("p", {}, "None on file.");
  return el("table", { class: className },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c))))));
}

// how the feeds said it: a mention or an order question is not a dose
const KIND_TEXT = {
  administration: "dose given", order: "order", dispense: "dispense", give: "give instruction",
  mention: "free-text mention (no dose)", question: "order question answered yes (no dose)",
};
const PRODUCT_CLASS = { ivig: "IVIG", scig: "SCIG", rhig: "RhIG" };
const HBV_MARKER = { hbsag: "HBsAg", anti_hbc: "Anti-HBc", anti_hbs: "Anti-HBs" };
const IG_TEST = { igg: "IgG", iga: "IgA", igm: "IgM" };

// numbers as a lab writes them: no float noise (1234.5 g, 512 mg/dL)
const number = (n) => (n === null || n === undefined ? "" : String(Math.round(n * 10) / 10));

function productRows(products) {
  return products.map((g) => [
    g.name, PRODUCT_CLASS[g.drug_class] || g.drug_class,
    when(g.last_dose) || "no dose seen", String(g.doses),
    g.grams === null || g.grams === undefined ? "not stated" : `${number(g.grams)} g`,
    day(g.window_end) || "—",
    g.kinds.map((k) => KIND_TEXT[k] || k).join(", "),
  ]);
}

function hbvRows(results) {
  const said = (r) => {
    if (r.pending) return el("span", {}, "pending (ordered)");
    if (r.reactive === true) return el("b", { class: "reactive" }, "REACTIVE");
    if (r.reactive === false) return "non-reactive";
    return "not stated";
  };
  return results.map((r) => [HBV_MARKER[r.marker] || r.marker, when(r.time) || "—",
    r.value || "—", said(r)]);
}

function immunoglobulinRows(results) {
  const below = (r) => {
    if (r.below_range === true) return el("b", { class: "low" }, "LOW (below range)");
    if (r.below_range === false) return "no";
    return "unknown";
  };
  return results.map((r) => [IG_TEST[r.test] || r.test,
    `${number(r.value)} ${r.units || ""}`.trim(),
    r.mg_dl === null || r.mg_dl === undefined ? "unit unknown" : `${number(r.mg_dl)} mg/dL`,
    below(r), when(r.time) || "—"]);
}

function patientView(p) {
  const k = { positive: "K-positive", negative: "K-negative", unknown: "unknown" }[p.k_status];
  const aliases = p.merged_from.length ? el("p", { class: "aliases" }, "Also known as (merged): ",
    el("b", {}, p.merged_from.join(", "))) : null;
  const links = p.linked.length ? el("p", { class: "aliases" }, "Linked records (A24, read together): ",
    el("b", {}, p.linked.join(", "))) : null;
  const asked = p.requested_key ? el("p", { class: "aliases" }, `${p.requested_key} was merged into `,
    el("b", {}, p.patient_key), ": this is the surviving record.") : null;
  const who = p.identifiers || {};  // two identifiers before anything is done for a patient
  const ids = el("p", { class: "ids" },
    el("b", { class: "name" }, who.name || "name not received"),
    " · DOB ", el("b", {}, who.birth_date || "—"),
    " · MRN ", el("b", {}, who.mrn || p.patient_key), who.authority ? ` (${who.authority})` : "");
  return el("div", { class: "patient" },
    ids, asked, aliases, links,
    el("h3", {}, "Therapeutic antibody exposures"),
    table(["Drug", "Last dose", "Last exposure point", "Interference window ends", "Seen as"],
      p.exposures.map((e) => [e.name, when(e.last_dose) || "—", when(e.last_point) || "—",
        day(e.window_end) || "—", e.kinds.map((kind) => KIND_TEXT[kind] || kind).join(", ")])),
    el("h3", {}, "Immunoglobulin products (IVIG/SCIG/RhIG)"),
    table(["Product", "Class", "Last dose", "Doses", "Cumulative", "Passive window ends", "Seen as"],
      productRows(p.immunoglobulin_products || []), "products"),
    el("h3", {}, "HBV serology"),
    table(["Marker", "Time", "Result", "Reading"], hbvRows(p.hbv || []), "hbv"),
    el("h3", {}, "Immunoglobulins (latest)"),
    table(["Test", "Value", "mg/dL", "Below range", "Time"],
      immunoglobulinRows(p.immunoglobulins || []), "immunoglobulins"),
    el("h3", {}, "RBC typing on file"),
    el("p", {}, "K (KEL1): ", el("b", { class: p.k_status === "positive" ? "kpos" : "" }, k),
      " · Pre-treatment phenotype/genotype: ", el("b", {}, p.pretreatment_typing ? "yes" : "no")),
    table(["Kind", "Time", "Antigens", "Message"], p.typings.map((t) => [t.kind, when(t.time) || "—",
      Object.entries(t.antigens).map(([ag, pos]) => `${ag}${pos ? "+" : "−"}`).join(" "), t.message])),
    el("h3", {}, "M-protein isotype"),
    el("p", {}, "Own isotype (before therapy): ", el("b", {}, p.own_isotype || "not stated")),
    table(["Isotype", "Time", "Message"], p.isotypes.map((i) => [i.isotype, when(i.time) || "—", i.message])),
    p.snoozes.length ? [el("h3", {}, "Snoozes"), table(["Rule", "Until", "By", "Reason", "Active"],
      p.snoozes.map((s) => [s.rule, when(s.expires_at), s.created_by, s.reason, s.active ? "yes" : "no"]))] : null,
    el("h3", {}, "Alert history"),
    p.alerts.length ? el("ul", { class: "history" }, p.alerts.map((v) => el("li", {},
      el("b", {}, `${v.alert.severity.toUpperCase()} · ${v.rule_title}`),
      v.audience_title ? ` · for ${v.audience_title}` : "",
      ` · ${STATUS_TEXT[v.status] || v.status}`, v.alert.order ? ` · order ${v.alert.order}` : "",
      ` · raised ${when(v.created_at)}`,
      v.patient_key !== p.patient_key ? ` under ${v.patient_key} (before the merge)` : "",
      el("ul", { class: "evidence" }, v.alert.evidence.map((ev) =>
        el("li", {}, `${ev.message} ${ev.location}: ${ev.text}`, ev.time ? ` (${when(ev.time)})` : "")))))) :
      el("p", {}, "No alerts."));
}

// #patient=<key> (the link of a CDS Hooks card in the EHR): the patient view, once logged in
function openPatientFromHash() {
  if (!location.hash.startsWith("#patient=")) return;
  const key = decodeURIComponent(location.hash.slice("#patient=".length));
  if (key) openPatient(key);
}

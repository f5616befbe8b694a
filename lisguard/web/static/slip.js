// The special-requirements slip (/print/slip?patient=KEY): one page for the patient's chart or
// the blood bank issue desk. Its data is GET /api/patients/{key}/slip (audited as printed);
// print.js has the helpers. Print with the button or the browser's own print.
"use strict";

const KIND_TEXT = {
  administration: "dose", order: "order", dispense: "dispense", give: "give instruction",
  mention: "free-text mention", question: "order question",
};
const K_TEXT = { positive: "K+ (known)", negative: "K− (known)", unknown: "unknown" };

function lastDose(t) {
  if (t.last_dose) return when(t.last_dose);
  // an order or a mention opens the window too, but it is no dose: say what was seen
  const seen = t.kinds.map((k) => KIND_TEXT[k] || k).join(", ");
  return el("span", {}, "no dose recorded", el("br"),
    el("small", {}, `${seen}${t.last_point ? ` ${when(t.last_point)}` : ""}`));
}

function windowState(t) {
  if (!t.enabled) return "not counted (switched off at this site)";
  if (!t.window_end) return "no dose seen: no window";
  return t.in_window ? el("b", { class: "in-window" }, "IN WINDOW") : "window ended";
}

function therapyTable(slip) {
  const rows = [
    ...slip.therapies.map((t) => [t.name, t.class_title, lastDose(t), day(t.window_end) || "—", windowState(t)]),
    ...slip.immunoglobulin_products.map((g) => [g.name, `${g.class_title} (immunoglobulin)`,
      g.last_dose ? when(g.last_dose) : "no dose recorded", day(g.window_end) || "—", windowState(g)]),
  ];
  if (!rows.length) return el("p", { class: "none" }, "No interfering therapy on file.");
  return el("table", { class: "therapies" },
    el("thead", {}, el("tr", {}, ["Drug / product", "Class", "Last dose", "Window ends", "At print time"]
      .map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c))))));
}

// a recommendation gets a box to tick at the bench; a fact of DOMAIN.md a bullet
function requirement(item) {
  return el("li", { class: item.code ? "rec" : "fact" },
    el("span", { class: item.code ? "tick" : "bullet", "aria-hidden": "true" }, item.code ? "" : "•"),
    el("span", { class: "text" }, item.text),
    item.code ? el("code", {}, item.code) : null);
}

// at a glance, before the table: which drug, until when (the therapies in their window)
function onTherapy(slip) {
  const active = [...slip.therapies, ...slip.immunoglobulin_products].filter((t) => t.in_window);
  if (!active.length) return null;
  return el("p", { class: "on-therapy" }, active.map((t, i) => [i ? "; " : "",
    el("b", {}, t.name), ` (${t.class_title}): interference until `, el("b", {}, day(t.window_end))]));
}

function slipView(slip) {
  const v = slip.version;
  const typing = el("p", { class: "typing" },
    "K (KEL1): ", el("b", {}, K_TEXT[slip.k_status] || slip.k_status),
    " · Baseline (pre-treatment) phenotype/genotype: ",
    el("b", {}, slip.pretreatment_typing ? "on file" : "not on file"),
    slip.own_isotype ? [" · Own M-protein: ", el("b", {}, slip.own_isotype)] : null);
  const merged = slip.requested_key
    ? el("p", { class: "merged" }, `${slip.requested_key} was merged into this record.`) : null;
  const requirements = slip.any_in_window
    ? slip.requirements.map((s) => el("section", { class: `req req-${s.id}` },
      el("h2", {}, s.title), el("ul", {}, s.items.map(requirement))))
    : el("p", { class: "none-active" },
      "No interfering therapy inside its window at print time: lisguard lists no special requirement.");
  return [
    el("header", { class: "slip-head" },
      el("h1", {}, "Special requirements"),
      el("p", { class: "for" }, "Therapy interference with laboratory tests · for the chart and the blood bank issue desk")),
    el("section", { class: "patient" }, identifierLine(slip.identifiers), merged),
    el("p", { class: "verify" }, slip.verify),
    onTherapy(slip),
    el("h2", {}, "Interfering therapy on file"),
    therapyTable(slip),
    typing,
    requirements,
    el("footer", {},
      printedLine(slip, ` · lisguard ${v.lisguard} · knowledge base ${v.knowledge_base}`),
      el("p", { class: "basis" },
        `From the HL7 feeds lisguard received up to the print time. Window: the last dose, order or mention plus the drug's window (default ${v.default_window_months} months); immunoglobulin: the last dose plus ${v.passive_window_months} months.`)),
  ];
}

async function loadSlip() {
  const key = new URLSearchParams(location.search).get("patient");
  if (!key) {
    $("status").textContent = "No patient given: open the slip from a patient's view.";
    return;
  }
  try {
    const slip = await getJson(`/api/patients/${encodeURIComponent(key)}/slip`);
    $("slip").replaceChildren(el("div", { class: "sheet" }, slipView(slip)));
    document.title = `Special requirements slip - ${slip.identifiers.mrn}`;
    $("slip").hidden = false;
    $("status").hidden = true;
    enablePrint();
  } catch (error) {
    showProblem(error);
  }
}

document.addEventListener("DOMContentLoaded", loadSlip);

// The shift hand-over (/print/handover): open, acknowledged-not-resolved and escalated alerts
// since a time the user picks (default: the last 12 hours), per patient with the two
// identifiers. Data: GET /api/handover?since=ISO (audited as a read of each patient listed).
"use strict";

const STATUS_TEXT = {
  open: "OPEN", acknowledged: "Acknowledged", resolved: "Resolved",
  snoozed: "Snoozed", collapsed: "Collapsed",
};

// a datetime-local input's value for a Date, in this browser's time
const localInput = (d) => `${localDay(d)}T${two(d.getHours())}:${two(d.getMinutes())}:00`;

function setHours(hours) {
  $("since").value = localInput(new Date(Date.now() - hours * 3600 * 1000));
}

function statusCell(a) {
  const cell = [el("b", { class: `status-${a.status}` }, STATUS_TEXT[a.status] || a.status)];
  if (a.escalations.length) cell.push(el("br"), el("b", { class: "escalated" }, "ESCALATED"));
  if (a.count > 1) cell.push(el("br"), el("small", {}, `×${a.count} repeats`));
  return cell;
}

function ackCell(a) {
  if (a.resolved) {
    return [`Resolved (${a.resolved.resolution}) by ${a.resolved.by} `, at(a.resolved.at)];
  }
  if (!a.acknowledged) return el("span", { class: "nobody" }, "not acknowledged");
  const ack = a.acknowledged;
  return [el("b", {}, ack.by), " ", at(ack.at),
    ack.note ? [el("br"), el("q", {}, ack.note)] : null];
}

function escalationCell(a) {
  if (!a.escalations.length) return "—";
  // the escalation desk's own events are the service's ("system"): said as automatic
  return a.escalations.map((e, i) => [i ? el("br") : null, at(e.at),
    e.by === "system" ? " automatically" : [" by ", el("b", {}, e.by)],
    e.to ? ` to ${e.to}` : "", e.level ? ` (${e.level})` : "",
    e.reason || e.note ? [": ", el("q", {}, e.reason || e.note)] : ""]);
}

// a time is never broken over two lines (2026-12-03 18:32)
const at = (text) => el("span", { class: "nowrap" }, when(text));

function patientBlock(p) {
  return el("section", { class: "handover-patient", "data-patient": p.patient_key },
    identifierLine(p.identifiers, "h2"),
    el("table", { class: "handover-alerts" },
      el("thead", {}, el("tr", {}, ["Status", "Alert", "Test / order", "Acknowledged (note)",
        "Escalated"].map((h) => el("th", {}, h)))),
      el("tbody", {}, p.alerts.map((a) => el("tr", { "data-id": a.id, class: a.escalations.length ? "escalated" : "" },
        el("td", {}, statusCell(a)),
        el("td", {}, el("b", {}, `${a.severity.toUpperCase()} · ${a.rule_title}`),
          el("small", { class: "where" }, `For ${a.audience_title} · raised `, at(a.created_at))),
        el("td", {}, a.test || el("span", { class: "nobody" }, "no test (a dose or drug order)"),
          a.order || a.location ? el("small", { class: "where" },
            [a.order ? `order ${a.order}` : "", a.location ? `at ${a.location}` : ""].filter(Boolean).join(" · ")) : null),
        el("td", {}, ackCell(a)),
        el("td", {}, escalationCell(a)))))));
}

function handoverView(h) {
  const c = h.counts;
  return [
    el("header", { class: "slip-head" },
      el("h1", {}, "Shift hand-over"),
      el("p", { class: "for" }, "Since ", el("b", { id: "since-shown" }, `${when(h.since)} ${zone(new Date(h.since))}`))),
    el("p", { class: "subtitle" }, "Therapy interference alerts: open, acknowledged but not resolved, escalated"),
    el("p", { class: "summary" },
      `${c.patients} patient${c.patients === 1 ? "" : "s"} · ${c.open} open · `
      + `${c.acknowledged} acknowledged, not resolved · ${c.escalated} escalated`),
    h.older_unresolved ? el("p", { class: "older" },
      `${h.older_unresolved} more unresolved alert${h.older_unresolved === 1 ? "" : "s"} with nothing new since then `
      + "are not listed: pick an earlier time, or see the alert queue.") : null,
    h.truncated ? el("p", { class: "older" }, "More than 500 unresolved alerts: the oldest are not read here.") : null,
    h.patients.length ? h.patients.map(patientBlock)
      : el("p", { class: "none-active" }, "Nothing to hand over since then."),
    el("footer", {}, printedLine(h, " · Verify two identifiers before acting for a patient.")),
  ];
}

async function loadHandover() {
  const since = new Date($("since").value);
  const query = Number.isNaN(since.getTime()) ? "" : `?since=${encodeURIComponent(since.toISOString())}`;
  $("status").hidden = false;
  $("status").className = "status";
  $("status").textContent = "Loading…";
  try {
    const h = await getJson(`/api/handover${query}`);
    $("handover").replaceChildren(el("div", { class: "sheet" }, handoverView(h)));
    $("handover").hidden = false;
    $("status").hidden = true;
    enablePrint();
  } catch (error) {
    $("handover").hidden = true;
    showProblem(error);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const asked = Number(new URLSearchParams(location.search).get("hours"));
  setHours(asked > 0 ? asked : 12);
  for (const button of document.querySelectorAll("[data-hours]")) {
    button.addEventListener("click", () => { setHours(Number(button.dataset.hours)); loadHandover(); });
  }
  $("since-form").addEventListener("submit", (event) => { event.preventDefault(); loadHandover(); });
  loadHandover();
});

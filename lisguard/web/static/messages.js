// The message browser: find a message, read it field by field with its ACK and what it did,
// replay dead letters after a fix, reload the knowledge. Data from the API is only ever set as
// text (textContent), never as markup: messages carry what HL7 senders wrote. Requests that
// change something carry the session's CSRF token in X-Lisguard-CSRF.
"use strict";

const PAGE_SIZE = 50;
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
const ANSWERS = { AA: "AA accepted", AE: "AE error", AR: "AR refused" };
const $ = (id) => document.getElementById(id);
let csrf = "";
let role = "";
let nextCursor = null;
let shown = [];
let openId = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (options.method && !["GET", "HEAD"].includes(options.method) && csrf) {
    headers["X-Lisguard-CSRF"] = csrf;
  }
  const response = await fetch(path, { credentials: "same-origin", ...options, headers });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (response.status === 401 && path !== "/api/login") showLogin("Your session has ended: log in again.");
  if (!response.ok) {
    const err = new Error(body && body.error ? body.error : `${response.status} ${response.statusText}`);
    err.body = body;
    throw err;
  }
  return body;
}

function post(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}) });
}

function pad(n) { return String(n).padStart(2, "0"); }
function localTime(iso) {
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
// "2026-03-01 08:30:00" as the date over the time: the table keeps its room for what happened
function twoLines(text) {
  const [day, time] = text.split(" ");
  return [el("div", {}, day), el("div", {}, time)];
}
// an MRN^authority may wrap after the caret, never inside the MRN
function breakable(key) {
  const parts = key.split("^");
  return parts.flatMap((p, i) => (i < parts.length - 1 ? [`${p}^`, el("wbr")] : [p]));
}
function answer(code) { return el("span", { class: `answer ${code}` }, ANSWERS[code] || code || "–"); }

// ---- login

function showLogin(message = "") {
  $("app").hidden = true;
  $("who").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("token").focus();
}

function showApp(me) {
  csrf = me.csrf || "";
  role = me.role || "";
  if (!["manager", "admin"].includes(role)) {
    showLogin(`${me.user} has role ${role || "none"}: the message browser needs manager or admin.`);
    return;
  }
  for (const node of document.querySelectorAll(".admin-only")) node.hidden = role !== "admin";
  $("login").hidden = true;
  $("app").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = `${me.user} (${role})`;
  loadKnowledge();
  search(false);
  openFromHash();
}

async function start() {
  const response = await fetch("/api/me", { credentials: "same-origin" });
  if (response.ok) showApp(await response.json());
  else showLogin();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const me = await post("/api/login", { token: $("token").value.trim() });
    $("token").value = "";
    showApp(me);
  } catch (err) {
    $("login-error").textContent = `Not logged in: ${err.message}`;
  }
});

$("logout").addEventListener("click", async () => {
  try { await post("/api/logout"); } catch (err) { /* the session is gone either way */ }
  csrf = "";
  showLogin("Logged out.");
});

// ---- knowledge

async function loadKnowledge() {
  try {
    const k = await api("/api/knowledge");
    const files = k.files.length ? ` from ${k.files.join(", ")}` : "";
    $("kb-state").replaceChildren("Version ", el("code", {}, k.version),
      k.loaded_at ? `, loaded ${localTime(k.loaded_at)}` : "", files,
      `. MSH-11 taken: ${k.ingest.processing_ids.join(", ")}` +
      (Object.keys(k.ingest.type_actions).length ?
        `; types: ${Object.entries(k.ingest.type_actions).map(([t, a]) => `${t} ${a}`).join(", ")}.` : "."));
    $("reload").disabled = !k.reloadable;
  } catch (err) {
    $("kb-state").textContent = `Could not read the knowledge in force: ${err.message}`;
  }
}

$("reload").addEventListener("click", async () => {
  const out = $("kb-result");
  out.className = "result";
  out.textContent = "Reloading…";
  try {
    const r = await post("/api/admin/knowledge/reload");
    out.className = "result ok";
    const knowledge = r.old_version !== r.new_version ?
      `knowledge version ${r.old_version} → ${r.new_version}` : `knowledge unchanged (${r.new_version})`;
    out.textContent = (r.changed ?
      `Reloaded: ${knowledge}${r.ingest_changed ? "; ingest settings changed" : ""}.` :
      `Reloaded: nothing changed (knowledge version ${r.new_version}).`) +
      (r.restart_needed.length ? ` Needs a restart to apply: ${r.restart_needed.join(", ")}.` : "");
  } catch (err) {
    out.className = "result bad";
    const kept = err.body && err.body.kept_version ? ` Still in force: version ${err.body.kept_version}.` : "";
    out.textContent = `Not reloaded: ${err.message}.${kept}`;
  }
  loadKnowledge();
});

// ---- search

function searchParams() {
  const params = new URLSearchParams();
  for (const name of ["control_id", "mrn", "type", "outcome", "peer"]) {
    const value = $(`s-${name}`).value.trim();
    if (value) params.set(name, value);
  }
  for (const name of ["since", "until"]) {
    const value = $(`s-${name}`).value;
    if (value) params.set(name, new Date(value).toISOString()); // the API takes UTC
  }
  return params;
}

function whatHappened(m) {
  const parts = [];
  if (m.error) parts.push(el("div", { class: "why" }, m.error));
  if (m.replay_of) parts.push(el("div", {}, `Replay of #${m.replay_of}` +
    (m.flags.includes("reevaluation") ? " (re-evaluated)" : "")));
  for (const r of m.replays) {
    const done = ["accepted", "ignored"].includes(r.outcome);
    parts.push(el("div", { class: done ? "ok" : "" },
      `Replayed ${localTime(r.at)} by ${r.by}: ${r.outcome}` + (r.as ? ` → #${r.as}` : "") +
      (r.alerts && r.alerts.length ? `, ${r.alerts.length} alert${r.alerts.length === 1 ? "" : "s"}` : "")));
  }
  if (m.duplicates) parts.push(el("div", {}, `Resent ${m.duplicates}× (stored ACK sent again)`));
  if (m.flags.includes("control-id-reused")) parts.push(el("div", {}, "Control ID reused with other content"));
  if (m.raw_purged) parts.push(el("div", {}, "Raw bytes emptied by retention"));
  return parts.length ? parts : ["–"];
}

function resultRow(m) {
  const open = el("button", { type: "button", class: "link", "data-id": String(m.id) }, m.control_id || "(none)");
  open.addEventListener("click", () => { location.hash = `message=${m.id}`; });
  const pick = el("input", { type: "checkbox", "data-id": String(m.id),
    "aria-label": `Select message ${m.id}` });
  pick.addEventListener("change", updatePicked);
  const row = el("tr", { class: m.dead_letter ? "dead" : "", "data-id": String(m.id) },
    role === "admin" ? el("td", { class: "pick" }, pick) : null,
    el("td", { class: "num" }, String(m.id)),
    el("td", { class: "time", title: m.received_at }, ...twoLines(localTime(m.received_at))),
    el("td", { class: "mono" }, open),
    el("td", {}, m.message_type || "–"),
    el("td", {}, m.sending_application ? `${m.sending_application}@${m.sending_facility}` : "–",
      el("div", { class: "hint" }, m.peer)),
    el("td", { class: "mono" }, ...breakable(m.patient || "–")),
    el("td", {}, answer(m.outcome)),
    el("td", { class: "what" }, ...whatHappened(m)));
  if (m.id === openId) row.classList.add("current");
  return row;
}

async function search(older) {
  $("search-error").textContent = "";
  const params = searchParams();
  params.set("limit", String(PAGE_SIZE));
  if (older && nextCursor !== null) params.set("cursor", nextCursor);
  const body = $("results").tBodies[0];
  try {
    const page = await api(`/api/messages?${params}`);
    if (!older) { body.replaceChildren(); shown = []; }
    for (const m of page.messages) { body.append(resultRow(m)); shown.push(m); }
    nextCursor = page.next_cursor;
    $("more").hidden = nextCursor === null;
    const n = body.rows.length;
    $("search-status").textContent = n === 0 ? "No message matches." :
      `${n} message${n === 1 ? "" : "s"} shown, newest first` + (nextCursor === null ? "." : ": more below.");
  } catch (err) {
    $("search-error").textContent = `Search failed: ${err.message}`;
  }
  $("pick-all").checked = false;
  updatePicked();
}

function picked() {
  return [...document.querySelectorAll("#results tbody input[type=checkbox]:checked")]
    .map((box) => Number(box.dataset.id));
}

function updatePicked() {
  const n = picked().length;
  $("replay-selected").textContent = `Replay selected (${n})`;
  $("replay-selected").disabled = n === 0;
}

$("time-head").textContent = `Received (${ZONE})`;
$("search-form").addEventListener("submit", (event) => { event.preventDefault(); search(false); });
$("search-form").addEventListener("reset", () => setTimeout(() => search(false)));
$("more").addEventListener("click", () => search(true));
$("dead-letters").addEventListener("click", () => { $("s-outcome").value = "dead-letter"; search(false); });
$("pick-all").addEventListener("change", () => {
  for (const box of document.querySelectorAll("#results tbody input[type=checkbox]")) box.checked = $("pick-all").checked;
  updatePicked();
});

// ---- replay

function replayLine(r) {
  const done = ["accepted", "ignored", "duplicate"].includes(r.outcome);
  const what = r.outcome === "accepted" || r.outcome === "ignored" ?
    `${r.outcome}, ${r.ack_code} → new message #${r.new_id}` +
      (r.alerts.length ? `, ${r.alerts.length} new alert${r.alerts.length === 1 ? "" : "s"}` : ", no new alert") :
    r.outcome === "duplicate" ? `duplicate: accepted before, stored ${r.ack_code} answered, nothing processed` :
    `${r.outcome}${r.ack_code ? ` (${r.ack_code})` : ""}${r.error ? `: ${r.error}` : ""}`;
  return el("li", {}, `#${r.id} ${r.control_id || ""}: `, el("span", { class: done ? "ok" : "bad" }, what));
}

async function runReplay(ids, reason, reevaluate, list) {
  list.replaceChildren(el("li", {}, `Replaying ${ids.length} message${ids.length === 1 ? "" : "s"}…`));
  try {
    const report = await post("/api/messages/replay", { ids, reason, reevaluate });
    list.replaceChildren(...report.results.map(replayLine));
  } catch (err) {
    list.replaceChildren(el("li", { class: "bad" }, `Replay failed: ${err.message}`));
  }
  await search(false);
  if (openId !== null) await openMessage(openId);
}

$("replay-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const ids = picked();
  if (!ids.length) return;
  runReplay(ids, $("replay-reason").value.trim(), $("replay-reevaluate").checked, $("replay-results"));
});

$("detail-replay").addEventListener("submit", (event) => {
  event.preventDefault();
  if (openId === null) return;
  runReplay([openId], $("detail-reason").value.trim(), $("detail-reevaluate").checked,
    $("detail-replay-results"));
});

// ---- one message

function fact(list, name, ...value) { list.append(el("dt", {}, name), el("dd", {}, ...value)); }

function segmentRows(table, message) {
  const rows = [];
  for (const seg of message.segments) {
    rows.push(el("tr", { class: "segment" }, el("th", { colspan: "4", scope: "rowgroup" },
      `${seg.index}. ${seg.name || "?"}` + (seg.title ? ` – ${seg.title}` : ""))));
    for (const f of seg.fields) {
      const parts = f.components.length ? el("ul", { class: "parts" },
        ...f.components.map((c) => el("li", {}, `${c.repetition > 1 ? `[${c.repetition}] ` : ""}` +
          `${c.number}${c.name ? ` ${c.name}` : ""}: ${c.value}`))) : null;
      rows.push(el("tr", {},
        el("td", { class: "field" }, seg.name ? `${seg.name}-${f.number}` : "line"),
        el("td", {}, f.name || (seg.name ? "(not in the standard)" : "")),
        el("td", { class: "type" }, f.datatype),
        el("td", { class: "value" }, f.value, parts)));
    }
  }
  table.tBodies[0].replaceChildren(...rows);
}

function namesNote(message) {
  if (!message.segments.length) return "";
  if (message.exact) return `Field names from HL7 v${message.names_from}, the version in MSH-12.`;
  return `Field names from HL7 v${message.names_from}` +
    (message.version ? ` (MSH-12 says ${message.version}, which the reference does not have).` : " (no MSH-12).");
}

function detailText(detail) {
  return Object.entries(detail).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join("\n");
}

async function openMessage(id) {
  openId = id;
  $("detail").hidden = false;
  $("detail-error").textContent = "";
  for (const row of document.querySelectorAll("#results tbody tr")) {
    row.classList.toggle("current", Number(row.dataset.id) === id);
  }
  let m;
  try {
    m = await api(`/api/messages/${id}`);
  } catch (err) {
    $("detail-error").textContent = `Could not open message ${id}: ${err.message}`;
    return;
  }
  $("detail-title").textContent = `Message #${m.id} · ${m.message_type || "type unread"} · ${m.control_id || "no control ID"}`;
  const facts = $("detail-facts");
  facts.replaceChildren();
  fact(facts, "Received", `${localTime(m.received_at)} (${ZONE}) from ${m.peer || "?"}`);
  fact(facts, "Sender", m.sending_application ? `${m.sending_application} @ ${m.sending_facility}` : "unknown");
  fact(facts, "Answered", answer(m.outcome), m.error ? ` ${m.error}` : "");
  if (m.patient) fact(facts, "Patient", el("code", {}, m.patient));
  if (m.replayed_from) {
    const r = m.replayed_from;
    fact(facts, "Replay of", `message #${m.replay_of}, by ${r.by} at ${localTime(r.at)}` +
      `${r.reevaluate ? " (re-evaluated)" : ""}: ${r.reason}`);
  }
  if (m.flags.length) fact(facts, "Flags", m.flags.join(", "));
  fact(facts, "Read as", m.raw_purged ? "raw bytes emptied by retention" : `${m.decoded_with}`);
  fact(facts, "SHA-256", el("code", {}, m.content_hash.slice(0, 16) + "…"));
  $("detail-reason").value = "";
  $("detail-replay-results").replaceChildren();
  $("names-note").textContent = namesNote(m.message);
  segmentRows($("segments"), m.message);
  $("raw-text").textContent = m.text.replace(/\r\n?/g, "\n");
  $("acks").replaceChildren(...(m.acks.length ? m.acks.map((a) => el("pre", {}, a.text.replace(/\r/g, "\n"))) :
    [el("p", { class: "hint" }, "No ACK was sent (MSH-15/16 asked for none).")]));
  $("alerts").replaceChildren(...m.alerts.map((a) => el("li", {},
    el("span", { class: `severity ${a.severity}` }, a.severity.toUpperCase()), ` ${a.title} (${a.rule})`,
    ` for ${a.patient}${a.order ? `, order ${a.order}` : ""}: ${a.recommendations.join(", ")} · ${a.status}`,
    a.test ? " · TEST" : "")));
  $("changes").replaceChildren(...m.state_changes.map((e) => el("li", {},
    `${e.kind.replace(/^state\./, "")} for ${e.subject}: ${e.detail.detail || detailText(e.detail)}`)));
  $("later").replaceChildren(...m.later.map((e) => el("li", {}, e.kind === "message.duplicate" ?
    `${localTime(e.at)}: resent from ${e.peer}, answered with the stored ACK` :
    `${localTime(e.at)}: replayed by ${e.by} (${e.reason})${e.reevaluate ? ", re-evaluated" : ""}: ${e.outcome}` +
      (e.as ? ` → message #${e.as}` : "") + (e.error ? `: ${e.error}` : ""))));
  $("events").tBodies[0].replaceChildren(...m.events.map((e) => el("tr", {},
    el("td", { class: "num" }, String(e.seq)), el("td", {}, e.kind), el("td", {}, e.actor),
    el("td", { class: "mono" }, e.subject), el("td", { class: "detail" }, detailText(e.detail)))));
  $("detail").scrollIntoView({ block: "start" });
}

function openFromHash() {
  const match = /message=(\d+)/.exec(location.hash);
  if (match && !$("app").hidden) openMessage(Number(match[1]));
}

window.addEventListener("hashchange", openFromHash);
$("detail-close").addEventListener("click", () => {
  $("detail").hidden = true;
  openId = null;
  history.replaceState(null, "", location.pathname);
  for (const row of document.querySelectorAll("#results tbody tr")) row.classList.remove("current");
});

updatePicked();
start();

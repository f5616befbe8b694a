// The queue of the technologist page: alerts in the server's triage order (GET /api/alerts:
// severity, then a crossmatch or blood product waiting, then the newest event; lisguard.domain
// .triage), grouped per patient (a group goes where its most urgent alert goes), paged with the
// API's cursors ("Show more"), and apart from it the collapsed "Background" of old baseline
// reminders. Uses app.js's helpers (el, api, when, filters, matches, actions, ...); every value
// goes in as text. A card is rebuilt only when its alert changed, so 500 alerts stay quick.
"use strict";

const PAGE_SIZE = 50;
const MAX_PAGE = 500;  // the API's largest page: a reload asks for as many as were shown
const sections = {
  queue: { name: "queue", root: "queue", more: "queue-more", alerts: new Map(), cursor: null,
    edge: null, total: 0, generation: 0, patients: new Map() },
  background: { name: "background", root: "background-queue", more: "background-more",
    alerts: new Map(), cursor: null, edge: null, total: 0, generation: 0, patients: new Map() },
};
const cards = new Map();  // alert id -> { view, node }
const expanded = new Set();  // cards whose orders (lead and repeats) are shown
const pinned = new Set();  // opened by #alert=<id>: shown even if on a page not loaded yet
let backgroundDays = 7;
let renderQueued = false;
let firstRender = true;

// larger key first (the server sorts the same): [severity rank, transfusion, event, raised, id]
function keyOf(view) { return (view.triage && view.triage.key) || [0, 0, "", "", view.id]; }
function compare(a, b) {
  const x = keyOf(a), y = keyOf(b);
  for (let i = 0; i < x.length; i += 1) {
    if (x[i] > y[i]) return -1;
    if (x[i] < y[i]) return 1;
  }
  return 0;
}
const groupKey = (view) => `${view.patient_key}\u001f${view.alert.processing_id || "P"}`;
const sectionOf = (id) => Object.values(sections).find((s) => s.alerts.has(id)) || null;

// ------------------------------------------------------------------ loading

function queryFor(name) {
  const f = filters();
  const params = new URLSearchParams({ status: f.status, test: f.test, section: name });
  if (f.rule) params.set("rule", f.rule);
  if (f.location) params.set("location", f.location);
  if (f.audience) params.set("audience", f.audience);
  return params;
}

// from the first page again (a filter changed, a reconnect, the minute's refresh): as many
// alerts as were shown, so the technologist's place is kept
async function reloadSection(s) {
  const generation = ++s.generation;
  const params = queryFor(s.name);
  params.set("limit", String(Math.min(MAX_PAGE, Math.max(PAGE_SIZE, s.alerts.size))));
  const data = await api(`/api/alerts?${params}`);
  if (generation !== s.generation) return;
  s.alerts = new Map(data.alerts.map((v) => [v.id, v]));
  s.patients = new Map();
  took(s, data);
}

async function moreOf(s) {
  if (!s.cursor) return;
  const generation = s.generation;
  const params = queryFor(s.name);
  params.set("limit", String(PAGE_SIZE));
  params.set("cursor", s.cursor);
  const data = await api(`/api/alerts?${params}`);
  if (generation !== s.generation) return;  // reloaded meanwhile: that page is stale
  for (const view of data.alerts) s.alerts.set(view.id, view);
  took(s, data);
  scheduleRender();
}

function took(s, data) {
  s.cursor = data.next_cursor;
  s.total = data.total;
  // each patient's alerts in all pages: a group may be larger than what is loaded yet
  for (const [key, n] of Object.entries(data.patient_totals || {})) s.patients.set(key, n);
  if (data.alerts.length) s.edge = data.alerts[data.alerts.length - 1];
  if (data.background_after_days !== undefined) backgroundDays = data.background_after_days;
}

async function loadQueue() {
  try {
    await Promise.all([reloadSection(sections.queue), reloadSection(sections.background)]);
    showBanner("");
    await showTarget();
    render();
  } catch (error) {
    if (error.status !== 401) showBanner(`Could not load the queue: ${error.message}`);
  }
}

// other filters: from the first page, with nothing of the old query kept
function restartQueue() {
  for (const s of Object.values(sections)) {
    s.generation += 1;
    Object.assign(s, { alerts: new Map(), cursor: null, edge: null, total: 0, patients: new Map() });
  }
  pinned.clear();
  return loadQueue();
}

// #alert=<id> (the escalation banner's "Show in queue"): fetched if not loaded, then shown
async function showTarget() {
  const id = location.hash.startsWith("#alert=") ? location.hash.slice(7) : null;
  if (!id || sectionOf(id)) return;
  try {
    const view = await api(`/api/alerts/${encodeURIComponent(id)}`);
    if (!matches(view)) return;
    pinned.add(id);
    (view.triage.background ? sections.background : sections.queue).alerts.set(id, view);
  } catch (error) {
    showBanner(`Alert ${id}: ${error.message}`);
  }
}

// a live `alert` event: placed in its section, unless it belongs to a page not loaded yet
async function upsert(view) {
  const known = sectionOf(view.id);
  const before = known && known.alerts.get(view.id);
  if (before) {
    if (!view.triage) view.triage = before.triage;  // an alert's place never changes
    if (!view.escalated_at) view.escalated_at = before.escalated_at;  // once escalated, it was
  }
  if (!view.triage && matches(view)) {  // new: its place comes with the single alert
    try {
      view = await api(`/api/alerts/${encodeURIComponent(view.id)}`);
    } catch (error) {
      return;  // gone or not allowed: the minute's reload will tell
    }
  }
  const current = sectionOf(view.id);
  if (current) current.alerts.delete(view.id);
  if (!matches(view) || !view.triage) {
    if (current) counted(current, view, -1);
    scheduleRender();
    return;
  }
  const s = view.triage.background ? sections.background : sections.queue;
  if (!current) {
    counted(s, view, 1);
    if (s.cursor && s.edge && compare(view, s.edge) > 0 && !pinned.has(view.id)) {
      scheduleRender();  // it will come with "Show more"; the count says it is there
      return;
    }
    if (!before) state.fresh.add(view.id);
  } else if (current !== s) {
    counted(current, view, -1);
    counted(s, view, 1);
  }
  s.alerts.set(view.id, view);
  scheduleRender();
}

function counted(s, view, by) {
  s.total = Math.max(0, s.total + by);
  const known = s.patients.get(view.patient_key);
  if (known !== undefined) s.patients.set(view.patient_key, Math.max(0, known + by));
}

// ------------------------------------------------------------------ rendering

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; render(); });
}

function render() {
  const target = location.hash.startsWith("#alert=") ? location.hash.slice(7) : null;
  const shown = new Set();
  for (const s of Object.values(sections)) {
    const views = [...s.alerts.values()].sort(compare);
    const groups = new Map();
    for (const view of views) {
      if (!groups.has(groupKey(view))) groups.set(groupKey(view), []);
      groups.get(groupKey(view)).push(view);
      shown.add(view.id);
    }
    $(s.root).replaceChildren(...[...groups.values()].map((list) => group(s, list, target)));
    const more = $(s.more);
    more.hidden = !s.cursor;
    more.querySelector("button").textContent =
      `Show ${PAGE_SIZE} more (${s.alerts.size} of ${s.total} shown)`;
  }
  for (const id of cards.keys()) if (!shown.has(id)) cards.delete(id);
  summarise();
  state.fresh.clear();
  if (firstRender) {
    firstRender = false;
    performance.mark("lisguard-queue-rendered");  // the page's first render (tests print it)
  }
  if (target && shown.has(target)) {
    const node = document.querySelector(`article[data-id="${CSS.escape(target)}"]`);
    if (node && !node.dataset.scrolled) { node.dataset.scrolled = "1"; node.scrollIntoView({ block: "center" }); }
  }
}

function summarise() {
  const q = sections.queue, b = sections.background;
  $("queue-summary").textContent = q.total
    ? `${q.alerts.size < q.total ? `${q.alerts.size} of ` : ""}${q.total} alert${q.total === 1 ? "" : "s"}`
      + " · most urgent first: severity, then a crossmatch or blood product waiting, then the newest"
    : "";
  const noneAtAll = !q.alerts.size && !b.alerts.size;
  $("empty").hidden = q.alerts.size > 0;
  $("empty").textContent = noneAtAll ? "No alerts match these filters."
    : "Nothing in the queue: only background reminders below.";
  $("background").hidden = b.total === 0;
  $("background-count").textContent = String(b.total);
  const days = backgroundDays === 1 ? "1 day" : `${backgroundDays} days`;
  $("background-what").textContent =
    `baseline work-up reminder${b.total === 1 ? "" : "s"} whose first dose or order is more than ${days} old`;
}

// one patient: the two identifiers once, then that patient's alerts, most urgent first
function group(s, list, target) {
  const a = list[0].alert;
  // more of this patient's alerts on pages not loaded yet: said, so "1 alert" is never a lie
  const all = Math.max(list.length, s.patients.get(list[0].patient_key) || 0);
  const size = s.cursor && all > list.length ? `${list.length} of ${all} alerts shown`
    : `${list.length} alert${list.length === 1 ? "" : "s"}`;
  return el("section", { class: `patient-group sev-${a.severity}`, "data-patient": list[0].patient_key },
    el("header", { class: "group-head" },
      el("p", { class: "ids" },
        a.test ? el("span", { class: "test-badge" }, "TEST") : null,
        el("b", { class: "name" }, a.patient_name || "name not received"),
        " · DOB ", el("b", {}, a.birth_date || "—"),
        " · MRN ", el("b", {}, a.patient), a.patient_authority ? ` (${a.patient_authority})` : ""),
      el("span", { class: "group-count" }, size)),
    list.map((view) => cardNode(view, view.id === target)));
}

function cardNode(view, isTarget) {
  let cached = cards.get(view.id);
  if (!cached || cached.view !== view) {
    cached = { view, node: card(view) };
    cards.set(view.id, cached);
  }
  cached.node.classList.toggle("target", isTarget);
  if (state.fresh.has(view.id)) {
    cached.node.classList.remove("fresh");
    void cached.node.offsetWidth;  // restart the highlight
    cached.node.classList.add("fresh");
  }
  return cached.node;
}

const SEVERITY_WORDS = { high: "HIGH", medium: "MEDIUM", low: "LOW" };

function card(view) {
  const a = view.alert;
  const t = view.triage || {};
  const classes = ["alert", `sev-${a.severity}`, `status-${view.status}`];
  if (a.test) classes.push("test");
  return el("article", { class: classes.join(" "), "data-id": view.id, "data-status": view.status },
    el("div", { class: "sev" }, el("span", {}, SEVERITY_WORDS[a.severity] || a.severity.toUpperCase()),
      " ", el("small", {}, "severity")),
    el("div", { class: "body" },
      el("h2", {}, a.test ? el("span", { class: "test-badge",
        title: `raised by a test message (MSH-11 ${a.processing_id}): not a real patient alert` },
      "TEST") : null, view.rule_title,
        view.count > 1 ? el("span", { class: "repeat", title: "identical alerts collapsed into this one" }, `×${view.count}`) : null,
        audienceBadge(view),
        t.transfusion ? el("span", { class: "transfusion", "data-kind": t.transfusion,
          title: "a transfusion is waiting on this test: first within its severity" }, t.transfusion_title) : null,
        view.escalated_at ? el("span", { class: "escalated",
          title: `escalated ${when(view.escalated_at)}: HIGH and not acknowledged in time` }, "ESCALATED") : null),
      // what to do, first and plainly; the rule's own sentence says why, the codes come last
      el("ul", { class: "recs" }, a.recommendations.map((code) =>
        el("li", {}, view.meanings[code] || code))),
      el("p", { class: "text" }, a.text),
      el("p", { class: "facts" },
        a.order_text || a.order_code
          ? ["Test ", el("b", {}, [a.order_text, a.order_code].filter(Boolean).join(" · ")), " · "]
          : null,
        "Order ", el("b", {}, a.order || "—"),
        a.collected ? [" · Collected ", el("b", {}, when(a.collected))] : null,
        " · Location ", el("b", {}, a.location || "—"),
        " · Event ", el("b", {}, when(a.event_time) || "—"),
        " · Raised ", when(view.created_at)),
      view.count > 1 ? ordersBox(view) : null,
      statusLine(view),
      deliveryLine(view),
      el("p", { class: "codes" }, "Codes: ", a.recommendations.map((code, i) =>
        [i ? " · " : "", el("code", {}, code)]))),
    el("div", { class: "actions" }, actions(view)));
}

// a collapsed card holds several orders: the lead's and each repeat's, fetched when opened
function ordersBox(view) {
  const box = el("details", { class: "orders" },
    el("summary", {}, `Orders (${view.count})`),
    el("div", { class: "orders-body" }, "Loading…"));
  box.addEventListener("toggle", () => {
    if (box.open) { expanded.add(view.id); fillOrders(box, view); } else expanded.delete(view.id);
  });
  if (expanded.has(view.id)) { box.open = true; }  // rebuilt after a change: stays open
  return box;
}

async function fillOrders(box, view) {
  const body = box.querySelector(".orders-body");
  try {
    const full = await api(`/api/alerts/${encodeURIComponent(view.id)}`);
    const lead = { ...full.alert, created_at: full.created_at };
    const rows = [lead, ...(full.repeats || [])].map((r, i) => el("tr", {},
      el("td", {}, [r.order_text, r.order_code].filter(Boolean).join(" · ") || "—"),
      el("td", {}, r.order || "—"),
      el("td", {}, when(r.collected) || "—"),
      el("td", {}, when(r.event_time) || "—"),
      el("td", {}, i ? "repeat" : "this alert")));
    body.replaceChildren(el("table", {},
      el("thead", {}, el("tr", {}, ["Test", "Order", "Collected", "Event", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)));
  } catch (error) {
    body.replaceChildren(el("p", { class: "error" }, error.message));
  }
}

function wireQueue() {
  $("queue-more").querySelector("button").addEventListener("click", () =>
    moreOf(sections.queue).catch((e) => showBanner(`Could not load more: ${e.message}`)));
  $("background-more").querySelector("button").addEventListener("click", () =>
    moreOf(sections.background).catch((e) => showBanner(`Could not load more: ${e.message}`)));
  window.addEventListener("hashchange", () => showTarget().then(render));
}

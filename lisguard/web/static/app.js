// The technologist page: the alert queue (queue.js: triage order, patient groups, paging),
// live over server-sent events, with acknowledge, resolve, snooze and the patient view
// (patient.js). Plain JavaScript, no build step. Every value from the
// API is put into the page as text (never as markup). Requests that change something carry the
// session's CSRF token (from /api/me) in X-Lisguard-CSRF: the server refuses them without it.
"use strict";

const STATUS_TEXT = {
  open: "Open", acknowledged: "Acknowledged", resolved: "Resolved",
  snoozed: "Snoozed", collapsed: "Collapsed into another alert",
};
const state = { meta: null, fresh: new Set(), current: null, csrf: "" };
const SAFE_METHODS = ["GET", "HEAD"];
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Times: an offset means a wall-clock instant (shown in local time); without one it is the
// sender's own local time from the message, shown as it came.
function when(text) {
  if (!text) return "";
  if (/(Z|[+-]\d\d:\d\d)$/.test(text)) {
    const d = new Date(text);
    const two = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} `
      + `${two(d.getHours())}:${two(d.getMinutes())}`;
  }
  return text.replace("T", " ").slice(0, 16);
}
const day = (text) => (text ? text.slice(0, 10) : "");

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const init = { credentials: "same-origin", headers: { Accept: "application/json" }, ...options };
  if (!SAFE_METHODS.includes(init.method || "GET") && state.csrf) {
    init.headers["X-Lisguard-CSRF"] = state.csrf;
  }
  if (options.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify({ ...options.body, by: whoAmI() || undefined });
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (response.status === 401) showLogin();
  if (!response.ok) throw new HttpError(response.status, data.error || response.statusText);
  return data;
}

function whoAmI() { return localStorage.getItem("lisguard.who") || ""; }

function filters() {
  return { status: $("f-status").value, rule: $("f-rule").value, location: $("f-location").value,
    audience: $("f-audience").value, test: $("f-test").value };
}

function matches(view) {
  const f = filters();
  const statuses = f.status === "all" ? null : f.status.split(",");
  // alerts of test messages (MSH-11 T/D) stay out of the production queue, also when live
  return (!statuses || statuses.includes(view.status))
    && (!f.rule || view.alert.rule === f.rule)
    && (!f.location || view.alert.location === f.location)
    && (!f.audience || view.alert.audience === f.audience)
    && (f.test === "include" || (f.test === "only") === Boolean(view.alert.test));
}

function showBanner(message) {
  const banner = $("banner");
  banner.textContent = message;
  banner.hidden = !message;
}

// ------------------------------------------------------------------ loading

// who is logged in, and the CSRF token of the session (empty with a bearer token or no login)
async function loadMe() {
  const me = await api("/api/me");
  state.csrf = me.csrf || "";
  $("logout").hidden = !me.csrf;
}

async function loadMeta() {
  const meta = await api("/api/meta");
  state.meta = meta;
  fillSelect($("f-rule"), meta.rules.map((r) => [r.id, r.title]), "All rules");
  fillSelect($("f-location"), meta.locations.map((l) => [l, l]), "All locations");
  fillSelect($("f-audience"), (meta.audiences || []).map((a) => [a.id, a.title]), "All audiences");
  const counts = meta.counts || {};
  $("count-open").textContent = `Open ${counts.open || 0}`;
  $("count-open").classList.toggle("nonzero", (counts.open || 0) > 0);
  $("count-acknowledged").textContent = `Acknowledged ${counts.acknowledged || 0}`;
  const tests = (meta.test_counts || {}).open || 0;
  $("count-test").textContent = `Test ${tests}`;
  $("count-test").hidden = !tests;
  const anonymous = meta.user === "anonymous";
  $("who-box").hidden = !anonymous;
  $("user").textContent = anonymous ? "" : meta.user;
}

function fillSelect(select, options, allLabel) {
  const keep = select.value;
  select.replaceChildren(el("option", { value: "" }, allLabel));
  for (const [value, label] of options) select.append(el("option", { value }, label));
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
}

// counts and filter choices: refreshed at once, then at most every 300 ms during a burst
let metaCooling = false;
let metaAgain = false;
function refreshMetaSoon() {
  if (metaCooling) { metaAgain = true; return; }
  metaCooling = true;
  loadMeta().catch(() => {});
  setTimeout(() => {
    metaCooling = false;
    if (metaAgain) { metaAgain = false; refreshMetaSoon(); }
  }, 300);
}

// ------------------------------------------------------------------ card parts (queue.js)

// who acts on the alert, in words (the page's filter and the channels' restriction use it too)
function audienceBadge(view) {
  const audience = view.alert.audience;
  if (!audience) return null;
  return el("span", { class: "audience", "data-audience": audience,
    title: "who acts on this alert" }, el("small", {}, "For "), view.audience_title || audience);
}

function statusLine(view) {
  if (view.status === "acknowledged" && view.acknowledged) {
    const ack = view.acknowledged;
    return el("p", { class: "state acknowledged" },
      `Acknowledged by ${ack.by} at ${when(ack.at)}`, ack.note ? ` — ${ack.note}` : "");
  }
  if (view.status === "resolved" && view.resolved) {
    const res = view.resolved;
    const what = res.resolution === "done" ? "done" : "not applicable";
    return el("p", { class: "state resolved" },
      `Resolved (${what}) by ${res.by} at ${when(res.at)}`, res.reason ? ` — ${res.reason}` : "");
  }
  if (view.status !== "open") return el("p", { class: "state" }, STATUS_TEXT[view.status] || view.status);
  return null;
}

function deliveryLine(view) {
  if (!view.deliveries.length) return null;
  // the receiver's error is in the tooltip: the card says what a technologist needs to know
  const said = (d) => ({
    delivered: "delivered",
    failed: `FAILED after ${d.attempts} tries`,
    pending: d.attempts ? `not reached yet, retrying (${d.attempts} tries)` : "queued",
  })[d.status] || d.status;
  return el("p", { class: "deliveries" }, "Delivery: ", view.deliveries.map((d, i) => [
    i ? " · " : "",
    el("span", { class: d.status, title: d.last_error || null },
      `${d.channel === "hl7" ? "HL7" : "Webhook"} ${said(d)}`),
  ]));
}

function actions(view) {
  const buttons = [];
  if (view.status === "open") {
    buttons.push(el("button", { class: "ack", onclick: () => openAck(view) }, "Acknowledge"));
  }
  if (["open", "acknowledged", "snoozed"].includes(view.status)) {
    buttons.push(el("button", { onclick: () => openResolve(view) }, "Resolve…"));
  }
  // a snooze holds back the patient's alerts of every feed: not offered for a test alert
  if (["open", "acknowledged"].includes(view.status) && !view.alert.test) {
    buttons.push(el("button", { class: "secondary", onclick: () => openSnooze(view) }, "Snooze…"));
  }
  buttons.push(el("button", { class: "secondary",
    onclick: () => openPatient(view.patient_key, view.alert.processing_id) }, "Patient"));
  return buttons;
}

// ------------------------------------------------------------------ actions

// two identifiers before anything is done for a patient: name, date of birth, MRN
function subject(view) {
  const a = view.alert;
  const mrn = a.patient_authority ? `${a.patient} (${a.patient_authority})` : a.patient;
  return `${view.rule_title} · ${a.patient_name || "name not received"} · DOB ${a.birth_date || "—"}`
    + ` · MRN ${mrn} · order ${a.order || "—"}`;
}

function openAck(view) {
  state.current = view;
  $("ack-subject").textContent = subject(view);
  $("ack-note").value = "";
  $("ack-dialog").showModal();
}

function openResolve(view) {
  state.current = view;
  $("resolve-subject").textContent = subject(view);
  $("resolve-reason").value = "";
  $("resolve-error").textContent = "";
  $("resolve-dialog").showModal();
}

function openSnooze(view) {
  state.current = view;
  $("snooze-subject").textContent = subject(view);
  $("snooze-reason").value = "";
  $("snooze-error").textContent = "";
  $("snooze-dialog").showModal();
}

async function act(dialogId, errorId, path, body) {
  try {
    const result = await api(path, { method: "POST", body });
    $(dialogId).close();
    upsert(result.alert && result.snooze ? result.alert : result);
    refreshMetaSoon();
  } catch (error) {
    if (errorId) $(errorId).textContent = error.message;
    else showBanner(error.message);
    if (!errorId) $(dialogId).close();
  }
}

function wireDialogs() {
  for (const button of document.querySelectorAll("[data-close]")) {
    button.addEventListener("click", () => button.closest("dialog").close());
  }
  $("ack-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = state.current.id;
    act("ack-dialog", null, `/api/alerts/${id}/acknowledge`, { note: $("ack-note").value });
  });
  $("resolve-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const resolution = document.querySelector("input[name=resolution]:checked").value;
    act("resolve-dialog", "resolve-error", `/api/alerts/${state.current.id}/resolve`,
      { resolution, reason: $("resolve-reason").value });
  });
  $("snooze-form").addEventListener("submit", (event) => {
    event.preventDefault();
    act("snooze-dialog", "snooze-error", `/api/alerts/${state.current.id}/snooze`,
      { reason: $("snooze-reason").value, hours: Number($("snooze-hours").value) });
  });
}

// ------------------------------------------------------------------ live updates and start

function connect() {
  const live = $("live");
  const source = new EventSource("/api/events");
  source.addEventListener("hello", () => {
    live.dataset.state = "live";
    live.textContent = "Live";
    loadQueue();  // (re)connected: whatever happened meanwhile
    refreshMetaSoon();
  });
  source.addEventListener("alert", (event) => {
    upsert(JSON.parse(event.data));
    refreshMetaSoon();
  });
  source.onerror = () => {
    live.dataset.state = "down";
    live.textContent = "Reconnecting…";
  };
}

function showLogin() {
  $("login").hidden = false;
}

async function login(event) {
  event.preventDefault();
  try {
    await api("/api/login", { method: "POST", body: { token: $("login-token").value } });
    location.reload();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
}

async function logout() {
  try {
    await api("/api/logout", { method: "POST" });
  } finally {
    location.reload();
  }
}

async function start() {
  // logged out: the login alone (no filters, no "Connecting...", no 401 in the console)
  try {
    const session = await api("/api/session");
    if (!session.authenticated) {
      document.body.classList.add("logged-out");
      $("login-form").addEventListener("submit", login);
      showLogin();
      return;
    }
  } catch (error) {
    showBanner(`lisguard is not answering: ${error.message}`);
    return;
  }
  $("who").value = whoAmI();
  $("who").addEventListener("change", () => localStorage.setItem("lisguard.who", $("who").value.trim()));
  for (const id of ["f-status", "f-rule", "f-location", "f-audience", "f-test"]) $(id).addEventListener("change", restartQueue);
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  wireDialogs();
  wireQueue();
  try {
    await loadMe();
    await loadMeta();
  } catch (error) {
    if (error.status === 401) return;
    showBanner(`lisguard is not answering: ${error.message}`);
  }
  await loadQueue();
  connect();
  openPatientFromHash();
  window.addEventListener("hashchange", openPatientFromHash);
  setInterval(loadQueue, 60000);  // alerts raised on another replica
}

document.addEventListener("DOMContentLoaded", start);

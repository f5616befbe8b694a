// Manager view: audit search, exports, chain check and the daily summary drawn as SVG.
// Data from the API is only ever set as text (textContent, SVG text nodes), never as markup:
// audit events carry what HL7 senders wrote. Requests that change something carry the session's
// CSRF token (from login or /api/me) in X-Lisguard-CSRF: the server refuses them without it.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PAGE_SIZE = 100;
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
// Okabe-Ito colours: told apart with the common colour-vision deficiencies
const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000"];
const OUTCOME_COLOURS = { AA: "#009E73", AE: "#E69F00", AR: "#D55E00" };

const $ = (id) => document.getElementById(id);
let nextBefore = null;
let csrf = "";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
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
    const message = body && body.error ? body.error : `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return body;
}

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
  if (!["manager", "admin"].includes(me.role)) {
    showLogin(`${me.user} has role ${me.role || "none"}: the manager view needs manager or admin.`);
    return;
  }
  $("login").hidden = true;
  $("app").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = `${me.user} (${me.role})`;
  loadReport();
  search(false);
}

async function start() {
  const response = await fetch("/api/me", { credentials: "same-origin" });
  if (response.ok) showApp(await response.json());
  else showLogin();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const me = await api("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: $("token").value.trim() }),
    });
    $("token").value = "";
    showApp(me);
  } catch (err) {
    $("login-error").textContent = `Not logged in: ${err.message}`;
  }
});

$("logout").addEventListener("click", async () => {
  try {
    await api("/api/logout", { method: "POST" });
    csrf = "";
    showLogin("Logged out.");
  } catch (err) {
    showLogin(`Could not log out: ${err.message}`);
  }
});

// ---- audit log

function filterParams() {
  const params = new URLSearchParams();
  for (const name of ["from", "to"]) {
    const value = $(`f-${name}`).value;
    // datetime-local is the manager's local time; the API takes UTC
    if (value) params.set(name, new Date(value).toISOString());
  }
  for (const name of ["patient", "user", "kind", "rule"]) {
    const value = $(`f-${name}`).value.trim();
    if (value) params.set(name, value);
  }
  return params;
}

function updateDownloads() {
  for (const format of ["csv", "jsonl"]) {
    const params = filterParams();
    params.set("format", format);
    $(`download-${format}`).href = `/api/audit/export?${params}`;
  }
}

function pad(n) { return String(n).padStart(2, "0"); }

function localTime(iso) {
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function eventRow(e) {
  const time = el("td", { class: "time", title: e.at }, localTime(e.at));
  // keyed hashes are "hmac:<hex>": show 12 hex digits either way (the title holds it whole)
  const digits = (e.hash || "").replace(/^hmac:/, "");
  const hash = el("td", { class: "hash", title: e.hash || "" }, digits.slice(0, 12));
  return el("tr", {},
    el("td", { class: "num" }, String(e.seq)), time, el("td", {}, e.kind),
    el("td", {}, e.actor), el("td", { class: "subject" }, e.subject),
    el("td", { class: "detail" }, detailText(e.detail)), hash);
}

// one "key: value" per line reads better than JSON; nested values stay JSON
function detailText(detail) {
  return Object.entries(detail)
    .map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join("\n");
}

async function search(older) {
  $("log-error").textContent = "";
  const params = filterParams();
  params.set("limit", String(PAGE_SIZE));
  if (older && nextBefore !== null) params.set("before_seq", String(nextBefore));
  const body = $("log-table").tBodies[0];
  try {
    const page = await api(`/api/audit?${params}`);
    if (!older) body.replaceChildren();
    for (const e of page.events) body.append(eventRow(e));
    nextBefore = page.next_before_seq;
    $("older").hidden = nextBefore === null;
    const shown = body.rows.length;
    $("log-status").textContent = shown === 0 ? "No events match these filters." :
      `${shown} event${shown === 1 ? "" : "s"} shown, newest first` +
      (nextBefore === null ? "." : ": more below.");
  } catch (err) {
    $("log-error").textContent = `Search failed: ${err.message}`;
  }
}

$("time-head").textContent = `Time (${ZONE})`;
$("filter-form").addEventListener("submit", (event) => { event.preventDefault(); search(false); });
$("filter-form").addEventListener("input", updateDownloads);
$("filter-form").addEventListener("reset", () => setTimeout(() => { updateDownloads(); search(false); }));
$("older").addEventListener("click", () => search(true));

// ---- chain

$("verify").addEventListener("click", async () => {
  const out = $("verify-result");
  out.replaceChildren("Checking the chain…");
  try {
    const r = await api("/api/audit/verify");
    if (r.ok) {
      out.replaceChildren(el("span", { class: "ok" }, `✔ Intact: ${r.checked} events checked.`));
    } else {
      const list = el("ul", {}, ...r.problems.map((p) => el("li", {}, p)));
      out.replaceChildren(
        el("span", { class: "bad" }, `✘ Broken: ${r.problems.length} problem(s) in ${r.checked} events.`),
        list);
    }
  } catch (err) {
    out.replaceChildren(el("span", { class: "bad" }, `Check failed: ${err.message}`));
  }
});

// ---- daily summary

function isoDay(d) { return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`; }

function shortDay(iso) {
  const [y, m, d] = iso.split("-").map(Number);
  return new Date(y, m - 1, d).toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

function niceMax(value) {
  if (value <= 4) return Math.max(1, Math.ceil(value));
  const step = 10 ** Math.floor(Math.log10(value));
  for (const f of [1, 2, 2.5, 5, 10]) if (f * step >= value) return f * step;
  return value;
}

// drawn at the width it is shown at, so its text stays the size of the page's text
function frame(target, days, top, unit) {
  const W = Math.max(320, Math.round(target.clientWidth || 560)), H = 250, L = 48, R = 10, T = 26, B = 34;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "plot" });
  const plot = { x: L, y: T, w: W - L - R, h: H - T - B, top };
  const y = (v) => plot.y + plot.h - (v / top) * plot.h;
  // counts get whole-number ticks only
  const ticks = Number.isInteger(top / 2) || unit === "minutes" ? [0, top / 2, top] : [0, top];
  for (const v of ticks) {
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#d0d0d0" }));
    svg.append(svgEl("text", { x: L - 6, y: y(v) + 5, "text-anchor": "end", "font-size": 14 },
      Number.isInteger(v) ? String(v) : v.toFixed(1)));
  }
  svg.append(svgEl("text", { x: L, y: 15, "font-size": 14 }, unit));
  const slot = plot.w / days.length;
  const every = Math.ceil(days.length / Math.max(2, Math.floor(plot.w / 70)));
  days.forEach((d, i) => {
    if (i % every === 0) {
      svg.append(svgEl("text", { x: plot.x + slot * (i + 0.5), y: H - B + 24,
        "text-anchor": "middle", "font-size": 14 }, shortDay(d)));
    }
  });
  return { svg, plot, y, slot };
}

function legend(series) {
  return el("ul", { class: "legend" }, ...series.map((s) => {
    const sw = svgEl("svg", { viewBox: "0 0 14 14", "aria-hidden": "true" });
    sw.append(s.ring
      ? svgEl("circle", { cx: 7, cy: 7, r: 5, fill: "none", stroke: s.colour, "stroke-width": 3 })
      : svgEl("rect", { width: 14, height: 14, rx: 2, fill: s.colour }));
    return el("li", {}, sw, s.name);
  }));
}

function numbers(days, series, format = String) {
  const head = el("tr", {}, el("th", { scope: "col" }, "Day"),
    ...series.map((s) => el("th", { scope: "col" }, s.name)));
  const rows = days.map((d, i) => el("tr", {}, el("th", { scope: "row" }, d),
    ...series.map((s) => el("td", { class: "num" }, format(s.values[i])))));
  return el("details", {}, el("summary", {}, "Show the numbers"),
    el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
}

function stackedBars(target, days, series, label, unit) {
  const totals = days.map((_, i) => series.reduce((sum, s) => sum + s.values[i], 0));
  const { svg, plot, y, slot } = frame(target, days, niceMax(Math.max(0, ...totals)), unit);
  svg.setAttribute("aria-label", label);
  days.forEach((d, i) => {
    let base = 0;
    for (const s of series) {
      const v = s.values[i];
      if (!v) continue;
      const rect = svgEl("rect", { x: plot.x + slot * (i + 0.15), width: slot * 0.7,
        y: y(base + v), height: y(base) - y(base + v), fill: s.colour });
      rect.append(svgEl("title", {}, `${d} · ${s.name}: ${v}`));
      svg.append(rect);
      base += v;
    }
  });
  if (totals.every((t) => t === 0)) {
    svg.append(svgEl("text", { x: plot.x + plot.w / 2, y: plot.y + plot.h / 2,
      "text-anchor": "middle", "font-size": 16 }, "Nothing in this range"));
  }
  target.replaceChildren(svg, legend(series), numbers(days, series));
}

function lines(target, days, series, label, unit) {
  const all = series.flatMap((s) => s.values.filter((v) => v !== null));
  const { svg, plot, y, slot } = frame(target, days, niceMax(Math.max(0, ...all)), unit);
  svg.setAttribute("aria-label", label);
  for (const s of series) {
    let path = "";
    s.values.forEach((v, i) => {
      if (v === null) { return; }
      const x = plot.x + slot * (i + 0.5);
      const joined = i > 0 && s.values[i - 1] !== null;
      path += `${joined ? "L" : "M"}${x.toFixed(1)},${y(v).toFixed(1)} `;
      // a ring and a dot: both stay visible when the two values are equal
      const dot = s.ring
        ? svgEl("circle", { cx: x, cy: y(v), r: 7, fill: "none", stroke: s.colour, "stroke-width": 3 })
        : svgEl("circle", { cx: x, cy: y(v), r: 4.5, fill: s.colour });
      dot.append(svgEl("title", {}, `${days[i]} · ${s.name}: ${v} min`));
      svg.append(dot);
    });
    if (path) svg.prepend(svgEl("path", { d: path, fill: "none", stroke: s.colour, "stroke-width": 2.5 }));
  }
  if (all.length === 0) {
    svg.append(svgEl("text", { x: plot.x + plot.w / 2, y: plot.y + plot.h / 2,
      "text-anchor": "middle", "font-size": 16 }, "No acknowledgements in this range yet"));
  }
  target.replaceChildren(svg, legend(series), numbers(days, series, (v) => (v === null ? "–" : String(v))));
}

function tile(value, label) {
  return el("div", { class: "tile" }, el("div", { class: "value" }, value), el("div", { class: "label" }, label));
}

function minutes(v) { return v === null ? "–" : `${v} min`; }

let lastReport = null;

function drawReport(r) {
  lastReport = r;
  const days = r.days.map((d) => d.date);
  const t = r.totals;
  $("tiles").replaceChildren(
    tile(String(t.messages_total), "messages received"),
    tile(String(t.alerts_total), "alerts raised"),
    tile(String(t.acknowledged), "alerts acknowledged"),
    tile(minutes(t.ack_minutes.median), "median time to acknowledge"),
    tile(minutes(t.ack_minutes.p90), "90th percentile time to acknowledge"));
  const outcomes = r.outcomes.length ? r.outcomes : ["AA"];
  stackedBars($("chart-messages"), days, outcomes.map((o, i) => ({
    name: o, colour: OUTCOME_COLOURS[o] || PALETTE[(i + 4) % PALETTE.length],
    values: r.days.map((d) => d.messages[o] || 0),
  })), "Messages received per day", "messages");
  stackedBars($("chart-alerts"), days, r.rules.map((rule, i) => ({
    name: rule, colour: PALETTE[i % PALETTE.length], values: r.days.map((d) => d.alerts[rule] || 0),
  })), "Alerts raised per day by rule", "alerts");
  lines($("chart-ack"), days, [
    { name: "median", colour: "#0072B2", ring: true, values: r.days.map((d) => d.ack_minutes.median) },
    { name: "90th percentile", colour: "#D55E00", values: r.days.map((d) => d.ack_minutes.p90) },
  ], "Minutes from alert to acknowledgement per day", "minutes");
}

async function loadReport() {
  $("report-error").textContent = "";
  if (!$("report-to").value) {
    const today = new Date();
    const first = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 13);
    $("report-to").value = isoDay(today);
    $("report-from").value = isoDay(first);
  }
  const params = new URLSearchParams({ from: $("report-from").value, to: $("report-to").value, tz: ZONE });
  try {
    drawReport(await api(`/api/reports/daily?${params}`));
  } catch (err) {
    $("report-error").textContent = `Summary failed: ${err.message}`;
  }
}

let resizing = null;
window.addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => { if (lastReport && !$("app").hidden) drawReport(lastReport); }, 150);
});
$("report-form").addEventListener("submit", (event) => { event.preventDefault(); loadReport(); });

updateDownloads();
start();

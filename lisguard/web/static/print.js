// Shared by the print pages (slip.js, handover.js): building elements, times as the queue shows
// them, the API call with the session cookie, the identifiers line. No data lives in the pages:
// it comes from the API, and every value goes in as text (never as markup).
"use strict";

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

const two = (n) => String(n).padStart(2, "0");
const localDay = (d) => `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}`;

// An offset means an instant (shown in this browser's time); without one it is the sender's
// wall-clock time from the message, shown as it came (as the technologist page does).
function when(text) {
  if (!text) return "";
  if (/(Z|[+-]\d\d:\d\d)$/.test(text)) {
    const d = new Date(text);
    return `${localDay(d)} ${two(d.getHours())}:${two(d.getMinutes())}`;
  }
  return text.replace("T", " ").slice(0, 16);
}
const day = (text) => (text ? text.slice(0, 10) : "");

// "UTC+01:00": printed beside the print time, so a slip read elsewhere says which clock
function zone(date = new Date()) {
  const minutes = -date.getTimezoneOffset();
  const sign = minutes < 0 ? "-" : "+";
  return `UTC${sign}${two(Math.floor(Math.abs(minutes) / 60))}:${two(Math.abs(minutes) % 60)}`;
}

async function getJson(path) {
  const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.error || response.statusText);
    error.status = response.status;
    throw error;
  }
  return data;
}

function showProblem(error) {
  const status = $("status");
  status.hidden = false;
  status.className = "status error";
  if (error.status === 401) {
    status.replaceChildren("Not logged in (or the session has ended): ",
      el("a", { href: "/" }, "log in on the alert queue"), ", then open this page again.");
  } else if (error.status === 403) {
    status.textContent = `Your role may not see this: ${error.message}`;
  } else {
    status.textContent = `Could not load: ${error.message}`;
  }
}

// the two identifiers, as on the cards: name and date of birth, then the MRN with its authority
function identifierLine(ids, tag = "p") {
  return el(tag, { class: "ids" },
    el("span", { class: "name" }, ids.name || "NAME NOT RECEIVED"),
    el("span", { class: "id" }, "DOB ", el("b", {}, ids.birth_date || "not received")),
    el("span", { class: "id" }, "MRN ", el("b", {}, ids.mrn),
      ids.authority ? ` (${ids.authority})` : ""));
}

function printedLine(data, extra) {
  return el("p", { class: "printed" },
    "Printed ", el("b", {}, `${when(data.printed_at)} ${zone(new Date(data.printed_at))}`),
    " by ", el("b", { class: "printed-by" }, data.printed_by), extra || "");
}

function enablePrint() {
  const button = $("print");
  button.disabled = false;
  if (button.dataset.ready) return; // a reload of the data: one listener
  button.dataset.ready = "yes";
  button.addEventListener("click", () => window.print());
}

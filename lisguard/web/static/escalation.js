// The escalation banner, on every page (technologist queue, manager view): HIGH alerts nobody
// acknowledged within escalation.after_minutes of being raised (lisguard.alerting.escalation).
//
// Data: GET /api/escalations (no patient named: rule, audience, point of care, times), then the
// live stream /api/events: `escalated` when one escalates, `alert` when any alert changes (an
// acknowledged one leaves the banner; one escalated on another replica arrives with
// `escalated_at`), `hello` on (re)connecting: load again. While the stream is down the list is
// reloaded every 30 s; while it is up, nothing is polled, so an idle session still ends.
// Logged out, only the public /api/session is asked (never a 401 in the console).
//
// A browser notification once per newly escalated alert (tagged with its id, remembered in
// localStorage: several tabs, a reload, do not repeat it), after the user allows them with the
// banner's button; a short beep (WebAudio, no sound file) if the "Sound" box is ticked, which
// is remembered per browser and off by default.
(() => {
  "use strict";

  const SOUND_KEY = "lisguard.escalation.sound";
  const NOTIFIED_KEY = "lisguard.escalation.notified";
  const POLL_MS = 30000; // the list, while the live stream is down
  const SESSION_MS = 5000; // logged out: whether someone logged in on this page
  const TICK_MS = 30000; // "open N min" goes up by itself
  const MAX_SINGLE = 3; // more newly escalated at once: one summary notification

  const open = new Map(); // alert id -> escalation (GET /api/escalations item), still open
  let afterMinutes = null;
  let source = null;
  let timer = null;
  let audio = null;
  let banner = null;
  let cycling = false;
  let off = false; // escalation switched off at this site, or this role may not see it

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    node.append(...children);
    return node;
  }

  function build() {
    const count = el("strong", { class: "escalation-count", "aria-live": "assertive" });
    const detail = el("span", { class: "escalation-detail" });
    const go = el("a", { class: "escalation-go", href: "/", text: "Show in queue" });
    const notify = el("button", { type: "button", class: "escalation-notify", hidden: "" });
    notify.textContent = "Enable notifications";
    notify.addEventListener("click", askPermission);
    const box = el("input", { type: "checkbox", class: "escalation-sound-box" });
    box.checked = localStorage.getItem(SOUND_KEY) === "on";
    box.addEventListener("change", () => {
      localStorage.setItem(SOUND_KEY, box.checked ? "on" : "off");
      if (box.checked) beep(); // the click is the gesture a browser wants before sound
    });
    const sound = el("label", { class: "escalation-sound" }, box, " Sound");
    banner = el(
      "div",
      { id: "escalation-banner", class: "escalation", role: "region", "aria-label": "Escalated alerts", hidden: "" },
      el("span", { class: "escalation-mark", "aria-hidden": "true", text: "!" }),
      el("p", { class: "escalation-text" }, count, " ", detail),
      el("div", { class: "escalation-actions" }, go, notify, sound),
    );
    document.body.prepend(banner);
  }

  // ---------------------------------------------------------------- what is escalated

  // how long the alert has been open, as a bench reads it: "under a minute", "17 min", "1 h 05 min"
  function openFor(item) {
    const minutes = Math.max(0, Math.floor((Date.now() - Date.parse(item.created_at)) / 60000));
    if (minutes < 1) return "under a minute";
    if (minutes < 60) return `${minutes} min`;
    return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
  }

  function render() {
    const items = [...open.values()].sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at));
    banner.hidden = items.length === 0;
    if (!items.length) return;
    const limit = afterMinutes === null ? "" : ` for more than ${formatMinutes(afterMinutes)}`;
    const count = `${items.length} HIGH alert${items.length === 1 ? "" : "s"} not acknowledged${limit}`;
    setText(banner.querySelector(".escalation-count"), count);
    const oldest = items[0];
    const where = oldest.location ? ` · ${oldest.location}` : "";
    const detail = `${items.length > 1 ? "Oldest: " : ""}${oldest.rule_title} · for ${oldest.audience_title}${where} · open ${openFor(oldest)}`;
    setText(banner.querySelector(".escalation-detail"), detail);
    const go = banner.querySelector(".escalation-go");
    go.href = oldest.links.page;
    go.textContent = onQueuePage() ? "Show in queue" : "Open the queue";
    banner.querySelector(".escalation-notify").hidden =
      !("Notification" in window) || Notification.permission !== "default";
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text; // no re-announcement otherwise
  }

  function formatMinutes(value) {
    if (value >= 1) return `${Number(value.toFixed(1))} min`;
    return `${Math.round(value * 60)} s`;
  }

  function onQueuePage() {
    return location.pathname === "/";
  }

  function replaceAll(body) {
    afterMinutes = body.after_minutes;
    const before = new Set(open.keys());
    open.clear();
    for (const item of body.escalations) open.set(item.id, item);
    announce([...open.values()].filter((item) => !before.has(item.id)));
    render();
  }

  function add(item) {
    if (item.status !== "open") return;
    const fresh = !open.has(item.id);
    open.set(item.id, item);
    if (fresh) announce([item]);
    render();
  }

  // an alert's view from the queue's stream: its status, and `escalated_at` once escalated
  function alertChanged(view) {
    if (view.status !== "open") {
      if (open.delete(view.id)) render();
      return;
    }
    if (view.escalated_at && !open.has(view.id)) load(); // escalated on another replica
  }

  // ---------------------------------------------------------------- telling the user

  function notified() {
    try {
      return new Set(JSON.parse(localStorage.getItem(NOTIFIED_KEY) || "[]"));
    } catch (e) {
      return new Set();
    }
  }

  function announce(items) {
    const seen = notified();
    const fresh = items.filter((item) => !seen.has(item.id));
    if (!fresh.length) return;
    for (const item of fresh) seen.add(item.id);
    localStorage.setItem(NOTIFIED_KEY, JSON.stringify([...seen].slice(-500)));
    if (localStorage.getItem(SOUND_KEY) === "on") beep();
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    if (fresh.length > MAX_SINGLE) {
      show("lisguard-escalations", `${fresh.length} HIGH alerts not acknowledged`, "Open the alert queue", "/");
      return;
    }
    for (const item of fresh) {
      const where = item.location ? ` · ${item.location}` : "";
      // no patient in a notification: a locked screen or a shared bench may show it
      show(
        `lisguard-escalation-${item.id}`,
        "HIGH alert not acknowledged",
        `${item.rule_title} · for ${item.audience_title}${where} · open ${openFor(item)}`,
        item.links.page,
      );
    }
  }

  function show(tag, title, body, href) {
    try {
      const note = new Notification(title, { body, tag, requireInteraction: true });
      note.onclick = () => {
        window.focus();
        location.href = href;
        note.close();
      };
    } catch (e) {
      // a browser that allows no page notifications (some mobile ones): the banner remains
    }
  }

  async function askPermission() {
    try {
      await Notification.requestPermission();
    } finally {
      render();
    }
  }

  function beep() {
    try {
      audio = audio || new AudioContext();
      if (audio.state === "suspended") audio.resume();
      const t = audio.currentTime;
      for (const start of [0, 0.25]) { // two short tones, 880 Hz
        const tone = audio.createOscillator();
        const gain = audio.createGain();
        tone.type = "sine";
        tone.frequency.value = 880;
        gain.gain.setValueAtTime(0.0001, t + start);
        gain.gain.exponentialRampToValueAtTime(0.3, t + start + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, t + start + 0.18);
        tone.connect(gain).connect(audio.destination);
        tone.start(t + start);
        tone.stop(t + start + 0.2);
      }
    } catch (e) {
      // no WebAudio: the banner and the notification remain
    }
  }

  // ---------------------------------------------------------------- the server

  async function getJson(path) {
    const response = await fetch(path, { credentials: "same-origin" });
    return { status: response.status, body: response.ok ? await response.json() : null };
  }

  async function loggedIn() {
    try {
      const { body } = await getJson("/api/session");
      return Boolean(body && body.authenticated);
    } catch (e) {
      return false;
    }
  }

  // whether the list was read (and shown)
  async function load() {
    try {
      const { status, body } = await getJson("/api/escalations");
      if (status === 200 && body.enabled) {
        replaceAll(body);
        return true;
      }
      if (status === 200 || status === 403) {
        off = true; // switched off here, or a role without it: ask no more on this page
        stop();
      } else if (status === 401) stop(); // the session ended: back to waiting for a login
    } catch (e) {
      // the service is not answering: keep what is shown, the next poll tries again
    }
    return false;
  }

  function connect() {
    if (source) return;
    source = new EventSource("/api/events");
    source.addEventListener("hello", load);
    source.addEventListener("escalated", (event) => add(JSON.parse(event.data)));
    source.addEventListener("alert", (event) => alertChanged(JSON.parse(event.data)));
  }

  function stop() {
    if (source) source.close();
    source = null;
    open.clear();
    render();
  }

  async function cycle() {
    clearTimeout(timer);
    if (off || cycling) return; // a cycle under way schedules the next one itself
    cycling = true;
    let wait = SESSION_MS;
    try {
      if (await loggedIn()) {
        wait = POLL_MS;
        if (!source) {
          // is escalation on, may this role see it, what is escalated now; then pushed
          // (`hello` loads again once connected)
          if (await load()) connect();
          if (off) return;
        } else if (source.readyState === EventSource.CLOSED) {
          source = null; // refused or ended for good (e.g. the service restarted): anew
          connect();
        } else if (source.readyState !== EventSource.OPEN) {
          await load(); // reconnecting: poll meanwhile
        }
      } else if (source || open.size) {
        stop();
      }
    } finally {
      cycling = false;
    }
    timer = setTimeout(cycle, wait);
  }

  function start() {
    build();
    // the pages' own Log out button: the banner goes with the session
    document.addEventListener("click", (event) => {
      if (event.target.closest && event.target.closest("#logout")) {
        stop();
        clearTimeout(timer);
        timer = setTimeout(cycle, SESSION_MS); // and watch for the next login
      }
    });
    setInterval(() => { if (open.size) render(); }, TICK_MS);
    cycle();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

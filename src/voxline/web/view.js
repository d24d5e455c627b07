// view.js: the pipeline log, alerts, status pills and the controls' enabled state.

import { MAX_LOG_ROWS, STAGES, STATE_LABELS, app, ui } from "./state.js";

export function fmtTime(ts) {
  let d;
  if (typeof ts === "number") d = new Date(ts > 1e12 ? ts : ts * 1000);
  else if (typeof ts === "string" && ts) d = new Date(Number.isNaN(Number(ts)) ? ts : Number(ts) * 1000);
  else d = new Date();
  if (Number.isNaN(d.getTime())) d = new Date();
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

export function log(stage, level, message, { ts, source = "client" } = {}) {
  const tr = document.createElement("tr");
  tr.className = `lvl-${level}`;
  tr.dataset.stage = stage;
  tr.dataset.source = source;
  const time = document.createElement("td");
  time.className = "t";
  time.textContent = fmtTime(ts);
  const st = document.createElement("td");
  const badge = document.createElement("span");
  badge.className = `stage stage-${STAGES.includes(stage) ? stage : "other"}`;
  badge.textContent = stage;
  st.append(badge);
  const lv = document.createElement("td");
  lv.className = "lvl";
  lv.textContent = level;
  const msg = document.createElement("td");
  msg.className = "msg";
  msg.textContent = message;
  if (source === "client") {
    const tag = document.createElement("span");
    tag.className = "src";
    tag.textContent = "client";
    msg.prepend(tag);
  }
  tr.append(time, st, lv, msg);
  ui.log.append(tr);
  while (ui.log.rows.length > MAX_LOG_ROWS) ui.log.deleteRow(0);
  if (ui.autoscroll.checked) ui.logWrap.scrollTop = ui.logWrap.scrollHeight;
}

export function showAlert(title, text, kind = "error") {
  ui.alert.hidden = false;
  ui.alert.dataset.kind = kind;
  ui.alertTitle.textContent = title;
  ui.alertText.textContent = text;
}

export function clearAlert() {
  ui.alert.hidden = true;
  ui.alertTitle.textContent = "";
  ui.alertText.textContent = "";
}

export function setPill(el, state, text) {
  el.dataset.state = state;
  el.querySelector(".pill-text").textContent = text;
}

export function setConn(state) {
  const labels = {
    disconnected: "Disconnected",
    connecting: "Connecting…",
    new: "Connecting…",
    connected: "Connected",
    disconnectedTemp: "Connection interrupted",
    reconnecting: "Reconnecting…",
    failed: "Connection failed",
    closed: "Disconnected",
    ended: "Session ended",
  };
  setPill(ui.conn, state, labels[state] || state);
}

export function setAgentState(state) {
  if (!state) return setPill(ui.agent, "none", "Agent: not connected");
  setPill(ui.agent, state, `Agent: ${STATE_LABELS[state] || state}`);
}

export function setListening(on) {
  app.listening = !!on;
  ui.listeningBadge.dataset.on = String(app.listening);
  ui.listeningBadge.textContent = app.listening ? "Listening" : "Not listening";
  render();
}

/** Enable and disable the controls for the current phase; keep keyboard focus sensible. */
export function render() {
  const hadFocus = document.activeElement;
  const connected = app.phase === "connected";
  ui.start.disabled = app.phase !== "idle";
  ui.start.querySelector(".label").textContent = app.phase === "connecting" ? "Connecting…" : "Start conversation";
  ui.listenStart.disabled = !connected || app.listening;
  ui.listenStop.disabled = !connected || !app.listening;
  ui.hangup.disabled = !connected && app.phase !== "reconnecting";
  ui.sessionId.textContent = app.sessionId || (app.clientRef ? `${app.clientRef} (temporary)` : "-");
  // A control that just became disabled drops the keyboard focus: give it to the next
  // sensible control (e.g. Start conversation -> Stop listening -> Start listening).
  const lostFocus = hadFocus instanceof HTMLButtonElement && hadFocus.disabled;
  if (lostFocus || (app.focusPending && (hadFocus === document.body || hadFocus === null))) {
    const next = [ui.listenStop, ui.listenStart, ui.hangup, ui.start].find((b) => !b.disabled);
    next?.focus();
    app.focusPending = !next; // nothing enabled yet (connecting): focus on the next render
  }
}

// app.js: the voxline page. Connects the microphone over WHIP (./whip.js), plays the agent's
// voice from the same peer connection, and renders the session's event stream (WebSocket):
// transcript bubbles, pipeline log, per-turn latency.
//
// Query parameters:
//   ?server=http://127.0.0.1:8001   voxline server base URL (default: this page's origin)
//   ?token=...                      bearer token (HTTP: Authorization header; WebSocket: ?token=)

import { WhipClient, WhipError, temporaryId } from "./whip.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(window.location.search);

function serverBase() {
  const given = params.get("server");
  let base = given || (window.location.origin !== "null" ? window.location.origin : "http://127.0.0.1:8001");
  try {
    base = new URL(base).href;
  } catch {
    base = window.location.origin;
  }
  return base.replace(/\/+$/, "");
}

const SERVER = serverBase();
const TOKEN = params.get("token") || "";
const api = (path) => `${SERVER}${path}`;
const authHeaders = (extra = {}) => (TOKEN ? { ...extra, Authorization: `Bearer ${TOKEN}` } : { ...extra });

const STAGES = ["whip", "session", "vad", "stt", "llm", "tts"];
const METRIC_LABELS = {
  end_of_turn_ms: "End of turn",
  stt_ms: "STT",
  llm_first_token_ms: "LLM first token",
  first_sentence_ms: "LLM first sentence",
  tts_first_audio_ms: "TTS first audio",
};
const STATE_LABELS = {
  idle: "idle",
  listening: "listening",
  user_speaking: "hearing you",
  thinking: "thinking",
  agent_speaking: "speaking",
};
const MAX_LOG_ROWS = 600;

// ----------------------------------------------------------------------------- state
const ui = {
  start: $("btn-start"),
  listenStart: $("btn-listen-start"),
  listenStop: $("btn-listen-stop"),
  hangup: $("btn-hangup"),
  conn: $("conn-status"),
  agent: $("agent-state"),
  meter: $("mic-meter"),
  meterFill: $("mic-meter-fill"),
  agentMeterFill: $("agent-meter-fill"),
  agentMeter: $("agent-meter"),
  listeningBadge: $("listening-badge"),
  sessionId: $("session-id"),
  serverUrl: $("server-url"),
  alert: $("alert"),
  alertTitle: $("alert-title"),
  alertText: $("alert-text"),
  transcript: $("transcript"),
  latency: $("latency"),
  chart: $("latency-chart"),
  chartWrap: $("latency-chart-wrap"),
  log: $("log"),
  logWrap: $("log-wrap"),
  autoscroll: $("log-autoscroll"),
  audio: $("remote-audio"),
};

const app = {
  phase: "idle", // idle | connecting | connected | ending
  turnTotals: [], // {turn, ms} of each answered turn, for the chart
  focusPending: false, // the focused control got disabled: move focus on the next render
  client: null,
  mic: null,
  sessionId: null,
  clientRef: null,
  listening: false,
  ws: null,
  wsRetries: 0,
  lastTurn: null, // the turn of the latest transcript or agent text
  browserV2V: new Map(), // turn -> browser-side voice-to-voice estimate (ms)
  pendingUser: null,
  lastUserBubble: null, // the caller's latest final bubble not yet answered aloud
  agentState: null,
  agentBubbles: new Map(),
  events: [], // recent events, for debugging and tests
  loggedErrors: new Set(), // "stage|message" of `error` events, to skip their twin `log` event
};

// ----------------------------------------------------------------------------- helpers
function fmtTime(ts) {
  let d;
  if (typeof ts === "number") d = new Date(ts > 1e12 ? ts : ts * 1000);
  else if (typeof ts === "string" && ts) d = new Date(Number.isNaN(Number(ts)) ? ts : Number(ts) * 1000);
  else d = new Date();
  if (Number.isNaN(d.getTime())) d = new Date();
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function log(stage, level, message, { ts, source = "client" } = {}) {
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

function showAlert(title, text, kind = "error") {
  ui.alert.hidden = false;
  ui.alert.dataset.kind = kind;
  ui.alertTitle.textContent = title;
  ui.alertText.textContent = text;
}

function clearAlert() {
  ui.alert.hidden = true;
  ui.alertTitle.textContent = "";
  ui.alertText.textContent = "";
}

function setPill(el, state, text) {
  el.dataset.state = state;
  el.querySelector(".pill-text").textContent = text;
}

function setConn(state) {
  const labels = {
    disconnected: "Disconnected",
    connecting: "Connecting…",
    new: "Connecting…",
    connected: "Connected",
    disconnectedTemp: "Connection interrupted",
    failed: "Connection failed",
    closed: "Disconnected",
    ended: "Session ended",
  };
  setPill(ui.conn, state, labels[state] || state);
}

function setAgentState(state) {
  if (!state) return setPill(ui.agent, "none", "Agent: not connected");
  setPill(ui.agent, state, `Agent: ${STATE_LABELS[state] || state}`);
}

function setListening(on) {
  app.listening = !!on;
  ui.listeningBadge.dataset.on = String(app.listening);
  ui.listeningBadge.textContent = app.listening ? "Listening" : "Not listening";
  render();
}

/** Enable and disable the controls for the current phase; keep keyboard focus sensible. */
function render() {
  const hadFocus = document.activeElement;
  const connected = app.phase === "connected";
  ui.start.disabled = app.phase !== "idle";
  ui.start.querySelector(".label").textContent = app.phase === "connecting" ? "Connecting…" : "Start conversation";
  ui.listenStart.disabled = !connected || app.listening;
  ui.listenStop.disabled = !connected || !app.listening;
  ui.hangup.disabled = !connected;
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

// ----------------------------------------------------------------------------- transcript
function clearEmpty(container) {
  container.querySelector(".empty")?.remove();
}

function bubble(role, text, { partial = false, turn } = {}) {
  clearEmpty(ui.transcript);
  const wrap = document.createElement("div");
  wrap.className = `bubble ${role}${partial ? " partial" : ""}`;
  if (turn !== undefined && turn !== null) wrap.dataset.turn = String(turn);
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "You" : "Agent";
  const body = document.createElement("p");
  body.className = "text";
  body.textContent = text;
  wrap.append(who, body);
  ui.transcript.append(wrap);
  ui.transcript.scrollTop = ui.transcript.scrollHeight;
  return wrap;
}

function onFinal(ev) {
  const text = (ev.text || "").trim();
  if (ev.turn != null) app.lastTurn = ev.turn;
  for (const [turn, el] of app.agentBubbles) {
    if (!el.dataset.done) {
      el.dataset.done = "1";
      el.classList.remove("streaming");
      el.removeAttribute("aria-busy");
      el.classList.add("interrupted");
      app.agentBubbles.delete(turn);
    }
  }
  let el = null;
  if (app.pendingUser) {
    el = app.pendingUser;
    app.pendingUser = null;
    if (!text) {
      el.remove();
      el = null;
    } else {
      el.classList.remove("partial");
      el.querySelector(".text").textContent = text;
      if (ev.turn !== undefined) el.dataset.turn = String(ev.turn);
    }
  } else if (text) {
    el = bubble("user", text, { turn: ev.turn });
  }
  if (el) {
    // The server transcribes a turn the caller continued (spoke again before hearing an
    // answer) together with the new speech: the earlier bubble is part of this one now.
    ui.transcript.querySelectorAll(".bubble.user[data-superseded]").forEach((b) => b !== el && b.remove());
    app.lastUserBubble = el;
  }
}

function onState(ev) {
  const prev = app.agentState;
  app.agentState = ev.state;
  setAgentState(ev.state);
  if (ev.state === "agent_speaking") app.lastUserBubble = null; // answered: the turn stands
  if (ev.state === "user_speaking" && prev === "thinking" && app.lastUserBubble) {
    // Speaking again before any answer: the server drops that reply and merges the turns.
    app.lastUserBubble.dataset.superseded = "1";
    const turn = app.lastUserBubble.dataset.turn;
    const agentEl = [...ui.transcript.querySelectorAll(".bubble.agent")].find((b) => b.dataset.turn === turn);
    agentEl?.remove();
    app.agentBubbles.delete(String(turn));
    app.lastUserBubble = null;
  }
}

function markInterrupted(turn) {
  const el = [...ui.transcript.querySelectorAll(".bubble.agent")].find((b) => b.dataset.turn === String(turn));
  if (!el) return;
  el.classList.remove("streaming");
  el.removeAttribute("aria-busy");
  el.classList.add("interrupted");
  el.dataset.done = "1";
  app.agentBubbles.delete(String(turn));
}

function onAgentText(ev) {
  const key = String(ev.turn ?? "current");
  if (ev.turn != null) app.lastTurn = ev.turn;
  let el = app.agentBubbles.get(key);
  if (!el) {
    el = bubble("agent", "", { turn: ev.turn });
    el.classList.add("streaming");
    el.setAttribute("aria-busy", "true"); // screen readers read the reply once, when complete
    app.agentBubbles.set(key, el);
  }
  const body = el.querySelector(".text");
  if (ev.final) {
    if (typeof ev.text === "string" && ev.text.length) body.textContent = ev.text;
    el.classList.remove("streaming");
    el.removeAttribute("aria-busy");
    el.dataset.done = "1";
    app.agentBubbles.delete(key);
  } else {
    body.textContent += ev.text || "";
  }
  ui.transcript.scrollTop = ui.transcript.scrollHeight;
}

// ----------------------------------------------------------------------------- latency
function prettyMetric(key) {
  if (METRIC_LABELS[key]) return METRIC_LABELS[key];
  const s = key.replace(/_ms$/, "").replace(/_/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

// A small bar chart of each turn's voice-to-voice time, newest on the right.
const CHART_TURNS = 20;
function renderChart() {
  const points = app.turnTotals.slice(-CHART_TURNS);
  ui.chartWrap.hidden = points.length === 0;
  const max = Math.max(...points.map((p) => p.ms), 1);
  const w = 300 / CHART_TURNS;
  const ns = "http://www.w3.org/2000/svg";
  ui.chart.replaceChildren();
  points.forEach((p, i) => {
    const h = Math.max(2, (76 * p.ms) / max);
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("x", String(i * w + 1));
    rect.setAttribute("y", String(80 - h));
    rect.setAttribute("width", String(w - 2));
    rect.setAttribute("height", String(h));
    rect.setAttribute("class", "chart-bar");
    const title = document.createElementNS(ns, "title");
    title.textContent = `Turn ${p.turn}: ${Math.round(p.ms)} ms`;
    rect.append(title);
    ui.chart.append(rect);
  });
  const last = points[points.length - 1];
  ui.chart.setAttribute("aria-label", `Voice-to-voice for the last ${points.length} turns; latest ${Math.round(last?.ms ?? 0)} ms`);
}

function onTurnMetrics(ev) {
  const m = ev.metrics || {};
  clearEmpty(ui.latency);
  const turn = ev.turn ?? "?";
  const totalKey = ["voice_to_voice_ms", "server_voice_to_voice_ms"].find((k) => typeof m[k] === "number");
  const total = totalKey ? m[totalKey] : NaN;
  const rows = Object.keys(METRIC_LABELS)
    .concat(Object.keys(m).filter((k) => !(k in METRIC_LABELS) && k !== totalKey))
    .filter((k) => /_ms$/.test(k) && typeof m[k] === "number" && Number.isFinite(m[k]));
  const scale = Math.max(total || 0, ...rows.map((k) => m[k]), 1);
  if (Number.isFinite(total)) {
    app.turnTotals.push({ turn, ms: total });
    renderChart();
  }

  const card = document.createElement("article");
  card.className = "turn-card";
  card.dataset.turn = String(turn);
  const head = document.createElement("header");
  const h = document.createElement("h3");
  h.textContent = `Turn ${turn}`;
  const tot = document.createElement("span");
  tot.className = "total";
  tot.textContent = Number.isFinite(total) ? `${Math.round(total)} ms voice-to-voice` : "voice-to-voice: n/a";
  tot.title = "Measured by the server: from the end of your speech to the first audio it sent";
  head.append(h, tot);

  const table = document.createElement("table");
  table.className = "stages";
  const cap = document.createElement("caption");
  cap.className = "visually-hidden";
  cap.textContent = `Stage timings for turn ${turn}, in milliseconds`;
  table.append(cap);
  for (const k of rows) {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = prettyMetric(k);
    const barCell = document.createElement("td");
    barCell.className = "bar-cell";
    const bar = document.createElement("span");
    bar.className = `bar bar-${k.replace(/_ms$/, "")}`;
    bar.style.width = `${Math.max(1, (100 * m[k]) / scale).toFixed(1)}%`;
    bar.setAttribute("aria-hidden", "true");
    barCell.append(bar);
    const val = document.createElement("td");
    val.className = "ms";
    val.textContent = `${Math.round(m[k])} ms`;
    tr.append(th, barCell, val);
    table.append(tr);
  }
  const foot = document.createElement("p");
  foot.className = "turn-foot";
  const serverNote = document.createElement("span");
  serverNote.textContent = "Server side";
  foot.append(serverNote);
  if (m.speculative === true || m.speculative_stt === true) {
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = "speculative";
    tag.title = "The reply was prepared during the end-of-turn silence";
    foot.append(tag);
  }
  const browser = document.createElement("span");
  browser.className = "browser-v2v";
  browser.hidden = true;
  foot.append(browser);
  card.append(head, table, foot);
  ui.latency.prepend(card);
  renderBrowserV2V(String(turn));
  while (ui.latency.children.length > 20) ui.latency.lastElementChild.remove();
}

function renderBrowserV2V(turn) {
  const ms = app.browserV2V.get(turn);
  const card = [...ui.latency.querySelectorAll(".turn-card")].find((c) => c.dataset.turn === turn);
  const el = card?.querySelector(".browser-v2v");
  if (!el || ms == null) return;
  el.hidden = false;
  el.textContent = `heard in this browser after ~${Math.round(ms)} ms`;
  el.title = "From the end of your speech at the microphone to audible agent audio here (approximate)";
}

// ----------------------------------------------------------------------------- events
function handleEvent(ev) {
  app.events.push(ev);
  if (app.events.length > 2000) app.events.splice(0, 500);
  const ts = ev.ts;
  switch (ev.type) {
    case "state":
      onState(ev);
      break;
    case "listening":
      setListening(ev.listening); // the server logs the change itself
      break;
    case "transcript.final":
      onFinal(ev);
      break;
    case "agent.text":
      onAgentText(ev);
      break;
    case "log": {
      const key = `${ev.stage}|${ev.message}`;
      if (ev.level === "error" && app.loggedErrors.delete(key)) break; // already shown from its `error` event
      log(ev.stage || "session", ev.level || "info", ev.message || "", { ts, source: "server" });
      break;
    }
    case "interruption":
      markInterrupted(ev.turn);
      break;
    case "turn.metrics":
      onTurnMetrics(ev);
      break;
    case "error":
      app.loggedErrors.add(`${ev.stage}|${ev.message}`);
      if (app.loggedErrors.size > 50) app.loggedErrors.clear();
      log(ev.stage || "session", "error", ev.message || "error", { ts, source: "server" });
      showAlert(`Pipeline error (${ev.stage || "server"})`, ev.message || "The server reported an error.", "warning");
      break;
    case "session.ended":
      log("session", "info", `Session ended by the server (${ev.reason || "no reason given"})`, { ts, source: "server" });
      endLocally("ended");
      if (ev.reason && !/hang|client|delete/i.test(ev.reason)) {
        showAlert("Session ended", `The server ended the session: ${ev.reason}.`, "info");
      }
      break;
    default:
      break;
  }
}

function openEvents() {
  const sid = app.sessionId;
  if (!sid) return;
  const url = new URL(api(`/sessions/${encodeURIComponent(sid)}/events`));
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (TOKEN) url.searchParams.set("token", TOKEN);
  const ws = new WebSocket(url.href);
  app.ws = ws;
  ws.addEventListener("open", () => {
    app.wsRetries = 0;
    log("session", "info", `Event stream open (${url.pathname})`);
  });
  ws.addEventListener("message", (msg) => {
    let ev;
    try {
      ev = JSON.parse(msg.data);
    } catch {
      return log("session", "warning", `Unreadable event: ${String(msg.data).slice(0, 120)}`);
    }
    if (ev.session_id && ev.session_id !== app.sessionId) return;
    handleEvent(ev);
  });
  ws.addEventListener("close", (e) => {
    if (app.ws !== ws) return;
    app.ws = null;
    if (app.phase !== "connected" || app.sessionId !== sid) return;
    if (app.wsRetries >= 5) {
      log("session", "error", `Event stream closed (code ${e.code}); giving up after 5 retries`);
      showAlert("Live updates lost", "The event stream from the server closed. Audio may still work; hang up and start again to restore the transcript.", "warning");
      return;
    }
    const delay = 500 * 2 ** app.wsRetries++;
    log("session", "warning", `Event stream closed (code ${e.code}); reconnecting in ${delay} ms`);
    setTimeout(() => app.phase === "connected" && app.sessionId === sid && openEvents(), delay);
  });
}

async function fetchSession() {
  try {
    const r = await fetch(api(`/sessions/${encodeURIComponent(app.sessionId)}`), { headers: authHeaders() });
    if (!r.ok) return;
    const s = await r.json();
    if (typeof s.listening === "boolean") setListening(s.listening);
    if (s.conversation_state) setAgentState(s.conversation_state);
    log("session", "info", `Session state ${s.state ?? "?"}, listening ${s.listening ? "on" : "off"}${s.client_ref ? `, client_ref ${s.client_ref}` : ""}`);
  } catch {
    /* the event stream will tell us */
  }
}

// ----------------------------------------------------------------------------- level meters
// One AudioContext with two AnalyserNodes: the microphone and the agent's voice. Besides the
// meters, they give a browser-side voice-to-voice estimate: from the moment the caller's
// speech stops (microphone level falls below the speech threshold) to the first audible
// agent audio played here. It includes the network and jitter buffer, which the server's
// own figure cannot see; it is approximate (level thresholds, 30 ms resolution).
const SPEECH_DB = -45; // microphone louder than this counts as speech
const AGENT_DB = -50; // agent audio louder than this counts as audible
const QUIET_BEFORE_ONSET_MS = 400;

function makeAnalyser(ctx, stream) {
  const src = ctx.createMediaStreamSource(stream);
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  analyser.smoothingTimeConstant = 0.2;
  src.connect(analyser); // not to the destination: the <audio> element plays the agent
  return { src, analyser, buf: new Float32Array(analyser.fftSize) };
}

function levelDb(a) {
  a.analyser.getFloatTimeDomainData(a.buf);
  let sum = 0;
  for (let i = 0; i < a.buf.length; i++) sum += a.buf[i] * a.buf[i];
  return 20 * Math.log10(Math.sqrt(sum / a.buf.length) + 1e-9);
}

const meters = {
  ctx: null,
  mic: null,
  agent: null,
  timer: 0,
  micLevel: 0,
  micPeak: 0,
  lastSpeech: 0, // performance.now() of the last loud microphone sample
  lastAgentLoud: 0,
  lastOnset: 0,
};

function startMeters(micStream) {
  try {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    meters.ctx = new Ctx();
    meters.ctx.resume?.().catch(() => {});
    meters.mic = makeAnalyser(meters.ctx, micStream);
  } catch (err) {
    log("session", "warning", `Microphone level meter unavailable: ${err.message || err}`);
    return;
  }
  let lastAria = 0;
  let lastAgentAria = 0;
  meters.timer = setInterval(() => {
    const now = performance.now();
    if (meters.mic) {
      const db = levelDb(meters.mic);
      if (db > SPEECH_DB) meters.lastSpeech = now;
      const target = Math.min(1, Math.max(0, (db + 60) / 60));
      meters.micLevel = target > meters.micLevel ? target : meters.micLevel * 0.8 + target * 0.2;
      meters.micPeak = Math.max(meters.micPeak, meters.micLevel);
      ui.meterFill.style.width = `${(meters.micLevel * 100).toFixed(1)}%`;
      if (now - lastAria > 250) {
        lastAria = now;
        const v = Math.round(meters.micLevel * 100);
        ui.meter.setAttribute("aria-valuenow", String(v));
        ui.meter.setAttribute("aria-valuetext", `${v} percent`);
      }
    }
    if (meters.agent) {
      const db = levelDb(meters.agent);
      const lvl = Math.min(1, Math.max(0, (db + 60) / 60));
      ui.agentMeterFill.style.width = `${(lvl * 100).toFixed(1)}%`;
      if (now - lastAgentAria > 250) {
        lastAgentAria = now;
        ui.agentMeter.setAttribute("aria-valuenow", String(Math.round(lvl * 100)));
      }
      if (db > AGENT_DB) {
        const quietFor = now - meters.lastAgentLoud;
        if (quietFor > QUIET_BEFORE_ONSET_MS && meters.lastSpeech > meters.lastOnset) onAgentOnset(now);
        meters.lastAgentLoud = now;
      }
    }
  }, 30);
}

function attachAgentMeter(remoteStream) {
  if (!meters.ctx) return;
  try {
    meters.agent = makeAnalyser(meters.ctx, remoteStream);
  } catch (err) {
    log("tts", "warning", `Agent level meter unavailable: ${err.message || err}`);
  }
}

function onAgentOnset(now) {
  meters.lastOnset = now;
  const ms = now - meters.lastSpeech;
  if (ms <= 0 || ms > 20_000) return;
  const turn = app.lastTurn;
  log("tts", "info", `Agent audio heard in the browser ${Math.round(ms)} ms after the end of your speech${turn != null ? ` (turn ${turn})` : ""}`);
  if (turn == null) return;
  app.browserV2V.set(String(turn), ms);
  renderBrowserV2V(String(turn));
}

function stopMeters() {
  clearInterval(meters.timer);
  meters.timer = 0;
  meters.ctx?.close().catch(() => {});
  Object.assign(meters, { ctx: null, mic: null, agent: null, micLevel: 0, lastSpeech: 0, lastAgentLoud: 0, lastOnset: 0 });
  ui.meterFill.style.width = "0%";
  ui.agentMeterFill.style.width = "0%";
  ui.agentMeter.setAttribute("aria-valuenow", "0");
  ui.meter.setAttribute("aria-valuenow", "0");
  ui.meter.setAttribute("aria-valuetext", "off");
}

// ----------------------------------------------------------------------------- actions
function micErrorMessage(err) {
  const name = err?.name || "";
  if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") {
    return ["Microphone access denied", "The browser blocked the microphone. Allow microphone access for this site (the icon in the address bar), then press Start conversation again."];
  }
  if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") {
    return ["No microphone found", "Connect a microphone (or choose one in the browser settings) and press Start conversation again."];
  }
  if (name === "NotReadableError" || name === "TrackStartError" || name === "AbortError") {
    return ["Microphone unavailable", "Another application may be using the microphone. Close it and try again."];
  }
  return ["Microphone error", `Could not open the microphone: ${err?.message || err}`];
}

function whipErrorMessage(err) {
  const wait = err.retryAfter != null ? ` Try again in ${err.retryAfter} s.` : " Try again in a moment.";
  if (err.code === "unreachable" || err.code === "timeout" || err.status === 0) {
    return [
      "Server unreachable",
      `Cannot reach the voxline server at ${SERVER}. Is it running (voxline run)? ` +
        `A page on another origin must pass ?server=<url> and be in the server's VOXLINE_CORS_ORIGINS.`,
    ];
  }
  if (err.status === 503 || err.code === "session_limit") {
    return ["Server busy: session limit reached", `The server already has as many conversations as it allows.${wait}`];
  }
  if (err.status === 429) return ["Too many new sessions", `The server is rate limiting new conversations.${wait}`];
  if ([404, 405, 501].includes(err.status) && !err.code) {
    return ["No WHIP endpoint", `${SERVER}/whip answered ${err.status}: is ?server= pointing at a voxline server?`];
  }
  if (err.status === 401 || err.status === 403) {
    return ["Not authorised", "The server needs a token: open this page with ?token=<your token>."];
  }
  return ["The server refused the call", `${err.status}${err.code ? ` ${err.code}` : ""}: ${err.detail || err.message}`];
}

async function startConversation() {
  if (app.phase !== "idle") return;
  clearAlert();
  app.phase = "connecting";
  app.clientRef = temporaryId();
  setConn("connecting");
  render();

  if (!navigator.mediaDevices?.getUserMedia) {
    app.phase = "idle";
    setConn("disconnected");
    render();
    log("whip", "error", "getUserMedia unavailable (insecure context?)");
    showAlert("Microphone unavailable", "Browsers only allow the microphone on https:// pages or on http://localhost and http://127.0.0.1.");
    return;
  }

  log("whip", "info", "Requesting microphone access");
  try {
    app.mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      video: false,
    });
  } catch (err) {
    app.phase = "idle";
    app.clientRef = null;
    setConn("disconnected");
    render();
    const [title, text] = micErrorMessage(err);
    log("whip", "error", `${title}: ${err?.name || ""} ${err?.message || ""}`.trim());
    showAlert(title, text);
    return;
  }
  const track = app.mic.getAudioTracks()[0];
  log("whip", "info", `Microphone on: ${track?.label || "default device"}`);
  startMeters(app.mic);

  const client = new WhipClient(api("/whip"), { token: TOKEN });
  app.client = client;
  client.addEventListener("connectionstatechange", (e) => onPcState(client, e.detail.state));
  client.addEventListener("request", (e) => {
    const { method, url, status, ms } = e.detail;
    log(method === "POST" ? "whip" : "session", status >= 400 ? "warning" : "info", `${method} ${new URL(url).pathname} -> ${status} (${Math.round(ms)} ms)`);
  });

  log("whip", "info", `Sending SDP offer to ${api("/whip")} with temporary ID ${app.clientRef}`);
  try {
    const res = await client.connect(app.mic, { receiveAudio: true, clientRef: app.clientRef });
    if (app.client !== client) return; // hung up while connecting
    app.sessionId = res.sessionId;
    log("whip", "info", "SDP answer received");
    if (res.sessionId) {
      log("session", "info", `Backend session ID received: ${res.sessionId} (replaces temporary ${app.clientRef})`);
    } else {
      log("session", "warning", "The answer carried no X-Session-ID (CORS headers not exposed?)");
    }
    ui.audio.srcObject = client.remoteStream;
    attachAgentMeter(client.remoteStream);
    ui.audio.play?.().catch((err) => {
      log("tts", "warning", `Autoplay blocked (${err.name}): click anywhere on the page to hear the agent`);
      document.addEventListener("click", () => ui.audio.play().catch(() => {}), { once: true });
    });
    app.phase = "connected";
    render();
    openEvents();
    fetchSession();
  } catch (err) {
    if (app.client !== client) return;
    app.client = null;
    teardownMedia();
    app.phase = "idle";
    app.clientRef = null;
    setConn("disconnected");
    render();
    if (err instanceof WhipError) {
      const [title, text] = whipErrorMessage(err);
      log("whip", "error", err.message);
      showAlert(title, text);
    } else {
      log("whip", "error", `Connection failed: ${err?.message || err}`);
      showAlert("Connection failed", String(err?.message || err));
    }
  }
}

function onPcState(client, state) {
  if (app.client !== client) return;
  log("whip", state === "failed" ? "error" : "info", `Peer connection ${state}`);
  if (state === "connected") setConn("connected");
  else if (state === "connecting" || state === "new") setConn("connecting");
  else if (state === "disconnected") setConn("disconnectedTemp");
  else if (state === "failed") {
    setConn("failed");
    showAlert("Media connection failed", "The audio connection to the server failed (ICE). Hang up and try again.");
  }
}

async function setListeningOnServer(on) {
  if (!app.sessionId) return;
  const path = on ? "/listening/start" : "/listening/stop";
  const btn = on ? ui.listenStart : ui.listenStop;
  if (document.activeElement === btn) app.focusPending = true;
  btn.disabled = true;
  try {
    const r = await fetch(api(path), {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify({ session_id: app.sessionId }),
    });
    let body = {};
    try {
      body = await r.json();
    } catch {
      /* non-JSON */
    }
    if (!r.ok) {
      log("session", "error", `POST ${path} -> ${r.status} ${body.error || ""} ${body.detail || ""}`.trim());
      showAlert("Could not change listening", body.detail || `The server answered ${r.status}.`, "warning");
    } else {
      log("session", "info", `POST ${path} -> ${r.status}: listening ${body.listening ? "on" : "off"}`);
      if (typeof body.listening === "boolean") setListening(body.listening);
    }
  } catch (err) {
    log("session", "error", `POST ${path} failed: ${err.message || err}`);
    showAlert("Server unreachable", `Cannot reach ${SERVER} to change listening.`);
  } finally {
    render();
  }
}

function teardownMedia() {
  stopMeters();
  app.mic?.getTracks().forEach((t) => t.stop());
  app.mic = null;
  ui.audio.srcObject = null;
}

/** Local cleanup once the session is over (hang-up done, or ended by the server). */
function endLocally(connState = "ended") {
  const client = app.client;
  app.client = null;
  const ws = app.ws;
  app.ws = null;
  ws?.close(1000, "hang up");
  if (client) {
    client.location = null; // the server side is gone: no DELETE
    client.disconnect().catch(() => {});
  }
  teardownMedia();
  app.phase = "idle";
  app.sessionId = null;
  app.clientRef = null;
  app.pendingUser?.classList.remove("partial");
  app.pendingUser = null;
  app.lastUserBubble = null;
  app.agentState = null;
  app.agentBubbles.clear();
  setListening(false);
  setAgentState(null);
  setConn(connState);
  render();
}

async function hangUp() {
  const client = app.client;
  if (!client) return;
  const sid = app.sessionId;
  app.phase = "ending";
  render();
  const ws = app.ws;
  app.ws = null;
  ws?.close(1000, "hang up");
  log("session", "info", `Hanging up${sid ? ` session ${sid}` : ""}`);
  try {
    const status = await client.disconnect();
    if (status === 404) log("session", "warning", "The server had already ended the session (404)");
    else if (status) log("session", "info", `Session ended (DELETE -> ${status})`);
  } catch (err) {
    log("session", "error", `Hang-up request failed: ${err.message || err}`);
    showAlert("Hang-up not confirmed", "The server could not be told to end the session; it will clean it up when idle.", "warning");
  }
  app.client = client; // endLocally closes what is left
  client.location = null;
  endLocally("ended");
}

// ----------------------------------------------------------------------------- wiring
ui.serverUrl.textContent = SERVER;
ui.start.addEventListener("click", startConversation);
ui.listenStart.addEventListener("click", () => setListeningOnServer(true));
ui.listenStop.addEventListener("click", () => setListeningOnServer(false));
ui.hangup.addEventListener("click", hangUp);
$("alert-close").addEventListener("click", clearAlert);
document.addEventListener("focusin", () => { app.focusPending = false; });
$("btn-clear-log").addEventListener("click", () => ui.log.replaceChildren());
window.addEventListener("pagehide", () => {
  // Best effort: end the session if the tab closes mid-call.
  if (app.client?.location) {
    fetch(app.client.location, { method: "DELETE", keepalive: true, headers: authHeaders() }).catch(() => {});
  }
});

setConn("disconnected");
setAgentState(null);
render();
log("session", "info", `Page ready; server ${SERVER}${TOKEN ? " (with token)" : ""}`);

// A read-only handle for debugging in the console and for the end-to-end tests.
window.voxline = {
  get phase() { return app.phase; },
  get sessionId() { return app.sessionId; },
  get clientRef() { return app.clientRef; },
  get location() { return app.client?.location ?? null; },
  get pc() { return app.client?.pc ?? null; },
  get listening() { return app.listening; },
  get events() { return app.events.slice(); },
  get micPeak() { return meters.micPeak; },
  get browserVoiceToVoice() { return Object.fromEntries(app.browserV2V); },
  server: SERVER,
};

// latency.js: per-turn latency cards (server stage times, browser estimate) and the chart.

import { METRIC_LABELS, app, ui } from "./state.js";
import { clearEmpty } from "./transcript.js";

export function prettyMetric(key) {
  if (METRIC_LABELS[key]) return METRIC_LABELS[key];
  const s = key.replace(/_ms$/, "").replace(/_/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

// A small bar chart of each turn's voice-to-voice time, newest on the right.
export const CHART_TURNS = 20;
export function renderChart() {
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

export function onTurnMetrics(ev) {
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

export function renderBrowserV2V(turn) {
  const ms = app.browserV2V.get(turn);
  const card = [...ui.latency.querySelectorAll(".turn-card")].find((c) => c.dataset.turn === turn);
  const el = card?.querySelector(".browser-v2v");
  if (!el || ms == null) return;
  el.hidden = false;
  el.textContent = `heard in this browser after ~${Math.round(ms)} ms`;
  el.title = "From the end of your speech at the microphone to audible agent audio here (approximate)";
}

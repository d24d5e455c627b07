// meters.js: microphone and agent level meters, and the browser-side voice-to-voice estimate.

import { renderBrowserV2V } from "./latency.js";
import { app, ui } from "./state.js";
import { log } from "./view.js";

// ----------------------------------------------------------------------------- level meters
// One AudioContext with two AnalyserNodes: the microphone and the agent's voice. Besides the
// meters, they give a browser-side voice-to-voice estimate: from the moment the caller's
// speech stops (microphone level falls below the speech threshold) to the first audible
// agent audio played here. It includes the network and jitter buffer, which the server's
// own figure cannot see; it is approximate (level thresholds, 30 ms resolution).
export const SPEECH_DB = -45; // microphone louder than this counts as speech
export const AGENT_DB = -50; // agent audio louder than this counts as audible
export const QUIET_BEFORE_ONSET_MS = 400;

export function makeAnalyser(ctx, stream) {
  const src = ctx.createMediaStreamSource(stream);
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  analyser.smoothingTimeConstant = 0.2;
  src.connect(analyser); // not to the destination: the <audio> element plays the agent
  return { src, analyser, buf: new Float32Array(analyser.fftSize) };
}

export function levelDb(a) {
  a.analyser.getFloatTimeDomainData(a.buf);
  let sum = 0;
  for (let i = 0; i < a.buf.length; i++) sum += a.buf[i] * a.buf[i];
  return 20 * Math.log10(Math.sqrt(sum / a.buf.length) + 1e-9);
}

export const meters = {
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

export function startMeters(micStream) {
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

export function attachAgentMeter(remoteStream) {
  if (!meters.ctx) return;
  try {
    meters.agent = makeAnalyser(meters.ctx, remoteStream);
  } catch (err) {
    log("tts", "warning", `Agent level meter unavailable: ${err.message || err}`);
  }
}

export function onAgentOnset(now) {
  meters.lastOnset = now;
  const ms = now - meters.lastSpeech;
  if (ms <= 0 || ms > 20_000) return;
  const turn = app.lastTurn;
  log("tts", "info", `Agent audio heard in the browser ${Math.round(ms)} ms after the end of your speech${turn != null ? ` (turn ${turn})` : ""}`);
  if (turn == null) return;
  app.browserV2V.set(String(turn), ms);
  renderBrowserV2V(String(turn));
}

export function stopMeters() {
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

// events.js: the session's event stream (WebSocket): one handler per event type.
//
// The types handled here are checked against voxline.bus.messages (tests/unit/bus/test_messages.py):
// the page handles every event sent to it, and none that nothing sends.

import { eventsUrl, getSession } from "./api.js";
import { endLocally } from "./call.js";
import { onTurnMetrics } from "./latency.js";
import { onEventsLost } from "./resume.js";
import { app } from "./state.js";
import { markInterrupted, onAgentText, onFinal, onState } from "./transcript.js";
import { log, setAgentState, setListening, showAlert } from "./view.js";

export function handleEvent(ev) {
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

export function openEvents() {
  const sid = app.sessionId;
  if (!sid) return;
  const url = eventsUrl(sid, app.sessionToken);
  const old = app.ws; // one stream at a time (a retry timer and a resume may both open one)
  app.ws = null;
  old?.close(1000, "replaced");
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
    onEventsLost(e.code); // the media server itself may be gone: resume the call
    if (app.phase !== "connected") return;
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

export async function fetchSession() {
  try {
    const s = await getSession(app.sessionId, app.sessionToken);
    if (!s) return;
    if (typeof s.listening === "boolean") setListening(s.listening);
    if (s.conversation_state) setAgentState(s.conversation_state);
    log("session", "info", `Session state ${s.state ?? "?"}, listening ${s.listening ? "on" : "off"}${s.client_ref ? `, client_ref ${s.client_ref}` : ""}`);
  } catch {
    /* the event stream will tell us */
  }
}

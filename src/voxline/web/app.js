// app.js: the voxline page's entry point. Connects the microphone over WHIP (./whip.js), plays
// the agent's voice from the same peer connection, and renders the session's event stream:
// transcript bubbles, pipeline log, per-turn latency. The parts are ES modules:
// api.js (every HTTP call), state.js, view.js (log, alerts, controls), transcript.js,
// latency.js, events.js (the event stream), meters.js, call.js (start, listening, hang-up).

import { SERVER, TOKEN, deleteOnUnload } from "./api.js";
import { hangUp, setListeningOnServer, startConversation } from "./call.js";
import { meters } from "./meters.js";
import { $, app, ui } from "./state.js";
import { clearAlert, log, render, setAgentState, setConn } from "./view.js";

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
    deleteOnUnload(app.client.location, app.sessionToken);
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
  get sessionToken() { return app.sessionToken; },
  get resumes() { return app.resumes; },
  get clientRef() { return app.clientRef; },
  get location() { return app.client?.location ?? null; },
  get pc() { return app.client?.pc ?? null; },
  get listening() { return app.listening; },
  get events() { return app.events.slice(); },
  get micPeak() { return meters.micPeak; },
  get browserVoiceToVoice() { return Object.fromEntries(app.browserV2V); },
  server: SERVER,
};

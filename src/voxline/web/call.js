// call.js: the call itself: microphone, WHIP connect, listening on/off, hang-up, clean-up.

import { SERVER, api, postListening, whipClient } from "./api.js";
import { fetchSession, openEvents } from "./events.js";
import { attachAgentMeter, startMeters, stopMeters } from "./meters.js";
import { watchConnection } from "./resume.js";
import { app, ui } from "./state.js";
import { clearAlert, log, render, setAgentState, setConn, setListening, showAlert } from "./view.js";
import { WhipError, temporaryId } from "./whip.js";

export function micErrorMessage(err) {
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

export function whipErrorMessage(err) {
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

export async function startConversation() {
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

  const client = await whipClient(); // with the server's ICE servers (TURN behind NAT)
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
    app.sessionToken = res.sessionToken;
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

export function onPcState(client, state) {
  if (app.client !== client) return;
  log("whip", state === "failed" ? "error" : "info", `Peer connection ${state}`);
  if (app.phase === "reconnecting") return; // resume.js shows the state until it is back
  if (state === "connected") setConn("connected");
  else if (state === "connecting" || state === "new") setConn("connecting");
  else if (state === "disconnected") setConn("disconnectedTemp");
  else if (state === "failed") setConn("failed");
  watchConnection(client, state); // failed, closed, or disconnected too long: resume the session
}

export async function setListeningOnServer(on) {
  if (!app.sessionId) return;
  const path = on ? "/listening/start" : "/listening/stop";
  const btn = on ? ui.listenStart : ui.listenStop;
  if (document.activeElement === btn) app.focusPending = true;
  btn.disabled = true;
  try {
    const { ok, status, body } = await postListening(app.sessionId, app.sessionToken, on);
    if (!ok) {
      log("session", "error", `POST ${path} -> ${status} ${body.error || ""} ${body.detail || ""}`.trim());
      showAlert("Could not change listening", body.detail || `The server answered ${status}.`, "warning");
    } else {
      log("session", "info", `POST ${path} -> ${status}: listening ${body.listening ? "on" : "off"}`);
      if (typeof body.listening === "boolean") setListening(body.listening);
    }
  } catch (err) {
    log("session", "error", `POST ${path} failed: ${err.message || err}`);
    showAlert("Server unreachable", `Cannot reach ${SERVER} to change listening.`);
  } finally {
    render();
  }
}

export function teardownMedia() {
  stopMeters();
  app.mic?.getTracks().forEach((t) => t.stop());
  app.mic = null;
  ui.audio.srcObject = null;
}

/** Local cleanup once the session is over (hang-up done, or ended by the server). */
export function endLocally(connState = "ended") {
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
  app.sessionToken = "";
  app.clientRef = null;
  app.resumes = 0;
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

export async function hangUp() {
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

// state.js: the page's elements (ui), its mutable state (app) and fixed labels.

export const $ = (id) => document.getElementById(id);

export const STAGES = ["whip", "session", "vad", "stt", "llm", "tool", "tts"];
export const METRIC_LABELS = {
  end_of_turn_ms: "End of turn",
  stt_ms: "STT",
  llm_first_token_ms: "LLM first token",
  first_sentence_ms: "LLM first sentence",
  tts_first_audio_ms: "TTS first audio",
};
export const STATE_LABELS = {
  idle: "idle",
  listening: "listening",
  user_speaking: "hearing you",
  thinking: "thinking",
  agent_speaking: "speaking",
};
export const MAX_LOG_ROWS = 600;
export const ui = {
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

export const app = {
  phase: "idle", // idle | connecting | connected | reconnecting (resume.js) | ending
  resumes: 0, // times this call was resumed on a fresh peer connection
  turnTotals: [], // {turn, ms} of each answered turn, for the chart
  focusPending: false, // the focused control got disabled: move focus on the next render
  client: null,
  mic: null,
  sessionId: null,
  sessionToken: "", // the session's secret (X-Session-Token), sent on every call about it
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


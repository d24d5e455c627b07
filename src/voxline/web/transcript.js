// transcript.js: chat bubbles for the caller's turns and the agent's streamed replies.

import { app, ui } from "./state.js";
import { setAgentState } from "./view.js";

export function clearEmpty(container) {
  container.querySelector(".empty")?.remove();
}

export function bubble(role, text, { partial = false, turn } = {}) {
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

export function onFinal(ev) {
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

export function onState(ev) {
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

export function markInterrupted(turn) {
  const el = [...ui.transcript.querySelectorAll(".bubble.agent")].find((b) => b.dataset.turn === String(turn));
  if (!el) return;
  el.classList.remove("streaming");
  el.removeAttribute("aria-busy");
  el.classList.add("interrupted");
  el.dataset.done = "1";
  app.agentBubbles.delete(String(turn));
}

export function onAgentText(ev) {
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

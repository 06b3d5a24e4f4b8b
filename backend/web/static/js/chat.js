// The chat page: pick a specialist, stream its answers, keep the conversation in this browser.

import { markEnding } from "./endings.js";
import { NETWORK_SENTENCE, explainResponse, streamErrorSentence } from "./errors.js";
import { count, seconds, usd } from "./format.js";
import { csrfHeaders, refreshMyUsage, showIdentity } from "./identity.js";
import { renderMarkdown } from "./markdown.js";
import { readEvents } from "./sse.js";
import * as store from "./store.js";

const $ = (id) => document.getElementById(id);
const els = {
  picker: $("specialist"), description: $("specialist-description"), log: $("conversation"),
  empty: $("empty"), notice: $("notice"), form: $("composer"), message: $("message"),
  limits: $("limits"), send: $("send"), stop: $("stop"), clear: $("clear"),
};
const data = document.body.dataset;
const LIMITS = {
  messageChars: Number(data.maxMessageChars), historyMessages: Number(data.maxHistoryMessages),
  totalChars: Number(data.maxTotalChars),
};
const NEAR = 0.8; // warn from 80 % of a limit

const state = { specialists: [], current: null, turns: [], streaming: null };

// ---- specialists ----

async function loadSpecialists() {
  let list;
  try {
    const response = await fetch("/specialists", { headers: { Accept: "application/json" } });
    if (!response.ok) return notify(await explainResponse(response));
    list = await response.json();
  } catch {
    return notify(NETWORK_SENTENCE);
  }
  state.specialists = list;
  els.picker.replaceChildren(...list.map((s) => {
    const option = new Option(s.configured ? s.name : `${s.name} (unavailable)`, s.id);
    return option;
  }));
  if (!list.length) {
    els.picker.replaceChildren(new Option("No specialists are enabled", ""));
    return;
  }
  const remembered = store.lastSpecialist();
  const initial = list.find((s) => s.id === remembered) || list.find((s) => s.configured) || list[0];
  els.picker.value = initial.id;
  els.picker.disabled = false;
  selectSpecialist(initial.id);
}

function selectSpecialist(id) {
  const specialist = state.specialists.find((s) => s.id === id);
  state.current = specialist || null;
  if (!specialist) return;
  store.rememberSpecialist(id);
  const availability = specialist.configured
    ? `Available (${specialist.provider}, ${specialist.model}).`
    : "Not available: its provider has no API key on this portal.";
  els.description.textContent = `${specialist.description} ${availability}`.trim();
  state.turns = store.loadTurns(id);
  renderConversation();
  updateLimits();
}

// ---- the conversation on screen ----

function renderConversation() {
  els.log.replaceChildren(...state.turns.map(turnElement));
  if (!state.turns.length) els.log.append(els.empty);
  scrollToEnd();
}

function turnElement(turn) {
  const article = document.createElement("article");
  article.className = `turn ${turn.role}${turn.leftOut ? " left-out" : ""}`;
  const heading = document.createElement("h4");
  heading.textContent = turn.role === "user" ? "You" : state.current ? state.current.name : "Assistant";
  const body = document.createElement("div");
  body.className = "body";
  if (turn.role === "user") body.textContent = turn.content;
  else body.replaceChildren(renderMarkdown(turn.content));
  article.append(heading, body);
  if (turn.meta) article.append(metaLine(turn.meta));
  if (turn.note) article.append(paragraph(turn.note, turn.noteKind || "note"));
  return article;
}

function metaLine(meta) {
  const parts = [
    `Tokens: ${count(meta.input_tokens)} in, ${count(meta.output_tokens)} out${meta.tokens_estimated ? " (estimated)" : ""}`,
    `Cost: ${usd(meta.estimated_cost_usd)}`,
    `Latency: ${seconds(meta.latency_ms)}`,
    `Model: ${meta.model || "unknown"}`,
  ];
  if (meta.rate_remaining !== null && meta.rate_remaining !== undefined) {
    parts.push(`Requests left: ${meta.rate_remaining}`);
  }
  if (meta.budget_remaining !== null && meta.budget_remaining !== undefined) {
    parts.push(`Budget left: $${meta.budget_remaining}`);
  }
  return paragraph(parts.join(" · "), "meta");
}

function paragraph(text, className) {
  const p = document.createElement("p");
  p.className = className;
  p.textContent = text;
  return p;
}

function scrollToEnd() {
  els.log.scrollTop = els.log.scrollHeight;
}

function notify(sentence) {
  els.notice.textContent = sentence;
  els.notice.hidden = !sentence;
}

// ---- limits: warn as the user nears what the server accepts ----

function limitProblems(nextMessage) {
  const chars = nextMessage.length;
  const sent = store.history(state.turns); // what the next message carries, refusals left out
  const historyChars = sent.reduce((n, t) => n + t.content.length, 0);
  const warnings = [];
  let blocked = false;
  if (chars > LIMITS.messageChars) {
    warnings.push(`The message is ${count(chars)} characters; the portal accepts at most ${count(LIMITS.messageChars)}.`);
    blocked = true;
  } else if (chars >= NEAR * LIMITS.messageChars) {
    warnings.push(`${count(chars)} of ${count(LIMITS.messageChars)} characters allowed in one message.`);
  }
  const turns = sent.length;
  if (sent.some((t) => t.content.length > LIMITS.messageChars)) {
    warnings.push(`An earlier message is over ${count(LIMITS.messageChars)} characters, more than the portal accepts. Clear the conversation to continue.`);
    blocked = true;
  }
  if (turns > LIMITS.historyMessages) {
    warnings.push(`The conversation has reached the portal's limit of ${count(LIMITS.historyMessages)} earlier messages. Clear it to continue.`);
    blocked = true;
  } else if (turns >= NEAR * LIMITS.historyMessages) {
    warnings.push(`${count(turns)} of ${count(LIMITS.historyMessages)} earlier messages allowed in a conversation.`);
  }
  const total = historyChars + chars;
  if (total > LIMITS.totalChars) {
    warnings.push(`The conversation is ${count(total)} characters; the portal accepts at most ${count(LIMITS.totalChars)}. Clear it to continue.`);
    blocked = true;
  } else if (total >= NEAR * LIMITS.totalChars) {
    warnings.push(`${count(total)} of ${count(LIMITS.totalChars)} characters allowed in a conversation.`);
  }
  return { text: warnings.join(" "), blocked };
}

function updateLimits() {
  const { text, blocked } = limitProblems(els.message.value);
  els.limits.textContent = text;
  els.limits.classList.toggle("over", blocked);
  const available = state.current && state.current.configured;
  els.send.disabled = Boolean(state.streaming) || !available || blocked;
}

// ---- sending and streaming ----

async function send() {
  const text = els.message.value;
  if (!text.trim() || state.streaming || !state.current || els.send.disabled) return;
  const specialist = state.current;
  const body = {
    specialist_id: specialist.id, message: text, conversation_history: store.history(state.turns),
  };
  notify("");
  const userTurn = { role: "user", content: text };
  const answer = { role: "assistant", content: "" };
  state.turns.push(userTurn, answer);
  els.message.value = "";
  renderConversation();
  const view = els.log.lastElementChild;
  const controller = new AbortController();
  state.streaming = { controller, view, answer };
  setStreaming(true);
  try {
    const response = await fetch("/chat/stream", {
      method: "POST", body: JSON.stringify(body), signal: controller.signal,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...csrfHeaders() },
    });
    if (!response.ok) return undo(text, await explainResponse(response));
    await readAnswer(response, text, userTurn, answer, view);
  } catch (error) {
    if (error.name === "AbortError") finishStopped(text, answer);
    else failMidway(text, answer, NETWORK_SENTENCE);
  } finally {
    state.streaming = null;
    setStreaming(false);
    store.saveTurns(specialist.id, state.turns);
    renderConversation();
    updateLimits();
    refreshMyUsage();
  }
}

async function readAnswer(response, text, question, answer, view) {
  const headers = {
    rate_remaining: response.headers.get("X-RateLimit-Remaining"),
    budget_remaining: response.headers.get("X-Budget-Remaining-USD"),
  };
  const painter = new Painter(view.querySelector(".body"));
  view.setAttribute("aria-busy", "true");
  performance.clearMarks("portal:first-chunk");
  performance.clearMeasures("portal:chunk-to-screen");
  for await (const { event, data } of readEvents(response.body)) {
    const chunk = JSON.parse(data);
    if (event === "error") {
      painter.flush(answer.content);
      return failMidway(text, answer, streamErrorSentence(chunk));
    }
    if (chunk.is_final) {
      answer.meta = { ...pick(chunk), ...headers };
      markEnding(question, answer, chunk.finish_reason);
      break;
    }
    if (!answer.content) performance.mark("portal:first-chunk");
    answer.content += chunk.content;
    painter.schedule(answer.content);
  }
  painter.flush(answer.content);
  if (!answer.meta) failMidway(text, answer, "The answer ended without its closing figures; it may be incomplete.");
}

function pick(chunk) {
  const keys = ["input_tokens", "output_tokens", "estimated_cost_usd", "latency_ms", "model",
    "provider", "tokens_estimated", "request_id", "finish_reason"];
  return Object.fromEntries(keys.map((k) => [k, chunk[k] ?? null]));
}

// Text arrives faster than frames: render once per animation frame, whatever has gathered,
// and measure from the oldest unrendered chunk's arrival to its being in the page.
class Painter {
  constructor(target) {
    this.target = target;
    this.pending = null;
    this.since = null;
    this.frame = 0;
  }

  schedule(text) {
    this.pending = text;
    if (this.since === null) this.since = performance.now();
    if (!this.frame) this.frame = requestAnimationFrame(() => this.paint());
  }

  paint() {
    this.frame = 0;
    if (this.pending === null) return;
    this.target.replaceChildren(renderMarkdown(this.pending));
    performance.measure("portal:chunk-to-screen", { start: this.since, end: performance.now() });
    this.pending = null;
    this.since = null;
    scrollToEnd();
  }

  flush(text) {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.pending = text;
    if (this.since === null) this.since = performance.now();
    this.paint();
  }
}

function undo(text, sentence) {
  // Refused before any answer: the message goes back in the box, nothing is kept.
  state.turns.splice(-2, 2);
  els.message.value = text;
  notify(sentence);
}

function finishStopped(text, answer) {
  if (!answer.content) return undo(text, "Stopped before the answer began. Your message is back in the box.");
  answer.note = "Stopped: the rest of this answer was not generated.";
}

function failMidway(text, answer, sentence) {
  // Nothing arrived: as if never sent. Part of an answer: kept, with what went wrong.
  if (!answer.content) return undo(text, sentence);
  answer.note = sentence;
  answer.noteKind = "error";
  notify(sentence);
}

function setStreaming(on) {
  els.stop.hidden = !on;
  els.send.disabled = on;
  els.picker.disabled = on;
  els.clear.disabled = on;
  // Focus stays in the message box (Escape stops); it returns there if Stop had it.
  if (!on && (document.activeElement === els.stop || document.activeElement === document.body)) {
    els.message.focus({ preventScroll: true });
  }
}

function stop() {
  if (state.streaming) state.streaming.controller.abort();
}

// ---- wiring ----

els.form.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
els.message.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && state.streaming) {
    event.preventDefault();
    stop();
  }
});
els.message.addEventListener("input", updateLimits);
els.stop.addEventListener("click", stop);
els.clear.addEventListener("click", () => {
  if (!state.current) return;
  store.clearTurns(state.current.id);
  state.turns = [];
  notify("");
  renderConversation();
  updateLimits();
  els.message.focus();
});
els.picker.addEventListener("change", () => selectSpecialist(els.picker.value));

loadSpecialists();
showIdentity(); // fetches the CSRF token long before anyone can have typed a message

// Every failure the API can answer with, as a plain sentence for people (never raw JSON).

export async function explainResponse(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = {};
  }
  return sentenceFor(response.status, body, response.headers.get("Retry-After"));
}

// Answers that came back but are no answer (backend/chat/errors.py): refused, blocked, spent
// on reasoning, empty. Before the stream starts they are a 422 or 502, after it an error event.
const NO_ANSWER = {
  content_refused: "The model declined to answer this message, so it is not kept in the conversation. Rephrase it, or ask something else.",
  content_filtered: "The provider's safety system blocked this message or its answer, so it is not kept in the conversation. Rephrase it, or ask something else.",
  output_budget_exhausted: "The model used its whole output limit on reasoning before writing any answer. Ask a narrower question, or ask your administrator to raise this specialist's output limit.",
  empty_answer: "The model ended without writing any answer. Please try again.",
};

export function sentenceFor(status, body, retryAfter) {
  const code = (body && body.error) || "";
  if (Object.hasOwn(NO_ANSWER, code)) return NO_ANSWER[code];
  const wait = waitPhrase(retryAfter);
  switch (status) {
    case 401:
      return "The portal did not accept your credentials. Sign in again, or check the token.";
    case 402:
      return "Your budget for this period is used up, so the portal did not send this message. Ask your administrator for more, or wait for the next period.";
    case 403:
      return "You are not allowed to use this specialist. Pick another one, or ask your administrator for access.";
    case 404:
      return "This specialist is no longer available. Reload the page to see the current list.";
    case 408:
      return "The message took too long to reach the portal. Please send it again.";
    case 413:
      return "The message or the conversation is longer than the portal accepts. Shorten the message or clear the conversation.";
    case 415:
    case 422:
      return "The portal could not read this message. Reload the page and try again.";
    case 429:
      return `You have sent too many messages for now. Try again ${wait || "in a little while"}.`;
    case 502:
      return "The specialist's model provider failed to answer. Please try again in a moment.";
    case 503:
      if (code === "upstream_rate_limited") {
        return `The model's provider is busy with too many requests. Try again ${wait || "in a moment"}.`;
      }
      if (code === "provider_not_configured") {
        return "This specialist is not set up on this portal (its provider has no API key). Pick another specialist.";
      }
      return `The specialist is unavailable right now. Try again ${wait || "in a moment"}.`;
    case 504:
      return "The model took too long to answer. Please try again.";
    default:
      if (status >= 500) return "The portal ran into a problem answering. Please try again in a moment.";
      return `The portal refused the message (status ${status}).`;
  }
}

export function streamErrorSentence(data) {
  const code = (data && data.error) || "";
  if (Object.hasOwn(NO_ANSWER, code)) return NO_ANSWER[code];
  if (code === "upstream_timeout") return "The answer stopped: the model took too long to continue.";
  if (code === "upstream_stream_cut") return "The answer stopped: the connection to the model's provider was lost. Please try again.";
  if (code.startsWith("budget")) return "The answer stopped: your budget for this period is used up.";
  return "The answer stopped part-way because the model's provider reported an error. Please try again.";
}

export const NETWORK_SENTENCE = "The portal could not be reached. Check your connection and try again.";

function waitPhrase(retryAfter) {
  const seconds = Number.parseInt(retryAfter || "", 10);
  if (!Number.isFinite(seconds) || seconds <= 0) return "";
  if (seconds < 90) return `in ${seconds} second${seconds === 1 ? "" : "s"}`;
  const minutes = Math.ceil(seconds / 60);
  return `in about ${minutes} minutes`;
}

// How an answer ended (the final event's `finish_reason`), as a marker people can read.

// Anthropic's guidance: a turn that ended in a refusal must be dropped (or changed) before the
// conversation goes on. We drop the pair, the user's message and the refused answer, from
// the `conversation_history` of every later message: the message is what was refused, and
// keeping it without its answer would leave two user turns in a row. Both stay on screen
// (and in this browser's storage) marked, so the person still sees what happened.
const LEFT_OUT = "It is left out of the conversation sent with your next messages.";

const ENDINGS = {
  refusal: { kind: "refusal", leaveOut: true, note: `The model declined to answer. ${LEFT_OUT}` },
  content_filter: {
    kind: "refusal", leaveOut: true,
    note: `The provider's safety system stopped this answer. ${LEFT_OUT}`,
  },
  length: {
    kind: "cut",
    note: "Cut short (output limit reached): the model stopped at this specialist's output limit.",
  },
  error: { kind: "error", note: "The model's provider ended this answer with an error; it may be incomplete." },
};

// Mark `answer` (and, for a refusal, the `question` that caused it) by its finish reason.
export function markEnding(question, answer, finishReason) {
  const ending = ENDINGS[finishReason];
  if (!ending) return; // stop, tool_calls, or a server that does not say: a plain answer
  answer.note = ending.note;
  answer.noteKind = ending.kind;
  if (ending.leaveOut) {
    question.leftOut = true;
    answer.leftOut = true;
  }
}

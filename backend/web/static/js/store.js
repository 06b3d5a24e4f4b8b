// The conversation with each specialist, kept in this browser's local storage.

const PREFIX = "portal.chat.v1.";
const LAST = "portal.chat.v1:last-specialist";

export function loadTurns(specialistId) {
  try {
    const turns = JSON.parse(localStorage.getItem(PREFIX + specialistId) || "[]");
    return Array.isArray(turns) ? turns.filter(validTurn) : [];
  } catch {
    return [];
  }
}

export function saveTurns(specialistId, turns) {
  try {
    localStorage.setItem(PREFIX + specialistId, JSON.stringify(turns));
    return true;
  } catch {
    return false; // full or disabled: the conversation still works, it just will not survive
  }
}

export function clearTurns(specialistId) {
  localStorage.removeItem(PREFIX + specialistId);
}

export function lastSpecialist() {
  return localStorage.getItem(LAST);
}

export function rememberSpecialist(specialistId) {
  localStorage.setItem(LAST, specialistId);
}

// What the API accepts as conversation_history: only user and assistant text, and never a
// refused exchange (`leftOut`, see endings.js), which stays stored only to be shown.
export function history(turns) {
  return turns.filter((t) => !t.leftOut).map((t) => ({ role: t.role, content: t.content }));
}

function validTurn(t) {
  return t && (t.role === "user" || t.role === "assistant") && typeof t.content === "string";
}

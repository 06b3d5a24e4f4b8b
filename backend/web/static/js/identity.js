// Who is signed in, sign-in and sign-out, and the user's own usage and budgets.
// Shown only where the portal verifies identities: under AUTH_MODE=none GET /me says
// `auth_method: "none"` (a user header is believed from anyone) and nothing here shows.
// With browser sign-in (AUTH_MODE=jwt and OIDC_CLIENT_ID) the session lives in an HttpOnly
// cookie this script never sees; GET /auth/session gives only the CSRF token that every
// unsafe request the cookie authenticates must carry.

import { count, usd } from "./format.js";

let csrfToken = null;
let panel = null; // the document whose My usage panel is shown, once it is
// The usage writer records an answer within USAGE_FLUSH_INTERVAL_SECONDS (0.2 s by default):
// ask for the figures again a little after each answer.
const USAGE_SETTLE_MS = 1000;

// Headers for a POST from this page: the session's CSRF token, when signed in by cookie.
export function csrfHeaders() {
  return csrfToken ? { "X-CSRF-Token": csrfToken } : {};
}

export async function showIdentity(doc = document) {
  const session = await optionalJson("/auth/session");
  if (session && session.signed_in) csrfToken = session.csrf_token;
  const me = await optionalJson("/me");
  if (!me || me.auth_method === "none") {
    if (session && session.sign_in_available) offerSignIn(doc, session.login_url);
    return;
  }
  const who = me.name || me.email || me.user_id || "you";
  const identity = doc.getElementById("identity");
  identity.textContent = `Signed in as ${who}`;
  identity.hidden = false;
  if (me.auth_method === "session") offerSignOut(doc, session.logout_url);
  panel = doc;
  await showMyUsage(doc);
}

// After an answer, the panel's figures again (nothing to do where no panel is shown).
export function refreshMyUsage() {
  if (panel) setTimeout(() => showMyUsage(panel), USAGE_SETTLE_MS);
}

function offerSignIn(doc, loginUrl) {
  const link = doc.getElementById("sign-in");
  const back = window.location.pathname + window.location.search;
  link.href = `${loginUrl}?next=${encodeURIComponent(back)}`;
  link.hidden = false;
}

function offerSignOut(doc, logoutUrl) {
  const button = doc.getElementById("sign-out");
  button.hidden = false;
  button.addEventListener("click", async () => {
    button.disabled = true;
    let next = "/";
    try {
      const response = await fetch(logoutUrl, {
        method: "POST", credentials: "same-origin",
        headers: { Accept: "application/json", ...csrfHeaders() },
      });
      const body = response.ok ? await response.json() : {};
      // Signed out here; the provider's own sign-out page ends its session too.
      next = body.end_session_url || "/";
    } finally {
      window.location.assign(next);
    }
  });
}

const SCOPE_NAMES = {
  user: "Your budget", group: "Group", cost_center: "Cost centre", portal: "Whole portal",
};

const PERIOD_NAMES = [
  [/^\d{4}-\d{2}$/, "this month"], [/^\d{4}-W\d{2}$/, "this week"], [/^\d{4}-\d{2}-\d{2}$/, "today"],
];

// The caller's own spend (GET /me/usage), then each budget that applies (GET /me/budget).
async function showMyUsage(doc) {
  const [usage, budget] = await Promise.all([optionalJson("/me/usage"), optionalJson("/me/budget")]);
  const rows = [...(usage ? spendRows(usage) : []), ...(budget ? budgetRows(budget) : [])];
  if (!rows.length) return;
  const figures = doc.getElementById("my-usage-figures");
  figures.replaceChildren(...rows.map(([name, value]) => {
    const row = doc.createElement("div");
    const term = doc.createElement("dt");
    term.textContent = name;
    const detail = doc.createElement("dd");
    detail.textContent = value;
    row.append(term, detail);
    return row;
  }));
  doc.getElementById("my-usage").hidden = false;
}

function spendRows(usage) {
  const named = PERIOD_NAMES.find(([pattern]) => pattern.test(usage.period || ""));
  const when = named ? named[1] : `since ${new Date(usage.from).toLocaleDateString()}`;
  const requests = `${count(usage.requests)} request${usage.requests === 1 ? "" : "s"}`;
  const unpriced = usage.unpriced_requests
    ? ` (${count(usage.unpriced_requests)} without a known price)` : "";
  return [
    [`Spent ${when}`, `${usd(usage.cost_usd)} on ${requests}${unpriced}`],
    ["Tokens", `${count(usage.input_tokens)} in, ${count(usage.output_tokens)} out`],
  ];
}

function budgetRows(budget) {
  const rows = (budget.budgets || []).map((b) => [
    b.name ? `${SCOPE_NAMES[b.scope] || b.scope} ${b.name}` : SCOPE_NAMES[b.scope] || b.scope,
    `${usd(b.spent_usd)} of ${usd(b.limit_usd)} spent, ${usd(b.remaining_usd)} left` +
      (b.resets_at ? ` (resets ${new Date(b.resets_at).toLocaleDateString()})` : ""),
  ]);
  if (!budget.enabled) rows.push(["Budgets", "Not counted on this portal."]);
  else if (!rows.length) rows.push(["Budget", "No spending limit applies to you."]);
  return rows;
}

async function optionalJson(path) {
  try {
    const response = await fetch(path, {
      headers: { Accept: "application/json" }, credentials: "same-origin",
    });
    return response.status === 200 ? await response.json() : null;
  } catch {
    return null;
  }
}

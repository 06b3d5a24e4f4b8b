// Who is signed in, and their own usage: shown only where the portal verifies identities.
// Under AUTH_MODE=none GET /me says `auth_method: "none"` (nobody is signed in: a user
// header is believed from anyone), and both areas stay hidden.

export async function showIdentity(doc = document) {
  const me = await optionalJson("/me");
  if (!me || me.auth_method === "none") return;
  const who = me.name || me.display_name || me.email || me.user_id || "you";
  const identity = doc.getElementById("identity");
  identity.textContent = `Signed in as ${who}`;
  identity.hidden = false;
  const budget = await optionalJson("/me/budget");
  if (budget) showBudget(doc, budget);
}

function showBudget(doc, budget) {
  const figures = doc.getElementById("my-usage-figures");
  figures.replaceChildren();
  for (const [name, value] of Object.entries(budget)) {
    if (value === null || typeof value === "object") continue;
    const row = doc.createElement("div");
    const term = doc.createElement("dt");
    term.textContent = name.replaceAll("_", " ");
    const detail = doc.createElement("dd");
    detail.textContent = String(value);
    row.append(term, detail);
    figures.append(row);
  }
  doc.getElementById("my-usage").hidden = false;
}

async function optionalJson(path) {
  try {
    const response = await fetch(path, { headers: { Accept: "application/json" } });
    return response.status === 200 ? await response.json() : null;
  } catch {
    return null;
  }
}

// Numbers as people read them: money, durations, counts.

export function usd(value, digits = 6) {
  if (value === null || value === undefined) return "cost unknown";
  if (value === 0) return "$0";
  return "$" + Number(value).toFixed(value >= 1 ? 2 : digits).replace(/0+$/, "").replace(/\.$/, "");
}

export function money(value) {
  return "$" + Number(value || 0).toFixed(value >= 100 ? 0 : 2);
}

export function seconds(ms) {
  if (ms === null || ms === undefined) return "–";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

export function count(n) {
  return Number(n || 0).toLocaleString("en");
}

export function percent(part, whole) {
  if (!whole) return "–";
  return `${((100 * part) / whole).toFixed(1)} %`;
}

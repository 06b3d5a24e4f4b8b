// The usage dashboard: every figure comes from GET /usage/summary and /usage/export,
// called with the admin token that the user typed (kept in this tab's session storage).

import { barChart, columnChart } from "./charts.js";
import { sentenceFor, NETWORK_SENTENCE } from "./errors.js";
import { count, percent, seconds, usd } from "./format.js";
import { sortableTable } from "./table.js";

const TOKEN_KEY = "portal.adminToken";
const DAY = 86_400_000;
const $ = (id) => document.getElementById(id);
const els = {
  tokenForm: $("token-form"), token: $("admin-token"), forget: $("forget"), notice: $("notice"),
  report: $("report"), rangeForm: $("range-form"), range: $("range"), custom: $("custom-range"),
  from: $("from"), to: $("to"), download: $("download"), rangeLabel: $("range-label"),
  totals: $("totals"), daily: $("daily-chart"), breakdown: $("breakdown"),
  breakdownChart: $("breakdown-chart"), breakdownTable: $("breakdown-table"),
  reliability: $("reliability-table"), users: $("users-table"),
};
let summaries = null;

class ReportError extends Error {}

function notify(sentence) {
  els.notice.textContent = sentence;
  els.notice.hidden = !sentence;
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// ---- the time range ----

function currentRange() {
  if (els.range.value !== "custom") {
    const end = new Date();
    return { start: new Date(end.getTime() - Number(els.range.value) * DAY), end };
  }
  const start = els.from.valueAsDate;
  const last = els.to.valueAsDate;
  if (!start || !last) throw new ReportError("Pick both a start and an end date.");
  const end = new Date(last.getTime() + DAY); // the end date is included
  if (start >= end) throw new ReportError("The start date must be on or before the end date.");
  return { start, end };
}

function rangeQuery({ start, end }) {
  return new URLSearchParams({ from: start.toISOString(), to: end.toISOString() });
}

// ---- the report endpoints ----

async function call(path, params) {
  let response;
  try {
    response = await fetch(`${path}?${params}`, { headers: { Authorization: `Bearer ${token()}` } });
  } catch {
    throw new ReportError(NETWORK_SENTENCE);
  }
  if (response.ok) return response;
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    throw new ReportError("The admin token was not accepted. Enter it again.");
  }
  if (response.status === 404) {
    throw new ReportError("Usage reports are switched off on this portal: the server has no ADMIN_TOKEN set.");
  }
  if (response.status === 429) {
    const wait = response.headers.get("Retry-After");
    throw new ReportError(`Too many wrong tokens were tried from here. Try again in ${wait || "a few"} seconds.`);
  }
  let body = {};
  try { body = await response.json(); } catch { body = {}; }
  throw new ReportError(sentenceFor(response.status, body, response.headers.get("Retry-After")));
}

async function summary(groupBy, range) {
  const params = rangeQuery(range);
  params.set("group_by", groupBy);
  return (await call("/usage/summary", params)).json();
}

async function load() {
  if (!token()) return;
  notify("");
  let range;
  try {
    range = currentRange();
    const groupings = ["day", "specialist", "model", "provider", "user"];
    const results = await Promise.all(groupings.map((g) => summary(g, range)));
    summaries = Object.fromEntries(groupings.map((g, i) => [g, results[i]]));
  } catch (error) {
    if (!(error instanceof ReportError)) throw error;
    notify(error.message);
    els.report.hidden = !summaries;
    return;
  }
  els.report.hidden = false;
  els.rangeLabel.textContent = `From ${range.start.toISOString().slice(0, 16).replace("T", " ")} to ${range.end.toISOString().slice(0, 16).replace("T", " ")} UTC.`;
  paint(range);
}

// ---- drawing ----

function paint(range) {
  paintTotals(summaries.day.totals);
  els.daily.replaceChildren(columnChart(dailySeries(summaries.day.groups, range), {
    label: "Spend per day in US dollars", format: (v) => usd(v, 4), width: chartWidth(els.daily),
  }));
  paintBreakdown();
  paintReliability();
  paintUsers();
}

function chartWidth(element) {
  return Math.max(320, Math.min(720, element.clientWidth || 720));
}

function paintTotals(t) {
  const figures = [
    ["Spend", usd(t.cost_usd), t.cost_usd, "cost_usd"],
    ["Requests", count(t.requests), t.requests, "requests"],
    ["Failures", `${count(t.failures)} (${percent(t.failures, t.requests)})`, t.failures, "failures"],
    ["Input tokens", count(t.input_tokens), t.input_tokens, "input_tokens"],
    ["Output tokens", count(t.output_tokens), t.output_tokens, "output_tokens"],
    ["Unpriced requests", count(t.unpriced_requests), t.unpriced_requests, "unpriced_requests"],
    ["Latency p50", seconds(t.latency_p50_ms), t.latency_p50_ms, "latency_p50_ms"],
    ["Latency p95", seconds(t.latency_p95_ms), t.latency_p95_ms, "latency_p95_ms"],
  ];
  els.totals.replaceChildren(...figures.map(([name, shown, raw, key]) => {
    const div = document.createElement("div");
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = shown;
    dd.dataset.field = key;
    dd.dataset.value = raw === null || raw === undefined ? "" : String(raw);
    div.append(dt, dd);
    return div;
  }));
}

// Every day of the range, with 0 for days without a request (the summary omits them).
function dailySeries(groups, { start, end }) {
  const byDay = new Map(groups.map((g) => [g.key, g.cost_usd]));
  const points = [];
  for (let t = Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), start.getUTCDate()); t < end.getTime(); t += DAY) {
    const day = new Date(t).toISOString().slice(0, 10);
    points.push({ label: day, value: byDay.get(day) || 0 });
  }
  return points;
}

function name(group) {
  return group.label || group.key || "(none)";
}

function paintBreakdown() {
  const by = els.breakdown.value;
  const groups = summaries[by].groups;
  const title = els.breakdown.selectedOptions[0].textContent.toLowerCase();
  els.breakdownChart.replaceChildren(barChart(groups.map((g) => ({ label: name(g), value: g.cost_usd })), {
    label: `Spend in US dollars by ${title}`, format: (v) => usd(v, 4),
    width: chartWidth(els.breakdownChart),
  }));
  els.breakdownTable.replaceChildren(sortableTable([
    { key: "name", label: by[0].toUpperCase() + by.slice(1), numeric: false },
    { key: "requests", label: "Requests", format: count },
    { key: "failures", label: "Failures", format: count },
    { key: "input_tokens", label: "Input tokens", format: count },
    { key: "output_tokens", label: "Output tokens", format: count },
    { key: "cost_usd", label: "Spend", format: (v) => usd(v) },
  ], groups.map((g) => ({ ...g, name: name(g) })), {
    caption: `Spend and requests by ${title}; select a column header to sort.`, sortKey: "cost_usd",
  }));
}

function paintReliability() {
  const rows = summaries.specialist.groups.map((g) => ({
    ...g, name: name(g), failure_rate: g.requests ? g.failures / g.requests : null,
  }));
  els.reliability.replaceChildren(sortableTable([
    { key: "name", label: "Specialist", numeric: false },
    { key: "requests", label: "Requests", format: count },
    { key: "failure_rate", label: "Failure rate", format: (v, row) => percent(row.failures, row.requests) },
    { key: "latency_p50_ms", label: "p50 latency", format: seconds },
    { key: "latency_p95_ms", label: "p95 latency", format: seconds },
  ], rows, { caption: "Latency of successful requests; select a column header to sort.", sortKey: "failure_rate" }));
}

function paintUsers() {
  const rows = summaries.user.groups
    .map((g) => ({ ...g, user: g.key }))
    .sort((a, b) => b.cost_usd - a.cost_usd)
    .slice(0, 10);
  els.users.replaceChildren(sortableTable([
    { key: "user", label: "User (hash)", numeric: false, format: userCell },
    { key: "requests", label: "Requests", format: count },
    { key: "cost_usd", label: "Spend", format: (v) => usd(v) },
  ], rows, { caption: "The ten users who spent most in the range.", sortKey: "cost_usd" }));
}

function userCell(hash) {
  if (!hash) return "Anonymous (no user header)";
  const code = document.createElement("code");
  code.textContent = hash.slice(0, 12) + "…";
  code.title = hash;
  return code;
}

// ---- CSV download: fetched with the header, handed to the browser as a file ----

async function download() {
  notify("");
  try {
    const response = await call("/usage/export", rangeQuery(currentRange()));
    const blob = await response.blob();
    const match = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = match ? match[1] : "usage.csv";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  } catch (error) {
    if (!(error instanceof ReportError)) throw error;
    notify(error.message);
  }
}

// ---- wiring ----

els.tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const typed = els.token.value.trim();
  if (!typed) return notify("Enter the admin token first.");
  sessionStorage.setItem(TOKEN_KEY, typed);
  els.token.value = "";
  load();
});
els.forget.addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  summaries = null;
  els.report.hidden = true;
  notify("");
  els.token.focus();
});
els.range.addEventListener("change", () => {
  els.custom.hidden = els.range.value !== "custom";
  if (els.range.value !== "custom") load();
});
els.rangeForm.addEventListener("submit", (event) => {
  event.preventDefault();
  load();
});
els.breakdown.addEventListener("change", () => summaries && paintBreakdown());
els.download.addEventListener("click", download);

load();

// Small SVG bar charts (no library): vertical for a time series, horizontal for categories.
// Each chart is an image with a text alternative; the tables beside them hold the figures.

const SVG = "http://www.w3.org/2000/svg";

function node(name, attributes = {}, text = null) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== null) element.textContent = text;
  return element;
}

function frame(width, height, label) {
  const svg = node("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
  svg.append(node("title", {}, label));
  return svg;
}

// points: [{label, value}] in order; format turns a value into text.
// width: the container's, so the text keeps its size on a phone.
export function columnChart(points, { label, format, width = 720 }) {
  const height = 240, left = 56, bottom = 28, top = 12;
  const svg = frame(width, height, label);
  const max = Math.max(...points.map((p) => p.value), 0) || 1;
  const plotH = height - bottom - top;
  const step = (width - left - 8) / Math.max(points.length, 1);
  svg.append(node("line", { class: "axis", x1: left, y1: top + plotH, x2: width - 8, y2: top + plotH }));
  for (const fraction of [0, 0.5, 1]) {
    const y = top + plotH - fraction * plotH;
    svg.append(node("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, format(max * fraction)));
  }
  const labelEvery = Math.ceil(points.length / Math.max(2, Math.floor(width / 90)));
  points.forEach((point, i) => {
    const h = (point.value / max) * plotH;
    const x = left + i * step + step * 0.15;
    const bar = node("rect", {
      class: "bar-fill", x, y: top + plotH - h, width: Math.max(step * 0.7, 1), height: h,
      "data-label": point.label, "data-value": point.value,
    });
    bar.append(node("title", {}, `${point.label}: ${format(point.value)}`));
    svg.append(bar);
    if (i % labelEvery === 0) {
      svg.append(node("text", { x: x + step * 0.35, y: height - 8, "text-anchor": "middle" }, point.label.slice(5)));
    }
  });
  return svg;
}

// bars: [{label, value}], drawn largest first.
export function barChart(bars, { label, format, width = 720 }) {
  const sorted = [...bars].sort((a, b) => b.value - a.value).slice(0, 12);
  const row = 26, left = Math.min(180, Math.round(width * 0.36));
  const height = Math.max(sorted.length, 1) * row + 8;
  const svg = frame(width, height, label);
  const max = Math.max(...sorted.map((b) => b.value), 0) || 1;
  sorted.forEach((bar, i) => {
    const y = 4 + i * row;
    const w = (bar.value / max) * (width - left - 70);
    const chars = Math.floor(left / 7);
    const name = bar.label.length > chars ? bar.label.slice(0, chars - 1) + "…" : bar.label;
    svg.append(node("text", { x: left - 8, y: y + 16, "text-anchor": "end" }, name));
    const rect = node("rect", {
      class: "bar-fill", x: left, y: y + 3, width: Math.max(w, 1), height: row - 8,
      "data-label": bar.label, "data-value": bar.value,
    });
    rect.append(node("title", {}, `${bar.label}: ${format(bar.value)}`));
    svg.append(rect);
    svg.append(node("text", { x: left + Math.max(w, 1) + 6, y: y + 16 }, format(bar.value)));
  });
  return svg;
}

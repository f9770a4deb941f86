/* Shared helpers of the monosemantic browser: JSON fetch, DOM building (text only, never
   innerHTML with data), token shading, tooltips and small SVG charts. */
"use strict";

const MS = {};

MS.nFeatures = Number(document.body.dataset.nFeatures || 0);

MS.api = async function (path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const res = await fetch(path, opts);
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) {
    const err = new Error((data && data.error) || `${res.status} ${res.statusText}`);
    err.status = res.status;
    throw err;
  }
  return data;
};

MS.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
};

MS.clear = function (node) { while (node.firstChild) node.removeChild(node.firstChild); return node; };

MS.fmt = function (x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (typeof x !== "number") return String(x);
  if (Number.isInteger(x) && Math.abs(x) < 1e6) return x.toLocaleString("en");
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return x.toExponential(digits - 1);
  return Number(x.toPrecision(digits)).toString();
};

// A count in full (token windows reach millions, where fmt switches to exponents).
MS.count = function (x) { return Number.isInteger(x) ? x.toLocaleString("en") : MS.fmt(x); };

MS.pct = function (x, digits = 2) {
  if (x === null || x === undefined) return "–";
  const p = 100 * x;
  return (p !== 0 && Math.abs(p) < 0.01 ? p.toExponential(1) : p.toFixed(digits)) + "%";
};

MS.featureLink = function (id, label) {
  const a = MS.el("a", {href: `/feature/${id}`, class: "flink", dataset: {feature: id}}, `#${id}`);
  return label ? MS.el("span", {}, a, " ", MS.el("span", {class: "label", text: label})) : a;
};

/* Orange background whose strength follows act / max. */
MS.shade = function (act, max) {
  if (!(act > 0) || !(max > 0)) return "";
  const t = Math.min(1, act / max);
  return `rgba(255, 120, 0, ${(0.12 + 0.78 * t).toFixed(3)})`;
};

MS.showToken = function (text) {
  return text.replace(/\n/g, "↵\n").replace(/\t/g, "→\t");
};

const tooltip = document.getElementById("tooltip");
MS.tip = function (text, x, y) {
  if (!tooltip) return;
  if (text === null) { tooltip.hidden = true; return; }
  tooltip.textContent = text;
  tooltip.hidden = false;
  const w = tooltip.offsetWidth;
  tooltip.style.left = `${Math.min(x + 14, window.innerWidth - w - 8)}px`;
  tooltip.style.top = `${y + 14}px`;
};

/* One text window, each token a span shaded by its activation; value on hover. */
MS.renderTokens = function (tokens, acts, max, peak) {
  const line = MS.el("div", {class: "toks"});
  tokens.forEach((tok, i) => {
    const act = acts ? acts[i] : 0;
    const span = MS.el("span", {class: "tok" + (i === peak ? " peak" : "") + (act > 0 ? " active" : ""),
      dataset: {act: act}}, MS.showToken(tok));
    const bg = MS.shade(act, max);
    if (bg) span.style.background = bg;
    span.addEventListener("mousemove", (e) => MS.tip(`${JSON.stringify(tok)}  activation ${MS.fmt(act, 4)}` +
      (max > 0 ? ` (${MS.pct(act / max, 0)} of max)` : ""), e.clientX, e.clientY));
    span.addEventListener("mouseleave", () => MS.tip(null));
    line.append(span);
  });
  return line;
};

MS.renderExample = function (ex, max) {
  return MS.el("div", {class: "example"},
    MS.el("span", {class: "exact", text: MS.fmt(ex.activation, 4)}),
    MS.renderTokens(ex.tokens, ex.acts, max, ex.peak));
};

const SVGNS = "http://www.w3.org/2000/svg";
MS.svg = function (tag, attrs, ...children) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) if (c) node.append(c);
  return node;
};

function ticks(lo, hi, n) {
  if (!(hi > lo)) return [lo];
  const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n)));
  const mult = [1, 2, 5, 10].find((m) => (hi - lo) / (m * step) <= n) || 10;
  const s = mult * step, out = [];
  for (let v = Math.ceil(lo / s) * s; v <= hi + 1e-12; v += s) out.push(Number(v.toPrecision(12)));
  return out;
}

/* Line chart: series = [{name, points: [[x, y], ...]}]. */
MS.lineChart = function (title, series, opts = {}) {
  const W = opts.width || 420, H = opts.height || 220, L = 56, R = 10, T = 24, B = 30;
  const pts = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p[1]));
  const svg = MS.svg("svg", {width: W, height: H, class: "chart", viewBox: `0 0 ${W} ${H}`});
  svg.append(MS.svg("text", {x: L, y: 14, class: "ctitle"}, document.createTextNode(title)));
  if (!pts.length) return svg;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => opts.logY ? Math.log10(Math.max(p[1], 1e-12)) : p[1]);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = (y) => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  for (const t of ticks(y0, y1, 4)) {
    svg.append(MS.svg("line", {x1: L, x2: W - R, y1: sy(t), y2: sy(t), class: "grid"}));
    svg.append(MS.svg("text", {x: L - 4, y: sy(t) + 4, class: "tick", "text-anchor": "end"},
      document.createTextNode(opts.logY ? `1e${t}` : MS.fmt(t))));
  }
  for (const t of ticks(x0, x1, 4)) svg.append(MS.svg("text", {x: sx(t), y: H - 10, class: "tick", "text-anchor": "middle"},
    document.createTextNode(MS.fmt(t))));
  series.forEach((s, i) => {
    const d = s.points.filter((p) => Number.isFinite(p[1])).map((p, j) =>
      `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(opts.logY ? Math.log10(Math.max(p[1], 1e-12)) : p[1]).toFixed(1)}`).join("");
    svg.append(MS.svg("path", {d, class: `series s${i}`}));
    svg.append(MS.svg("text", {x: W - R - 4, y: T + 12 + 14 * i, class: `legend s${i}`, "text-anchor": "end"},
      document.createTextNode(s.name)));
  });
  return svg;
};

/* Bar chart over bins [edges[i], edges[i+1]); marks = [{x, label}] vertical lines. */
MS.barChart = function (edges, counts, opts = {}) {
  const W = opts.width || 520, H = opts.height || 200, L = 50, R = 10, T = 10, B = 34;
  const svg = MS.svg("svg", {width: W, height: H, class: "chart", viewBox: `0 0 ${W} ${H}`});
  const x0 = edges[0], x1 = edges[edges.length - 1];
  const top = Math.max(1, ...counts);
  const yv = (c) => opts.logY ? Math.log10(1 + c) / Math.log10(1 + top) : c / top;
  const sx = (x) => L + (x - x0) / ((x1 - x0) || 1) * (W - L - R);
  counts.forEach((c, i) => {
    const h = yv(c) * (H - T - B);
    const bar = MS.svg("rect", {x: sx(edges[i]) + 0.5, y: H - B - h, width: Math.max(1, sx(edges[i + 1]) - sx(edges[i]) - 1),
      height: h, class: "bar"});
    bar.append(MS.svg("title", {}, document.createTextNode(
      `${opts.binLabel ? opts.binLabel(edges[i], edges[i + 1]) : `[${MS.fmt(edges[i])}, ${MS.fmt(edges[i + 1])})`}: ${c}`)));
    svg.append(bar);
  });
  for (const t of ticks(x0, x1, 6)) svg.append(MS.svg("text", {x: sx(t), y: H - B + 14, class: "tick", "text-anchor": "middle"},
    document.createTextNode(opts.xLabel ? opts.xLabel(t) : MS.fmt(t))));
  if (opts.yTitle) svg.append(MS.svg("text", {x: 12, y: (T + H - B) / 2, class: "tick", "text-anchor": "middle",
    transform: `rotate(-90 12 ${(T + H - B) / 2})`}, document.createTextNode(opts.yTitle)));
  if (opts.title) svg.append(MS.svg("text", {x: (L + W - R) / 2, y: H - 4, class: "tick", "text-anchor": "middle"},
    document.createTextNode(opts.title)));
  (opts.marks || []).forEach((m) => {
    svg.append(MS.svg("line", {x1: sx(m.x), x2: sx(m.x), y1: T, y2: H - B, class: "mark"}));
  });
  return svg;
};

MS.setStatus = function (node, text, isError) {
  node.textContent = text || "";
  node.classList.toggle("error", !!isError);
};

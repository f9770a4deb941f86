/* Feature map: all features on one canvas, zoom and pan, hover and click through a spatial grid
   (no DOM node per point). */
"use strict";
(function () {
  const {fmt, pct} = MS;
  const canvas = document.getElementById("map");
  const ctx = canvas.getContext("2d");
  const status = document.getElementById("map-status");
  const GRID = 128, HIT_PX = 6;
  let pts = null, colours = null, grid = null, bounds = null, hover = -1;
  let view = {scale: 1, ox: 0, oy: 0};

  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#393b79", "#ad494a", "#637939", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363"];

  function densityColour(d) {
    if (!(d > 0)) return "#bbbbbb";
    const t = Math.max(0, Math.min(1, (Math.log10(d) + 6) / 6));  // 1e-6 .. 1
    return `hsl(${(240 - 240 * t).toFixed(0)}, 80%, 45%)`;
  }

  function computeColours() {
    const by = document.getElementById("colour").value;
    const hasClusters = pts.cluster.some((c) => c !== null);
    colours = pts.id.map((_, i) => by === "cluster" && hasClusters ?
      (pts.cluster[i] === null || pts.cluster[i] < 0 ? "#bbbbbb" : PALETTE[pts.cluster[i] % PALETTE.length]) : densityColour(pts.density[i]));
  }

  // Data -> base screen transform fitted to the canvas, then the user's pan/zoom.
  function baseX(x) { return 20 + (x - bounds.x0) / (bounds.x1 - bounds.x0 || 1) * (canvas.width - 40); }
  function baseY(y) { return canvas.height - 20 - (y - bounds.y0) / (bounds.y1 - bounds.y0 || 1) * (canvas.height - 40); }
  function toScreen(i) { return [baseX(pts.x[i]) * view.scale + view.ox, baseY(pts.y[i]) * view.scale + view.oy]; }

  function buildGrid() {
    grid = new Map();
    pts.id.forEach((_, i) => {
      const gx = Math.floor(baseX(pts.x[i]) / canvas.width * GRID), gy = Math.floor(baseY(pts.y[i]) / canvas.height * GRID);
      const key = gx * 4096 + gy;
      if (!grid.has(key)) grid.set(key, []);
      grid.get(key).push(i);
    });
  }

  // Nearest point within HIT_PX screen pixels of (sx, sy), searching only nearby grid cells.
  function pick(sx, sy) {
    const bx = (sx - view.ox) / view.scale, by = (sy - view.oy) / view.scale, r = HIT_PX / view.scale;
    const gx0 = Math.floor((bx - r) / canvas.width * GRID), gx1 = Math.floor((bx + r) / canvas.width * GRID);
    const gy0 = Math.floor((by - r) / canvas.height * GRID), gy1 = Math.floor((by + r) / canvas.height * GRID);
    let best = -1, bestD = r * r;
    for (let gx = gx0; gx <= gx1; gx++) for (let gy = gy0; gy <= gy1; gy++) {
      for (const i of grid.get(gx * 4096 + gy) || []) {
        const dx = baseX(pts.x[i]) - bx, dy = baseY(pts.y[i]) - by, d = dx * dx + dy * dy;
        if (d <= bestD) { best = i; bestD = d; }
      }
    }
    return best;
  }

  let queued = false;
  function draw() {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      const size = Math.max(2, Math.min(6, 2 * Math.sqrt(view.scale)));
      let last = null;
      for (let i = 0; i < pts.id.length; i++) {
        const [x, y] = toScreen(i);
        if (x < -5 || y < -5 || x > canvas.width + 5 || y > canvas.height + 5) continue;
        if (colours[i] !== last) { ctx.fillStyle = colours[i]; last = colours[i]; }
        ctx.fillRect(x - size / 2, y - size / 2, size, size);
      }
      if (hover >= 0) {
        const [x, y] = toScreen(hover);
        ctx.strokeStyle = "#000"; ctx.lineWidth = 2;
        ctx.strokeRect(x - size - 2, y - size - 2, 2 * size + 4, 2 * size + 4);
      }
    });
  }

  function label(i) {
    const c = pts.cluster[i];
    const cl = c !== null && c !== undefined ? ` · cluster ${c}${pts.cluster_labels[c] ? ": " + pts.cluster_labels[c] : ""}` : "";
    return `#${pts.id[i]}${pts.label[i] ? " · " + pts.label[i] : ""}${cl} · density ${pct(pts.density[i], 3)}`;
  }

  function localXY(e) {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
  }

  let drag = null;
  canvas.addEventListener("mousedown", (e) => { drag = {x: e.clientX, y: e.clientY, ox: view.ox, oy: view.oy, moved: false}; });
  window.addEventListener("mouseup", () => { setTimeout(() => { drag = null; }, 0); });
  canvas.addEventListener("mousemove", (e) => {
    if (!pts) return;
    if (drag && (e.buttons & 1)) {
      const r = canvas.getBoundingClientRect(), k = canvas.width / r.width;
      if (Math.abs(e.clientX - drag.x) + Math.abs(e.clientY - drag.y) > 3) drag.moved = true;
      view.ox = drag.ox + (e.clientX - drag.x) * k; view.oy = drag.oy + (e.clientY - drag.y) * k;
      draw(); return;
    }
    const [sx, sy] = localXY(e);
    const i = pick(sx, sy);
    if (i !== hover) { hover = i; draw(); }
    canvas.style.cursor = i >= 0 ? "pointer" : "grab";
    if (i >= 0) MS.tip(label(i), e.clientX, e.clientY); else MS.tip(null);
  });
  canvas.addEventListener("mouseleave", () => { MS.tip(null); hover = -1; if (pts) draw(); });
  canvas.addEventListener("click", (e) => {
    if (!pts || (drag && drag.moved)) return;
    const [sx, sy] = localXY(e);
    const i = pick(sx, sy);
    if (i >= 0) location.href = `/feature/${pts.id[i]}`;
  });
  canvas.addEventListener("wheel", (e) => {
    if (!pts) return;
    e.preventDefault();
    const [sx, sy] = localXY(e);
    const f = Math.exp(-e.deltaY * 0.0015);
    const scale = Math.max(0.5, Math.min(200, view.scale * f)), k = scale / view.scale;
    view.ox = sx - (sx - view.ox) * k; view.oy = sy - (sy - view.oy) * k; view.scale = scale;
    draw();
  }, {passive: false});
  document.getElementById("reset").addEventListener("click", () => { view = {scale: 1, ox: 0, oy: 0}; if (pts) draw(); });
  document.getElementById("colour").addEventListener("change", () => { if (pts) { computeColours(); draw(); } });

  // For tests and scripting: where feature `id` is drawn, in CSS pixels of the page.
  window.MSMap = {
    screenPoint(id) {
      const i = pts.id.indexOf(id);
      if (i < 0) return null;
      const [x, y] = toScreen(i), r = canvas.getBoundingClientRect();
      return {x: r.left + x * r.width / canvas.width, y: r.top + y * r.height / canvas.height};
    },
    get count() { return pts ? pts.id.length : 0; },
  };

  MS.api("/api/map").then((data) => {
    pts = data;
    if (!pts.id.length) { MS.setStatus(status, "no map coordinates for this run"); return; }
    const xs = pts.x, ys = pts.y;
    bounds = {x0: Math.min(...xs), x1: Math.max(...xs), y0: Math.min(...ys), y1: Math.max(...ys)};
    if (!pts.cluster.some((c) => c !== null)) document.getElementById("colour").value = "density";
    if (pts.analysed_tokens) document.getElementById("analysed-tokens").textContent = `${MS.count(pts.analysed_tokens)} analysed`;
    computeColours(); buildGrid(); draw();
    MS.setStatus(status, `${fmt(pts.id.length)} features · ${pts.method === "umap" ? "UMAP of decoder directions" :
      "first two principal components of decoder directions (no UMAP coordinates in the database)"}`);
    canvas.dataset.ready = "1";
  }).catch((err) => MS.setStatus(status, err.message, true));
})();

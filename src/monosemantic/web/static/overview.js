/* Run overview: summary, eval table, training curves and density histogram from /api/overview. */
"use strict";
(function () {
  const {el, fmt, pct, count} = MS;
  const $ = (x) => document.getElementById(x);
  // [key, name (or a function of the metrics: each dead / silent / dense row names its token count), format]
  const EVAL_ROWS = [["l0", "L0 (active features per token)", fmt], ["variance_explained", "variance explained", (v) => pct(v, 2)],
    ["nmse", "NMSE", fmt], ["dead_fraction", (e) => `dead (no activation in the last ${count(e.dead_window_tokens)} training tokens)`, (v) => pct(v, 2)],
    ["silent_fraction", (e) => `silent on ${count(e.silent_tokens)} held-out tokens`, (v) => pct(v, 2)],
    ["dense_fraction", (e) => `dense (on > ${pct(e.dense_threshold, 0)} of ${count(e.dense_tokens)} held-out tokens)`, (v) => pct(v, 2)],
    ["loss_recovered", "loss recovered", (v) => pct(v, 2)], ["kl", "KL(clean ‖ spliced), nats", fmt], ["delta_ce", "ΔCE spliced − clean, nats", fmt],
    ["ce_clean", "CE clean", fmt], ["ce_spliced", "CE spliced", fmt], ["ce_zero", "CE zero-ablated", fmt], ["n_tokens", "tokens evaluated", fmt]];

  MS.api("/api/overview").then((o) => {
    const cards = [["model", o.model], o.hook_out ? ["transcoder", `${o.hook} → ${o.hook_out}`] : ["hook", o.hook], ["architecture", o.architecture + (o.k ? ` (k = ${o.k})` : "")],
      ["features", fmt(o.n_features)], ["input width", fmt(o.d_in)], ["analysed tokens", fmt(o.analysed_tokens)],
      ...o.never_fired.map((r) => [r.label, `${count(r.n)} (${pct(r.fraction, 1)})`]),
      ["explained", fmt(o.n_explained)]];
    for (const [k, v] of Object.entries(o.training || {})) if (v !== null && !["architecture", "n_features", "k", "model", "hook"].includes(k)) cards.push([k, typeof v === "number" ? fmt(v) : String(v)]);
    $("summary").append(...cards.map(([k, v]) => el("div", {class: "card"}, el("div", {class: "k", text: k}), el("div", {class: "v", text: v ?? "–"}))));

    const table = $("eval");
    if (o.eval) {
      for (const [key, name, f] of EVAL_ROWS) if (key in o.eval) table.append(el("tr", {dataset: {key}}, el("th", {text: typeof name === "function" ? name(o.eval) : name}), el("td", {text: f(o.eval[key])})));
      $("eval-note").textContent = o.eval_formulas ? "Loss recovered = " + (o.eval_formulas.loss_recovered || "") : "";
    } else {
      table.append(el("tr", {}, el("td", {class: "muted", text: "no eval.json: run `monosemantic eval RUN`"})));
    }

    const curves = $("curves");
    const train = o.curves.train || [], evalc = o.curves.eval || [];
    const series = (key) => [{name: "train", points: train.filter((r) => key in r).map((r) => [r.step, r[key]])},
      ...(evalc.some((r) => key in r) ? [{name: "held-out", points: evalc.filter((r) => key in r).map((r) => [r.step, r[key]])}] : [])];
    const deadWindow = [...train].reverse().find((r) => "dead_window_tokens" in r)?.dead_window_tokens ?? (o.training || {}).dead_window_tokens;
    const deadTitle = deadWindow ? `dead (no activation in the last ${count(deadWindow)} training tokens)` : "dead fraction";
    const charts = [["loss", "loss", true], ["variance_explained", "variance explained"], ["l0", "L0"], ["dead_fraction", deadTitle]];
    if (!train.length) curves.append(el("p", {class: "muted", text: "no metrics.jsonl in the run"}));
    else for (const [key, title, logY] of charts) curves.append(MS.lineChart(title + " vs step", series(key), {logY}));

    const d = o.density_histogram;
    $("density").append(MS.barChart(d.log10_edges, d.counts, {width: 640, title: "log10 feature density", yTitle: `features (max ${Math.max(...d.counts)})`,
      binLabel: (a, b) => `density 1e${a.toFixed(2)} to 1e${b.toFixed(2)}`}));
    $("density").append(el("p", {class: "muted", text: `Not shown: ${fmt(d.n_never_fired)} features that never fired in the ${count(d.n_tokens)} analysed tokens.`}));
    document.querySelector("main").classList.add("loaded");
  }).catch((err) => $("summary").append(el("p", {class: "error", text: err.message})));
})();

/* The feature list: sorted, paged, from /api/features. */
(function () {
  const {el, fmt, pct} = MS;
  const $ = (x) => document.getElementById(x);
  const PAGE = 50;
  let start = 0, total = 0;

  async function load() {
    const [sort, order] = $("sort").value.split(":");
    const q = new URLSearchParams({start, limit: PAGE, sort, order, alive: $("alive").checked});
    try {
      const r = await MS.api(`/api/features?${q}`);
      total = r.total;
      const table = MS.clear($("feature-list"));
      table.append(el("tr", {}, ["feature", "density", "max act", "mean act", "explanation"].map((h) => el("th", {text: h}))));
      r.features.forEach((f) => table.append(el("tr", {class: "hit", dataset: {feature: f.id}},
        el("td", {}, MS.featureLink(f.id)), el("td", {text: pct(f.density, 3)}), el("td", {text: fmt(f.max_act, 4)}),
        el("td", {text: fmt(f.mean_act, 4)}), el("td", {class: "label", text: f.label || ""}))));
      $("page-info").textContent = total ? `${fmt(start + 1)}–${fmt(Math.min(start + PAGE, total))} of ${fmt(total)}` : "none";
    } catch (err) {
      $("page-info").textContent = err.message;
    }
  }
  $("sort").addEventListener("change", () => { start = 0; load(); });
  $("alive").addEventListener("change", () => { start = 0; load(); });
  $("prev-page").addEventListener("click", () => { if (start > 0) { start = Math.max(0, start - PAGE); load(); } });
  $("next-page").addEventListener("click", () => { if (start + PAGE < total) { start += PAGE; load(); } });
  load();
})();

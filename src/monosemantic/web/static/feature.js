/* Feature page: everything from /api/features/{id}. */
"use strict";
(function () {
  const root = document.getElementById("feature");
  const id = Number(root.dataset.feature);
  const $ = (x) => document.getElementById(x);
  const {el, fmt, pct} = MS;

  function stats(card) {
    const items = [["max activation", fmt(card.max_act, 4)], ["density", pct(card.density, 3)],
      ["active tokens", fmt(card.count)], ["mean when active", fmt(card.mean_act, 4)]];
    if (card.count === 0) items.push(["status", `never fired in the ${card.analysed_tokens ? MS.count(card.analysed_tokens) + " " : ""}analysed tokens`]);
    $("stats").append(...items.map(([k, v]) => el("div", {class: "card"}, el("div", {class: "k", text: k}), el("div", {class: "v", text: v}))));
  }

  function histogram(card) {
    const h = card.histogram;
    if (!h || !h.edges.length || card.count === 0) { $("histogram").append(el("p", {class: "muted", text: "no activations"})); return; }
    // Log-spaced edges; counts[0] lies below edges[0]: draw it as one more bin on the left.
    const logE = h.edges.map((e) => Math.log10(e));
    const step = logE.length > 1 ? logE[1] - logE[0] : 1;
    const edges = [logE[0] - step, ...logE];
    const marks = card.intervals.map((iv) => iv.lo).filter((lo) => lo > h.edges[0]).map((lo) => ({x: Math.log10(lo)}));
    $("histogram").append(MS.barChart(edges, h.counts, {logY: true, marks, yTitle: `count (log scale, max ${Math.max(...h.counts)})`, title: "activation (log scale); dashed lines: interval bounds",
      xLabel: (t) => fmt(Math.pow(10, t), 2),
      binLabel: (a, b) => a === edges[0] ? `below ${fmt(h.edges[0], 3)}` : `[${fmt(Math.pow(10, a), 3)}, ${fmt(Math.pow(10, b), 3)})`}));
  }

  function intervals(card) {
    const table = $("intervals");
    if (card.count === 0) { table.append(el("tr", {}, el("td", {class: "muted", text: "the feature never fired: no intervals"}))); return; }
    table.append(el("tr", {}, el("th", {text: "interval"}), el("th", {text: "share"}), el("th", {text: "count"}), el("th", {})));
    const n = card.intervals.length;
    [...card.intervals].reverse().forEach((iv) => {
      const bar = el("div", {class: "sharebar"});
      bar.style.width = `${Math.max(0, Math.min(100, 100 * iv.share))}%`;
      table.append(el("tr", {class: "interval", dataset: {idx: iv.idx}},
        el("td", {text: `[${fmt(iv.lo, 3)}, ${fmt(iv.hi, 3)}${iv.idx === n - 1 ? "]" : ")"}`}),
        el("td", {class: "share", text: pct(iv.share, 1)}), el("td", {text: fmt(iv.count)}),
        el("td", {class: "barcell"}, bar)));
    });
  }

  function examples(node, list, max, empty) {
    if (!list.length) node.append(el("p", {class: "muted", text: empty}));
    list.forEach((ex) => node.append(MS.renderExample(ex, max)));
  }

  function intervalSamples(card) {
    const node = $("interval-samples");
    const n = card.intervals.length;
    [...card.intervals].reverse().filter((iv) => iv.examples.length).forEach((iv) => {
      node.append(el("h3", {text: `Interval ${iv.idx + 1} of ${n}: [${fmt(iv.lo, 3)}, ${fmt(iv.hi, 3)}${iv.idx === n - 1 ? "]" : ")"} — ${pct(iv.share, 1)} of activations`}));
      const box = el("div", {class: "examples"});
      examples(box, iv.examples, card.max_act, "");
      node.append(box);
    });
    if (!node.children.length) node.append(el("p", {class: "muted", text: "no interval samples"}));
  }

  function logits(card) {
    const item = ([tok, v]) => el("li", {}, el("code", {text: JSON.stringify(tok)}), " ", el("span", {class: "muted", text: (v >= 0 ? "+" : "") + fmt(v, 3)}));
    $("logits-up").append(...card.logits_up.map(item));
    $("logits-down").append(...card.logits_down.map(item));
  }

  function neighbours(card) {
    const names = {decoder_cosine: "by decoder cosine", cooccurrence: "by co-occurrence"};
    const node = $("neighbours");
    const kinds = Object.keys(card.neighbours);
    if (!kinds.length) node.append(el("p", {class: "muted", text: "none in the database"}));
    kinds.forEach((kind) => {
      node.append(el("h3", {text: names[kind] || kind}));
      node.append(el("ul", {class: `neighbours ${kind}`}, card.neighbours[kind].map((n) =>
        el("li", {}, MS.featureLink(n.feature, n.label), " ", el("span", {class: "muted", text: fmt(n.score, 3)})))));
    });
  }

  function explanations(card) {
    const ex = card.explanations;
    if (ex.length) {
      const last = ex[ex.length - 1];
      $("explanation").append(el("strong", {text: last.text}), " ", el("span", {class: "muted", text: `— ${last.explainer}`}));
    }
    const table = $("scores");
    if (!card.scores.length) { table.append(el("tr", {}, el("td", {class: "muted", text: "no scores yet"}))); return; }
    card.scores.forEach((s) => table.append(el("tr", {}, el("th", {text: s.scorer}), el("td", {class: "score", text: fmt(s.score, 3)}))));
  }

  function tryIt(card) {
    $("try-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const text = $("try-text").value;
      if (!text.trim()) return;
      $("try-go").disabled = true;
      MS.setStatus($("try-status"), "running the model… (the first request loads it)");
      try {
        const r = await MS.api("/api/inspect", {text, top: 1, feature: id});
        const acts = r.feature_acts, best = Math.max(0, ...acts);
        MS.setStatus($("try-status"), `max on this text ${fmt(best, 4)}` + (card.max_act > 0 ? ` (${pct(best / card.max_act, 0)} of the feature's max)` : ""));
        MS.clear($("try-result")).append(MS.renderExample({activation: best, tokens: r.tokens.map((t) => t.token), acts,
          peak: acts.indexOf(best)}, card.max_act));
      } catch (err) {
        MS.setStatus($("try-status"), err.message, true);
      } finally {
        $("try-go").disabled = false;
      }
    });
  }

  MS.api(`/api/features/${id}`).then((card) => {
    tryIt(card);
    stats(card); histogram(card); intervals(card); logits(card); neighbours(card); explanations(card);
    examples($("top"), card.top, card.max_act, "no activations in the analysed tokens");
    intervalSamples(card);
    examples($("random"), card.random, card.max_act, "none");
    root.classList.add("loaded");
  }).catch((err) => {
    root.append(el("p", {class: "error", text: err.message}));
  });
})();

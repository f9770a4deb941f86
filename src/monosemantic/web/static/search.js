/* Search page: /api/search by id, explanation words or peak token. */
"use strict";
(function () {
  const {el, fmt, pct} = MS;
  const $ = (x) => document.getElementById(x);
  const params = new URLSearchParams(location.search);

  async function run(q, kind) {
    const results = MS.clear($("results"));
    if (!q) return;
    MS.setStatus($("search-status"), "searching…");
    try {
      const r = await MS.api(`/api/search?${new URLSearchParams({q, kind})}`);
      MS.setStatus($("search-status"), `${r.hits.length} feature${r.hits.length === 1 ? "" : "s"} for ${JSON.stringify(q)}`);
      if (r.hits.length) results.append(el("tr", {}, ["feature", "match", "explanation / tokens", "max act", "density"].map((h) => el("th", {text: h}))));
      r.hits.forEach((h) => results.append(el("tr", {class: "hit", dataset: {feature: h.feature}},
        el("td", {}, MS.featureLink(h.feature)),
        el("td", {text: h.match + (h.match === "token" ? ` (${h.peaks} top examples)` : "")}),
        el("td", {text: h.match === "token" ? `${h.tokens.map((t) => JSON.stringify(t)).join(", ")}${h.text ? " — " + h.text : ""}` : (h.text || "")}),
        el("td", {text: fmt(h.max_act, 4)}), el("td", {text: pct(h.density, 3)}))));
    } catch (err) {
      MS.setStatus($("search-status"), err.message, true);
    }
  }

  $("q").value = params.get("q") || "";
  $("kind").value = params.get("kind") || "auto";
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $("q").value.trim(), kind = $("kind").value;
    history.replaceState(null, "", `/search?${new URLSearchParams({q, kind})}`);
    run(q, kind);
  });
  run($("q").value.trim(), $("kind").value);

  const lines = (id) => $(id).value.split("\n").map((s) => s.trim()).filter(Boolean);
  $("filter-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const table = MS.clear($("filter-results"));
    $("filter-go").disabled = true;
    MS.setStatus($("filter-status"), "running the model on every prompt… (the first request loads it)");
    try {
      const r = await MS.api("/api/filter", {positive: lines("positive"), negative: lines("negative"),
        threshold: Number($("threshold").value), relative: true, top: 50});
      MS.setStatus($("filter-status"), `${r.hits.length} feature${r.hits.length === 1 ? "" : "s"} pass`);
      if (r.hits.length) table.append(el("tr", {}, ["feature", "min over positives", "max over negatives", "mean over positives", "max act", "explanation"].map((h) => el("th", {text: h}))));
      r.hits.forEach((h) => table.append(el("tr", {class: "hit", dataset: {feature: h.feature}},
        el("td", {}, MS.featureLink(h.feature)), el("td", {text: fmt(h.min_positive, 4)}), el("td", {text: fmt(h.max_negative, 4)}),
        el("td", {text: fmt(h.mean_positive, 4)}), el("td", {text: fmt(h.max_act, 4)}), el("td", {class: "label", text: h.text || ""}))));
    } catch (err) {
      MS.setStatus($("filter-status"), err.message, true);
    } finally {
      $("filter-go").disabled = false;
    }
  });
})();

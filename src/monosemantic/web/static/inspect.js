/* Prompt inspector: POST /api/inspect, tokens shaded by their strongest feature; click a token
   to list its features, click a feature to open it. */
"use strict";
(function () {
  const {el, fmt, pct} = MS;
  const $ = (x) => document.getElementById(x);
  let result = null;

  function featureRows(table, feats, withToken) {
    MS.clear(table);
    if (!feats.length) { table.append(el("tr", {}, el("td", {class: "muted", text: "no feature fires here"}))); return; }
    table.append(el("tr", {}, ["feature", "activation", "of its max", ...(withToken ? ["at token", "tokens active"] : []), ""].map((h) => el("th", {text: h}))));
    const prompt = $("text").value.slice(0, 500);
    feats.forEach((f) => table.append(el("tr", {class: "hit", dataset: {feature: f.feature}},
      el("td", {}, MS.featureLink(f.feature)), el("td", {text: fmt(f.activation, 4)}),
      el("td", {text: f.relative === null ? "–" : pct(f.relative, 0)}),
      ...(withToken ? [el("td", {text: JSON.stringify(result.tokens[f.token_index].token)}), el("td", {text: fmt(f.n_tokens)})] : []),
      el("td", {}, el("a", {class: "steerlink", href: `/steer?${new URLSearchParams({f: `${f.feature}:10`, prompt})}`}, "steer")))));
  }

  function select(i) {
    document.querySelectorAll("#tokens .tok.selected").forEach((n) => n.classList.remove("selected"));
    const span = document.querySelector(`#tokens .tok[data-index="${i}"]`);
    if (span) span.classList.add("selected");
    $("token-title").textContent = `Features of token ${i}: ${JSON.stringify(result.tokens[i].token)}`;
    featureRows($("token-features"), result.tokens[i].features, false);
  }

  function render() {
    const box = MS.clear($("tokens"));
    result.tokens.forEach((t, i) => {
      const best = t.features[0];
      const span = el("span", {class: "tok" + (best ? " active" : ""), dataset: {index: i}, onclick: () => select(i)}, MS.showToken(t.token));
      if (best && best.relative !== null) span.style.background = MS.shade(best.relative, 1);
      span.addEventListener("mousemove", (e) => MS.tip(best ? `${JSON.stringify(t.token)}: #${best.feature} ${fmt(best.activation, 3)}` +
        (best.relative !== null ? ` (${pct(best.relative, 0)} of max)` : "") : `${JSON.stringify(t.token)}: no feature`, e.clientX, e.clientY));
      span.addEventListener("mouseleave", () => MS.tip(null));
      box.append(span);
    });
    featureRows($("text-features"), result.features, true);
    if (result.tokens.length) select(0);
  }

  $("inspect-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("text").value;
    if (!text.trim()) { MS.setStatus($("inspect-status"), "type some text first", true); return; }
    $("inspect-go").disabled = true;
    MS.setStatus($("inspect-status"), "running the model… (the first request loads it)");
    try {
      result = await MS.api("/api/inspect", {text, top: 10});
      MS.setStatus($("inspect-status"), `${result.tokens.length} tokens`);
      render();
    } catch (err) {
      MS.setStatus($("inspect-status"), err.message, true);
    } finally {
      $("inspect-go").disabled = false;
    }
  });
})();

/* Steering playground: features × multipliers, prompt, sampling -> POST /api/steer. */
"use strict";
(function () {
  const {el, fmt} = MS;
  const $ = (x) => document.getElementById(x);

  // What the chosen feature is: max activation, density and explanation, linked to its page.
  async function describe(input, info) {
    MS.clear(info);
    const id = input.value.trim();
    if (!/^[0-9]+$/.test(id)) return;
    try {
      const r = await MS.api(`/api/search?${new URLSearchParams({q: id, kind: "id"})}`);
      const h = r.hits[0];
      if (!h) { info.append(el("span", {class: "error", text: "no such feature"})); return; }
      info.append(MS.featureLink(h.feature), ` max ${fmt(h.max_act, 4)} · density ${MS.pct(h.density, 3)}`,
        h.text ? ` · ${h.text}` : "");
    } catch (err) { info.append(el("span", {class: "error", text: err.message})); }
  }

  function addEdit(feature, value) {
    const info = el("span", {class: "muted feat-info"});
    const input = el("input", {class: "feat", type: "number", min: 0, max: MS.nFeatures - 1, value: feature ?? "", required: true});
    input.addEventListener("change", () => describe(input, info));
    const row = el("div", {class: "edit row"},
      el("label", {}, "feature ", input),
      el("label", {}, "× max ", el("input", {class: "mult", type: "number", step: "any", value: value ?? 10, required: true})),
      el("button", {type: "button", class: "remove", onclick: () => row.remove()}, "remove"), info);
    $("edits").append(row);
    describe(input, info);
  }

  const params = new URLSearchParams(location.search);
  const initial = (params.get("f") || "").split(",").filter(Boolean);
  if (initial.length) initial.forEach((s) => { const [f, v] = s.split(":"); addEdit(f, v === undefined ? 10 : v); });
  else addEdit("", 10);
  if (params.get("prompt")) $("prompt").value = params.get("prompt");
  $("add-edit").addEventListener("click", () => addEdit("", 10));

  $("steer-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const edits = [...document.querySelectorAll("#edits .edit")].map((r) => ({
      feature: Number(r.querySelector(".feat").value), value: Number(r.querySelector(".mult").value), unit: "max"}));
    const body = {prompt: $("prompt").value, edits, mode: $("mode").value,
      max_new_tokens: Number($("max_new_tokens").value), temperature: Number($("temperature").value),
      top_p: Number($("top_p").value), seed: Number($("seed").value),
      include_special: $("include_special").checked};
    $("steer-go").disabled = true;
    MS.setStatus($("steer-status"), "generating… (the first request loads the model)");
    for (const id of ["unsteered", "steered"]) $(id).textContent = "";
    MS.clear($("side-effects"));
    try {
      const r = await MS.api("/api/steer", body);
      MS.setStatus($("steer-status"), `edits ${r.edits.join(" ")} (${r.mode})`);
      $("unsteered").append(el("span", {class: "prompt", text: r.prompt}), r.unsteered);
      $("steered").append(el("span", {class: "prompt", text: r.prompt}), r.steered);
      const rows = [["KL(clean ‖ steered) of next-token distributions over the prompt, nats", r.kl_next_token],
        ["Loss change on neutral text (steered − clean), nats", r.neutral_loss_delta],
        ["Loss on neutral text without steering, nats", r.neutral_loss_clean]];
      for (const [k, v] of rows) if (v !== undefined) $("side-effects").append(el("tr", {}, el("th", {text: k}), el("td", {text: fmt(v, 4)})));
    } catch (err) {
      MS.setStatus($("steer-status"), err.message, true);
    } finally {
      $("steer-go").disabled = false;
    }
  });
})();

/* API page: the endpoints of /openapi.json, drawn without any third-party script. */
"use strict";
(function () {
  const {el} = MS;
  MS.api("/openapi.json").then((spec) => {
    const node = document.getElementById("endpoints");
    for (const [path, methods] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(methods)) {
        const params = (op.parameters || []).map((p) => `${p.name} (${p.in}${p.required ? ", required" : ""})`);
        const body = op.requestBody ? Object.keys(op.requestBody.content || {}).join(", ") : null;
        node.append(el("div", {class: "endpoint"},
          el("h3", {}, el("code", {text: `${method.toUpperCase()} ${path}`})),
          el("p", {text: op.summary || ""}),
          params.length ? el("p", {class: "muted", text: "parameters: " + params.join(", ")}) : null,
          body ? el("p", {class: "muted", text: `body: ${body} (schema ${JSON.stringify(op.requestBody.content[body].schema)})`}) : null));
      }
    }
  });
})();

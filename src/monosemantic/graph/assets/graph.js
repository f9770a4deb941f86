// The attribution graph page (monosemantic.graph.page): SVG drawn from the embedded graph.json.
// Supernodes: groups of node ids, {name: [ids]}, kept in localStorage under the graph's key;
// a group is drawn in its members' place and its edges are the sums of theirs.
(function () {
  'use strict';
  const DATA = JSON.parse(document.getElementById('graph-data').textContent);
  const G = DATA.graph;
  const NS = 'http://www.w3.org/2000/svg';
  const GROUP = 'group:';
  const PER_LINE = 6, SPACING = 22, LINE_H = 24, ROW_PAD = 36, COL_MIN = 100;
  const MAX_SHOWN = 1500; // edges drawn at first; the slider shows the rest
  const LEFT = 64, TOP = 24, BOTTOM = 40;

  const byId = new Map(G.nodes.map(n => [n.id, n]));
  const intervention = new Map(G.interventions.map(r => [r.id, r]));
  const maxInfluence = Math.max(1e-12, ...G.nodes.map(n => Math.abs(n.influence || 0)));
  const maxWeight = Math.max(1e-12, ...G.edges.map(e => Math.abs(e.weight)));
  const svg = document.getElementById('graph');
  const panel = document.getElementById('panel');
  const slider = document.getElementById('threshold');
  const statusLine = document.getElementById('status');

  let groups = loadGroups();
  let selected = new Set();
  let pinned = null;
  let view = null; // {nodes: Map id -> {id, kind, x, y, r, el}, edges: [{..., el}], adj}

  // ----- layout: fixed positions of the graph's own nodes ---------------------------------
  const place = layout();

  function layout() {
    const layers = [...new Set(G.nodes.map(n => n.layer))].sort((a, b) => a - b);
    const nPos = Math.max(G.tokens.length, 1 + Math.max(-1, ...G.nodes.map(n => n.pos)));
    const cells = new Map();
    for (const n of G.nodes) {
      const key = n.layer + '|' + n.pos;
      if (!cells.has(key)) cells.set(key, []);
      cells.get(key).push(n);
    }
    for (const list of cells.values()) {
      list.sort((a, b) => (b.influence || 0) - (a.influence || 0) || (a.id < b.id ? -1 : 1));
    }
    const count = (layer, pos) => (cells.get(layer + '|' + pos) || []).length;
    const colW = [], colX = [];
    let x = LEFT;
    for (let p = 0; p < nPos; p++) {
      let most = 0;
      for (const l of layers) most = Math.max(most, count(l, p));
      colW.push(Math.max(COL_MIN, Math.min(most, PER_LINE) * SPACING + 16));
      colX.push(x);
      x += colW[p];
    }
    const rowH = layers.map(l => {
      let lines = 1;
      for (let p = 0; p < nPos; p++) lines = Math.max(lines, Math.ceil(count(l, p) / PER_LINE));
      return lines * LINE_H + ROW_PAD;
    });
    const height = TOP + rowH.reduce((a, b) => a + b, 0) + BOTTOM;
    const rowY = new Map();
    let y = height - BOTTOM;
    layers.forEach((l, i) => { rowY.set(l, y - rowH[i] / 2); y -= rowH[i]; });
    const pos = new Map();
    for (const list of cells.values()) {
      const n0 = list[0];
      const lines = Math.ceil(list.length / PER_LINE);
      list.forEach((n, i) => {
        const line = Math.floor(i / PER_LINE), k = i % PER_LINE;
        const inLine = Math.min(PER_LINE, list.length - line * PER_LINE);
        pos.set(n.id, {
          x: colX[n0.pos] + colW[n0.pos] / 2 + (k - (inLine - 1) / 2) * SPACING,
          y: rowY.get(n0.layer) + (line - (lines - 1) / 2) * LINE_H,
          index: i,
        });
      });
    }
    return {layers, nPos, colW, colX, rowY, width: x + 16, height, pos};
  }

  function radius(influence) {
    return 3 + 7 * Math.sqrt(Math.min(1, Math.abs(influence || 0) / maxInfluence));
  }

  // ----- groups ------------------------------------------------------------------------------
  function cleanGroups(raw) {
    // Unknown ids are dropped, a node belongs to its first group, empty groups vanish.
    const out = {}, seen = new Set();
    let dropped = 0;
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new Error('not an object');
    for (const [name, ids] of Object.entries(raw)) {
      if (!Array.isArray(ids)) throw new Error('group ' + name + ' is not a list of node ids');
      const keep = [];
      for (const id of ids) {
        if (byId.has(id) && !seen.has(id)) { keep.push(id); seen.add(id); } else dropped++;
      }
      if (keep.length) out[name] = keep;
    }
    return {groups: out, dropped};
  }

  function loadGroups() {
    try {
      const text = window.localStorage.getItem(DATA.storageKey);
      return text ? cleanGroups(JSON.parse(text)).groups : {};
    } catch (err) {
      return {};
    }
  }

  function saveGroups() {
    try {
      window.localStorage.setItem(DATA.storageKey, JSON.stringify(groups));
    } catch (err) {
      say('groups not saved: ' + err.message);
    }
  }

  function say(text) { statusLine.textContent = text; }

  function members(id) {
    return id.startsWith(GROUP) ? groups[id.slice(GROUP.length)] || [] : [id];
  }

  function groupSelected() {
    const name = document.getElementById('group-name').value.trim() ||
      'group ' + (Object.keys(groups).length + 1);
    const ids = [...selected].flatMap(members);
    if (selected.size < 2) { say('select two nodes or more (shift-click), then Group'); return; }
    if (groups[name] && !selected.has(GROUP + name)) { say('a group named ' + name + ' exists'); return; }
    for (const id of selected) if (id.startsWith(GROUP)) delete groups[id.slice(GROUP.length)];
    groups[name] = ids;
    saveGroups();
    document.getElementById('group-name').value = '';
    selected = new Set([GROUP + name]);
    pinned = GROUP + name;
    render();
    say('grouped ' + ids.length + ' nodes as ' + name);
  }

  function ungroupSelected() {
    const chosen = [...selected].filter(id => id.startsWith(GROUP));
    if (!chosen.length) { say('select a supernode, then Ungroup'); return; }
    const freed = chosen.flatMap(members);
    for (const id of chosen) delete groups[id.slice(GROUP.length)];
    saveGroups();
    selected = new Set(freed);
    pinned = null;
    render();
    say('ungrouped ' + chosen.length + ' supernode(s)');
  }

  function exportGroups() {
    const a = document.createElement('a');
    a.href = 'data:application/json;charset=utf-8,' +
      encodeURIComponent(JSON.stringify(groups, null, 1));
    a.download = 'supernodes.json';
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  function importGroups(file) {
    file.text().then(text => {
      const {groups: clean, dropped} = cleanGroups(JSON.parse(text));
      groups = clean;
      saveGroups();
      selected = new Set();
      pinned = null;
      render();
      say('imported ' + Object.keys(clean).length + ' group(s)' +
        (dropped ? ', ' + dropped + ' unknown or repeated node id(s) dropped' : ''));
    }).catch(err => say('import failed: ' + err.message));
  }

  // ----- the view: nodes with groups in their members' place, edges summed ------------------
  function buildView() {
    const owner = new Map();
    for (const [name, ids] of Object.entries(groups)) for (const id of ids) owner.set(id, GROUP + name);
    const nodes = new Map();
    for (const n of G.nodes) {
      if (owner.has(n.id)) continue;
      const p = place.pos.get(n.id);
      nodes.set(n.id, {id: n.id, kind: n.kind, x: p.x, y: p.y, r: radius(n.influence),
                       label: n.label, influence: n.influence, index: p.index});
    }
    for (const [name, ids] of Object.entries(groups)) {
      const ps = ids.map(id => place.pos.get(id));
      const influence = ids.reduce((s, id) => s + (byId.get(id).influence || 0), 0);
      nodes.set(GROUP + name, {id: GROUP + name, kind: 'group', label: name, influence,
        x: ps.reduce((s, p) => s + p.x, 0) / ps.length,
        y: ps.reduce((s, p) => s + p.y, 0) / ps.length, r: radius(influence) + 2});
    }
    const sums = new Map();
    for (const e of G.edges) {
      const s = owner.get(e.source) || e.source, t = owner.get(e.target) || e.target;
      if (s === t) continue;
      const key = s + '\u0000' + t;
      sums.set(key, (sums.get(key) || 0) + e.weight);
    }
    const edges = [...sums].map(([key, weight]) => {
      const [source, target] = key.split('\u0000');
      return {source, target, weight};
    }).sort((a, b) => Math.abs(a.weight) - Math.abs(b.weight));
    const adj = new Map([...nodes.keys()].map(id => [id, {in: [], out: []}]));
    for (const e of edges) { adj.get(e.source).out.push(e); adj.get(e.target).in.push(e); }
    return {nodes, edges, adj};
  }

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  function render() {
    view = buildView();
    selected = new Set([...selected].filter(id => view.nodes.has(id)));
    if (pinned && !view.nodes.has(pinned)) pinned = null;
    svg.textContent = '';
    svg.setAttribute('width', place.width);
    svg.setAttribute('height', place.height);
    const frame = document.createDocumentFragment();
    drawAxes(frame);
    const edgeLayer = el('g', {id: 'edges'}, frame);
    for (const e of view.edges) {
      const a = view.nodes.get(e.source), b = view.nodes.get(e.target);
      e.el = el('line', {class: 'edge ' + (e.weight >= 0 ? 'pos' : 'neg'), x1: a.x, y1: a.y,
        x2: b.x, y2: b.y, 'stroke-width': (0.5 + 4.5 * relative(e.weight)).toFixed(2),
        'stroke-opacity': (0.15 + 0.6 * relative(e.weight)).toFixed(2),
        'data-source': e.source, 'data-target': e.target, 'data-weight': e.weight}, edgeLayer);
    }
    const nodeLayer = el('g', {id: 'nodes'}, frame);
    for (const n of view.nodes.values()) drawNode(n, nodeLayer);
    svg.appendChild(frame);
    applyThreshold();
    refreshClasses();
    showPanel(pinned);
  }

  function drawAxes(frame) {
    const axes = el('g', {id: 'axes'}, frame);
    for (const [layer, y] of place.rowY) {
      const kinds = new Set(G.nodes.filter(n => n.layer === layer).map(n => n.kind));
      const name = kinds.has('token') ? 'tokens' : kinds.has('logit') ? 'logits' : 'L' + layer;
      el('line', {class: 'grid', x1: LEFT - 8, x2: place.width, y1: y, y2: y}, axes);
      el('text', {x: 6, y: y + 4}, axes).textContent = name;
    }
    for (let p = 0; p < place.nPos; p++) {
      const t = el('text', {class: 'col', x: place.colX[p] + place.colW[p] / 2,
        y: place.height - 14, 'text-anchor': 'middle', 'data-pos': p}, axes);
      const tok = p < G.tokens.length ? JSON.stringify(G.tokens[p]) : '';
      t.textContent = tok.length > 14 ? tok.slice(0, 13) + '\u2026' : tok;
    }
  }

  function drawNode(n, layer) {
    const g = el('g', {class: 'node ' + n.kind, 'data-id': n.id}, layer);
    if (n.kind === 'group') {
      const w = 2 * n.r + 8;
      el('rect', {x: n.x - w / 2, y: n.y - n.r, width: w, height: 2 * n.r, rx: 4}, g);
      el('text', {x: n.x, y: n.y - n.r - 3, 'text-anchor': 'middle'}, g).textContent = n.label;
    } else {
      el('circle', {cx: n.x, cy: n.y, r: n.r}, g);
      if (n.kind === 'logit') {
        // Neighbouring logits' labels alternate in height so that they do not overlap.
        el('text', {x: n.x, y: n.y - n.r - 3 - 12 * (n.index % 2), 'text-anchor': 'middle'},
          g).textContent = n.label;
      }
    }
    el('title', {}, g).textContent = n.label;
    g.addEventListener('mouseenter', () => { focus(n.id); showPanel(n.id); });
    g.addEventListener('mouseleave', () => { focus(pinned); showPanel(pinned); });
    g.addEventListener('click', ev => {
      ev.stopPropagation();
      if (ev.shiftKey) {
        if (selected.has(n.id)) selected.delete(n.id); else selected.add(n.id);
      } else {
        selected = new Set([n.id]);
        pinned = n.id;
      }
      refreshClasses();
      focus(pinned || n.id);
      showPanel(pinned || n.id);
    });
    n.el = g;
  }

  function refreshClasses() {
    for (const n of view.nodes.values()) {
      n.el.classList.toggle('sel', selected.has(n.id));
      n.el.classList.toggle('pinned', n.id === pinned);
    }
    document.getElementById('ungroup').disabled =
      ![...selected].some(id => id.startsWith(GROUP));
  }

  let focused = [];
  function focus(id) {
    for (const x of focused) x.classList.remove('hl');
    focused = [];
    svg.classList.toggle('focus', Boolean(id));
    if (!id || !view.nodes.has(id)) return;
    const a = view.adj.get(id);
    for (const e of a.in.concat(a.out)) {
      focused.push(e.el, view.nodes.get(e.source).el, view.nodes.get(e.target).el);
    }
    focused.push(view.nodes.get(id).el);
    for (const x of focused) x.classList.add('hl');
  }

  function relative(weight) { return Math.min(1, Math.abs(weight) / maxWeight); }

  function initialThreshold() {
    if (G.edges.length <= MAX_SHOWN) return 0;
    const w = G.edges.map(e => Math.abs(e.weight)).sort((a, b) => b - a)[MAX_SHOWN - 1];
    return Math.ceil(Number(slider.max) * w / maxWeight);
  }

  function threshold() { return maxWeight * Number(slider.value) / Number(slider.max); }

  function applyThreshold() {
    const thr = threshold();
    let shown = 0;
    for (const e of view.edges) {
      const off = Math.abs(e.weight) < thr;
      e.el.classList.toggle('off', off);
      if (!off) shown++;
    }
    document.getElementById('threshold-value').textContent = thr.toPrecision(3);
    document.getElementById('edge-count').textContent =
      shown + ' of ' + view.edges.length + ' edges shown';
  }

  svg.addEventListener('click', () => {
    selected = new Set();
    pinned = null;
    refreshClasses();
    focus(null);
    showPanel(null);
  });

  // ----- the side panel ------------------------------------------------------------------
  function h(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  function fmt(x) {
    return typeof x === 'number' && isFinite(x) ? Number(x.toPrecision(3)).toString() : 'n/a';
  }

  function showPanel(id) {
    panel.textContent = '';
    if (!id || !view.nodes.has(id)) {
      panel.appendChild(h('p', 'Hover or click a node; shift-click to select several.', 'dim'));
      return;
    }
    const v = view.nodes.get(id);
    panel.appendChild(h('h2', v.label));
    if (v.kind === 'group') {
      panel.appendChild(h('p', 'supernode of ' + members(id).length + ' nodes, influence ' +
        fmt(v.influence)));
      const ul = h('ul', undefined, 'members');
      for (const m of members(id)) ul.appendChild(h('li', byId.get(m).label));
      panel.appendChild(ul);
    } else {
      const n = byId.get(id);
      const tok = n.pos < G.tokens.length ? JSON.stringify(G.tokens[n.pos]) : '?';
      panel.appendChild(h('p', n.kind + ' \u00b7 layer ' + n.layer + ' \u00b7 position ' + n.pos +
        ' ' + tok + ' \u00b7 activation ' + fmt(n.activation) + ' \u00b7 influence ' +
        fmt(n.influence)));
      const iv = intervention.get(id);
      if (iv) {
        panel.appendChild(h('p', 'intervention: predicted ' + fmt(iv.predicted) +
          ', measured ' + fmt(iv.measured)));
      }
      if (n.kind === 'feature') panel.appendChild(featureCard(n));
    }
    edgeTable('strongest inputs', view.adj.get(id).in, 'source');
    edgeTable('strongest outputs', view.adj.get(id).out, 'target');
  }

  function featureCard(n) {
    const box = h('div', undefined, 'card');
    const index = DATA.cardOf[n.id];
    if (index === undefined) {
      const msg = h('p', undefined, 'missing');
      if (n.run && DATA.dbExists[n.run] === false) {
        msg.append('no feature database: run ');
        msg.appendChild(h('code', 'monosemantic analyze ' + n.run));
      } else {
        msg.textContent = 'no card for this feature in this page' +
          (n.run ? ' (run ' + n.run + ')' : '');
      }
      box.appendChild(msg);
      return box;
    }
    const card = DATA.cards[index];
    if (card.error) { box.appendChild(h('p', card.error, 'missing')); return box; }
    box.appendChild(h('p', 'feature #' + card.feature + ' of ' + card.run));
    if (card.explanation) box.appendChild(h('p', card.explanation, 'explanation'));
    box.appendChild(h('p', 'density ' + (100 * card.density).toPrecision(3) + '% (' +
      card.count + ' tokens) \u00b7 max activation ' + fmt(card.max_act), 'density'));
    if (card.top_tokens.length) {
      const p = h('p', 'top tokens ', 'top-tokens');
      for (const [text, count] of card.top_tokens) {
        p.appendChild(h('span', JSON.stringify(text) + ' \u00d7' + count, 'chip'));
      }
      box.appendChild(p);
    }
    if (!card.count) box.appendChild(h('p', 'never fired in the analysed tokens', 'dim'));
    if (card.examples.length) box.appendChild(h('h3', 'top activations'));
    for (const ex of card.examples) {
      const line = h('div', undefined, 'ex');
      ex.tokens.forEach((t, i) => {
        let text = t.replace(/\n/g, '\u23ce');
        // A blank peak token would be an empty box: show its spaces.
        if (i === ex.peak && !text.trim()) text = text.replace(/ /g, '\u2423') || '\u2205';
        const span = h('span', text);
        const a = ex.acts[i];
        if (a > 0 && card.max_act > 0) {
          span.style.background = 'rgba(232,131,58,' + Math.min(1, a / card.max_act).toFixed(2) + ')';
        }
        if (i === ex.peak) span.className = 'peak';
        span.title = fmt(a);
        line.appendChild(span);
      });
      box.appendChild(line);
    }
    if (card.logits_up && card.logits_up.length) {
      box.appendChild(h('p', 'promotes ' + card.logits_up.map(([t, v]) =>
        JSON.stringify(t) + ' ' + fmt(v)).join(', '), 'logits'));
    }
    if (card.logits_down && card.logits_down.length) {
      box.appendChild(h('p', 'suppresses ' + card.logits_down.map(([t, v]) =>
        JSON.stringify(t) + ' ' + fmt(v)).join(', '), 'logits'));
    }
    return box;
  }

  function edgeTable(title, edges, end) {
    if (!edges.length) return;
    panel.appendChild(h('h3', title + ' (' + edges.length + ')'));
    const table = h('table', undefined, 'edges');
    const top = edges.slice().sort((a, b) => Math.abs(b.weight) - Math.abs(a.weight)).slice(0, 8);
    for (const e of top) {
      const tr = h('tr');
      tr.appendChild(h('td', view.nodes.get(e[end]).label));
      tr.appendChild(h('td', fmt(e.weight), 'w'));
      table.appendChild(tr);
    }
    panel.appendChild(table);
  }

  // ----- wiring ---------------------------------------------------------------------------
  slider.addEventListener('input', applyThreshold);
  document.getElementById('group').addEventListener('click', groupSelected);
  document.getElementById('ungroup').addEventListener('click', ungroupSelected);
  document.getElementById('export').addEventListener('click', exportGroups);
  document.getElementById('import').addEventListener('change', ev => {
    if (ev.target.files.length) importGroups(ev.target.files[0]);
    ev.target.value = '';
  });
  slider.value = initialThreshold();
  if (DATA.droppedEdges) say(DATA.droppedEdges + ' edge(s) with unknown ends not drawn');
  render();
}());

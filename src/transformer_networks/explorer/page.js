"use strict";
// The attention explorer's page script. The data (see explorer/__init__.py) arrives inline in #explorer-data, or from
// POST /api/explore in the live mode. Weights are unpacked one layer at a time, when a view first needs that layer.

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"];
const KIND_NAMES = { encoder: "encoder self", decoder: "decoder self (causal)", cross: "cross" };
const VIEWS = [["head", "Head view"], ["model", "Model view"], ["heatmap", "Heatmap"], ["table", "Heads"]];
const LINE_MIN = 0.01;   // the head view draws no line for a weight under this
const LINE_MIN_ALL = 0.05; // ... nor, while no token is hovered, under this (keeps long inputs fast)

let data = null;
const state = { kind: null, view: "head", layer: 0, head: 0, heads: new Set(), shown: 0, hover: null, sort: null };
let unpacked = new Map(); // "kind/layer" -> {offsets, cols, vals}

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
};
const SVG_NS = "http://www.w3.org/2000/svg";
const svgEl = (tag, attrs = {}) => {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
};
const fmt = (w) => w.toFixed(3);
// A token as the page writes it: spaces, newlines and tabs made visible.
const shown = (token) => token.replace(/ /g, "\u2423").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5");

// --- the weights ---------------------------------------------------------------------------------------------------

function layerWeights(kind, layer) {
  // One layer of one kind: per (head, query) row, offsets into the key indices and values kept for it.
  const key = kind + "/" + layer;
  if (!unpacked.has(key)) {
    const k = data.kinds[kind];
    const bytes = Uint8Array.from(atob(k.layers[layer]), (c) => c.charCodeAt(0));
    const words = new Uint16Array(bytes.buffer);
    const rows = data.model.heads * k.queries.length;
    const offsets = new Uint32Array(rows + 1);
    for (let r = 0; r < rows; r++) offsets[r + 1] = offsets[r] + words[r];
    const n = offsets[rows];
    unpacked.set(key, { offsets, cols: words.subarray(rows, rows + n), vals: words.subarray(rows + n, rows + 2 * n) });
  }
  return unpacked.get(key);
}

function rowOf(kind, layer, head, query) {
  // [key index, weight] of each weight kept in one query's row.
  const w = layerWeights(kind, layer), r = head * data.kinds[kind].queries.length + query, out = [];
  for (let i = w.offsets[r]; i < w.offsets[r + 1]; i++) out.push([w.cols[i], w.vals[i] / data.scale]);
  return out;
}

function weightAt(kind, layer, head, query, key) {
  for (const [j, v] of rowOf(kind, layer, head, query)) if (j === key) return v;
  return 0;
}

// How many queries and keys the views show: all, except a language model stepping through its continuation.
function extent() {
  const k = data.kinds[state.kind];
  if (stepping() && state.kind === "decoder") return [state.shown, state.shown];
  return [k.queries.length, k.keys.length];
}
const stepping = () => data.model.family === "lm" && data.outputs.prompt_tokens < data.kinds.decoder.queries.length;

// --- controls ------------------------------------------------------------------------------------------------------

function button(label, pressed, onclick, attrs = {}) {
  return el("button", { type: "button", "aria-pressed": String(pressed), onclick, ...attrs }, label);
}

function drawControls() {
  const kinds = $("kinds"); kinds.replaceChildren();
  for (const kind of Object.keys(data.kinds)) {
    kinds.append(button(KIND_NAMES[kind], kind === state.kind, () => update({ kind }), { "data-kind": kind }));
  }
  const views = $("views"); views.replaceChildren();
  for (const [view, label] of VIEWS) {
    views.append(button(label, view === state.view, () => update({ view }), { "data-view": view }));
  }
  const layers = $("layers"); layers.replaceChildren();
  for (let l = 0; l < data.model.layers; l++) {
    layers.append(button(String(l), l === state.layer, () => update({ layer: l }), { "data-layer": l }));
  }
  const heads = $("heads"); heads.replaceChildren();
  for (let h = 0; h < data.model.heads; h++) {
    // The head view shows several heads (click toggles one; the focused head is the heatmap's); other views one.
    const on = state.view === "head" ? state.heads.has(h) : h === state.head;
    const b = button(String(h), on, () => {
      if (state.view === "head") {
        if (state.heads.has(h) && state.heads.size > 1) state.heads.delete(h); else state.heads.add(h);
        update({ head: h });
      } else update({ head: h, heads: new Set([h]) });
    }, { "data-head": h, class: "head", style: `border-color:${COLORS[h % COLORS.length]}` });
    heads.append(b);
  }
  $("stepper").hidden = !stepping();
  if (stepping()) {
    const step = $("step"), total = data.kinds.decoder.queries.length, prompt = data.outputs.prompt_tokens;
    step.min = prompt; step.max = total; step.value = state.shown;
    $("step-label").textContent = `${prompt} tokens of text + ${state.shown - prompt} of ${total - prompt} ` +
      "greedy continuation tokens";
  }
}

function update(change) {
  const kindChanged = change.kind && change.kind !== state.kind;
  Object.assign(state, change);
  if (kindChanged) state.hover = null;
  state.layer = Math.max(0, Math.min(data.model.layers - 1, state.layer));
  state.head = (state.head + data.model.heads) % data.model.heads;
  if (state.heads.size === 0) state.heads.add(state.head);
  render();
}

function render() {
  drawControls();
  const view = $("view"); view.replaceChildren();
  const draw = { head: drawHeadView, model: drawModelView, heatmap: drawHeatmap, table: drawTable }[state.view];
  draw(view);
  drawOutputs();
  document.body.dataset.rendered = String(performance.now());
}

// --- head view: tokens in two columns, a line per weight, heads as colours -----------------------------------------

function drawHeadView(view) {
  const k = data.kinds[state.kind], [nq, nk] = extent(), rowH = 18, colW = 150, gap = 220;
  const height = Math.max(nq, nk) * rowH + 24, width = 2 * colW + gap;
  const svg = svgEl("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "tokens", id: "headview" });
  const style = svgEl("style"); // for the exported SVG, which has no page styles
  style.textContent = ".token{font:12px ui-monospace,monospace}.hot{font-weight:bold;fill:#b00020}.new{fill:#2a7a2a}";
  svg.append(style);
  const lines = svgEl("g");
  svg.append(lines);
  const hover = state.hover;
  for (const h of [...state.heads].sort((a, b) => a - b)) {
    for (let i = 0; i < nq; i++) {
      if (hover && hover.side === "q" && hover.index !== i) continue;
      for (const [j, w] of rowOf(state.kind, state.layer, h, i)) {
        if (j >= nk || w < (hover ? LINE_MIN : LINE_MIN_ALL)) continue;
        if (hover && hover.side === "k" && hover.index !== j) continue;
        lines.append(svgEl("line", {
          x1: colW, y1: 20 + i * rowH, x2: colW + gap, y2: 20 + j * rowH, stroke: COLORS[h % COLORS.length],
          "stroke-width": 2, "stroke-opacity": Math.max(w, 0.05).toFixed(3), "data-head": h, "data-query": i,
          "data-key": j, "data-weight": fmt(w),
        }));
      }
    }
  }
  const label = (text, x, y, anchor, side, index) => {
    const t = svgEl("text", { x, y, "text-anchor": anchor, class: "token", "data-side": side, "data-index": index });
    if (hover && hover.side === side && hover.index === index) t.classList.add("hot");
    if (stepping() && state.kind === "decoder" && index >= data.outputs.prompt_tokens) t.classList.add("new");
    t.textContent = shown(text);
    t.addEventListener("mouseenter", () => { state.hover = { side, index }; redrawKeepingScroll(); });
    t.addEventListener("mouseleave", () => { state.hover = null; redrawKeepingScroll(); });
    return t;
  };
  svg.append(Object.assign(svgEl("text", { x: colW - 6, y: 10, "text-anchor": "end" }), { textContent: "queries" }));
  svg.append(Object.assign(svgEl("text", { x: colW + gap + 6, y: 10 }), { textContent: "keys" }));
  for (let i = 0; i < nq; i++) svg.append(label(k.queries[i], colW - 6, 24 + i * rowH, "end", "q", i));
  for (let j = 0; j < nk; j++) svg.append(label(k.keys[j], colW + gap + 6, 24 + j * rowH, "start", "k", j));
  view.append(svg);
  if (hover) {
    const tokens = hover.side === "q" ? k.queries : k.keys;
    setReadout(`${hover.side === "q" ? "query" : "key"} ${hover.index} '${shown(tokens[hover.index])}': lines of ` +
      `${state.heads.size} head(s), layer ${state.layer}`);
  }
}

function redrawKeepingScroll() {
  const view = $("view"), top = view.scrollTop, left = view.scrollLeft;
  view.replaceChildren();
  drawHeadView(view);
  drawOutputs();
  view.scrollTop = top; view.scrollLeft = left;
}

// --- model view: layers x heads, small heatmaps drawn as they scroll into sight --------------------------------------

function paint(canvas, kind, layer, head, nq, nk, cell) {
  // Draw one head's weights into a canvas, `cell` pixels per weight (or shrunk to fit when cell < 1).
  const w = Math.max(1, Math.round(nk * cell)), hgt = Math.max(1, Math.round(nq * cell));
  canvas.width = w; canvas.height = hgt;
  const ctx = canvas.getContext("2d"), image = ctx.createImageData(w, hgt), px = image.data;
  for (let i = 0; i < px.length; i += 4) { px[i] = px[i + 1] = px[i + 2] = 255; px[i + 3] = 255; }
  for (let i = 0; i < nq; i++) {
    for (const [j, v] of rowOf(kind, layer, head, i)) {
      if (j >= nk) continue;
      const x0 = Math.floor(j * cell), y0 = Math.floor(i * cell);
      const x1 = Math.max(x0 + 1, Math.floor((j + 1) * cell)), y1 = Math.max(y0 + 1, Math.floor((i + 1) * cell));
      const shade = Math.round(255 * (1 - v));
      for (let y = y0; y < Math.min(y1, hgt); y++) {
        for (let x = x0; x < Math.min(x1, w); x++) {
          const p = (y * w + x) * 4;
          if (px[p + 1] > shade) { px[p] = Math.round(255 - v * 225); px[p + 1] = shade; px[p + 2] = Math.round(255 - v * 87); }
        }
      }
    }
  }
  ctx.putImageData(image, 0, 0);
}

function drawModelView(view) {
  const [nq, nk] = extent(), size = 96, cell = Math.min(8, size / Math.max(nq, nk));
  const grid = el("div", { class: "grid", id: "modelview", style: `grid-template-columns: 3rem repeat(${data.model.heads}, auto)` });
  grid.append(el("div"));
  for (let h = 0; h < data.model.heads; h++) grid.append(el("div", { class: "cell" }, `head ${h}`));
  const observer = new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (!e.isIntersecting) continue;
      const c = e.target; observer.unobserve(c);
      paint(c, state.kind, +c.dataset.layer, +c.dataset.head, nq, nk, cell);
    }
  }, { root: view, rootMargin: "200px" });
  for (let l = 0; l < data.model.layers; l++) {
    grid.append(el("div", { class: "cell" }, `layer ${l}`));
    for (let h = 0; h < data.model.heads; h++) {
      const canvas = el("canvas", { width: Math.round(nk * cell), height: Math.round(nq * cell), "data-layer": l, "data-head": h,
        title: `layer ${l}, head ${h}: click to enlarge` });
      const current = l === state.layer && h === state.head;
      grid.append(el("div", { class: "cell" + (current ? " current" : ""),
        onclick: () => update({ layer: l, head: h, heads: new Set([h]), view: "heatmap" }) }, canvas));
      observer.observe(canvas);
    }
  }
  view.append(grid);
}

// --- heatmap: one head, the value under the pointer, its row and column highlighted ---------------------------------

function drawHeatmap(view) {
  const k = data.kinds[state.kind], [nq, nk] = extent();
  const cell = Math.max(2, Math.min(24, Math.floor(720 / Math.max(nq, nk))));
  const margin = cell >= 10 ? 110 : 0; // token labels when there is room for them
  const wrap = el("div", { class: "heatmap-wrap" });
  const canvas = el("canvas", { id: "heatmap" }), overlay = el("canvas", { id: "overlay" });
  const full = document.createElement("canvas");
  paint(full, state.kind, state.layer, state.head, nq, nk, cell);
  canvas.width = overlay.width = margin + nk * cell; canvas.height = overlay.height = margin + nq * cell;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(full, margin, margin);
  if (margin) {
    ctx.fillStyle = "#1d1d1f"; ctx.font = `${Math.min(12, cell)}px ui-monospace, monospace`;
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (let i = 0; i < nq; i++) ctx.fillText(shown(k.queries[i]), margin - 4, margin + (i + 0.5) * cell, margin - 6);
    for (let j = 0; j < nk; j++) {
      ctx.save(); ctx.translate(margin + (j + 0.5) * cell, margin - 4); ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "left"; ctx.fillText(shown(k.keys[j]), 0, 0, margin - 6); ctx.restore();
    }
  }
  Object.assign(canvas.dataset, { cell, margin, queries: nq, keys: nk });
  const octx = overlay.getContext("2d");
  canvas.addEventListener("mousemove", (e) => {
    const r = canvas.getBoundingClientRect();
    const j = Math.floor((e.clientX - r.left - margin) / cell), i = Math.floor((e.clientY - r.top - margin) / cell);
    octx.clearRect(0, 0, overlay.width, overlay.height);
    if (i < 0 || j < 0 || i >= nq || j >= nk) { setReadout(" "); return; }
    octx.fillStyle = "rgba(255, 200, 0, 0.25)";
    octx.fillRect(margin, margin + i * cell, nk * cell, cell);
    octx.fillRect(margin + j * cell, margin, cell, nq * cell);
    octx.strokeStyle = "#b00020"; octx.strokeRect(margin + j * cell + 0.5, margin + i * cell + 0.5, cell - 1, cell - 1);
    const w = weightAt(state.kind, state.layer, state.head, i, j);
    state.hover = { side: "q", index: i };
    setReadout(`layer ${state.layer} head ${state.head}: query ${i} '${shown(k.queries[i])}' \u2192 key ${j} ` +
      `'${shown(k.keys[j])}' = `, fmt(w), { query: i, key: j });
    drawOutputs();
  });
  canvas.addEventListener("mouseleave", () => { octx.clearRect(0, 0, overlay.width, overlay.height); });
  wrap.append(canvas, overlay);
  view.append(wrap);
}

function setReadout(text, value = null, where = null) {
  const r = $("readout"); r.replaceChildren(text);
  if (value !== null) r.append(el("b", { id: "readout-value" }, value));
  if (where) Object.assign(r.dataset, where); else { delete r.dataset.query; delete r.dataset.key; }
}

// --- heads table: entropy, mean distance and previous-token weight, sortable ----------------------------------------

function headRows() {
  const k = data.kinds[state.kind], [nq] = extent(), rows = [];
  const mean = (xs, from) => { let s = 0; for (let i = from; i < nq; i++) s += xs[i]; return nq > from ? s / (nq - from) : 0; };
  for (let l = 0; l < data.model.layers; l++) {
    for (let h = 0; h < data.model.heads; h++) {
      const row = { layer: l, head: h, entropy: mean(k.stats.entropy[l][h], 0) };
      if (k.stats.distance) { row.distance = mean(k.stats.distance[l][h], 0); row.previous = mean(k.stats.previous[l][h], 1); }
      rows.push(row);
    }
  }
  return rows;
}

function drawTable(view) {
  const rows = headRows(), cols = ["layer", "head", "entropy"];
  if (data.kinds[state.kind].stats.distance) cols.push("distance", "previous");
  if (state.sort) {
    const [col, dir] = state.sort;
    rows.sort((a, b) => dir * (a[col] - b[col]) || a.layer - b.layer || a.head - b.head);
  }
  const titles = { entropy: "mean entropy (nats)", distance: "mean distance (tokens)", previous: "weight on the previous token" };
  const head = el("tr");
  for (const c of cols) {
    const arrow = state.sort && state.sort[0] === c ? (state.sort[1] > 0 ? " \u25B2" : " \u25BC") : "";
    head.append(el("th", { "data-col": c, title: "sort", onclick: () => update({ sort: [c, state.sort && state.sort[0] === c ? -state.sort[1] : 1] }) },
      (titles[c] || c) + arrow));
  }
  const body = el("tbody");
  for (const r of rows) {
    const tr = el("tr", { "data-layer": r.layer, "data-head": r.head,
      onclick: () => update({ layer: r.layer, head: r.head, heads: new Set([r.head]), view: "heatmap" }) });
    if (r.layer === state.layer && r.head === state.head) tr.className = "current";
    for (const c of cols) tr.append(el("td", { "data-col": c }, c === "layer" || c === "head" ? String(r[c]) : r[c].toFixed(3)));
    body.append(tr);
  }
  view.append(el("p", {}, "Low entropy: a sharp head. Large distance: a broad head. A previous-token weight near 1: " +
    "a previous-token head. Click a column to sort, a row to see the head."));
  view.append(el("table", { class: "heads", id: "heads-table" }, el("thead", {}, head), body));
}

// --- the model's outputs -------------------------------------------------------------------------------------------

function bars(title, items, picked = null) {
  const box = el("div", {}, el("h2", {}, title));
  for (const [name, p] of items) {
    box.append(el("div", { class: "bar" + (name === picked ? " picked" : ""), "data-token": name },
      el("span", { class: "tok" }, shown(name)), el("span", {}, el("div", { class: "fill", style: `width:${(100 * p).toFixed(1)}%` })),
      el("span", { class: "num" }, p.toFixed(4))));
  }
  return box;
}

function drawOutputs() {
  const out = data.outputs, box = $("outputs"); box.replaceChildren();
  if (out.next && state.kind !== "encoder") {
    const k = data.kinds.decoder, [nq] = stepping() ? [state.shown] : [k.queries.length];
    const i = state.hover && state.hover.side === "q" ? Math.min(state.hover.index, nq - 1) : nq - 1;
    const following = i + 1 < k.queries.length ? k.queries[i + 1] : null;
    const items = bars(`next token after ${i} '${shown(k.queries[i])}'`, out.next[i], following);
    items.id = "next-tokens";
    box.append(items);
    if (following !== null) box.append(el("p", {}, `the sequence goes on with '${shown(following)}' (in bold when among these)`));
  }
  if (out.translation !== undefined) {
    box.append(el("h2", {}, out.forced ? "Target (given)" : "Translation (greedy)"), el("p", { id: "translation" }, out.translation));
  }
  if (out.classes) { const b = bars("Class probabilities", out.classes); b.id = "classes"; box.append(b); }
  if (out.answer) {
    const a = out.answer, ctx = out.context;
    const p = el("p", { id: "context" });
    if (a.start === null) p.append(ctx); else p.append(ctx.slice(0, a.start), el("mark", { class: "answer", id: "answer" }, a.text), ctx.slice(a.end));
    box.append(el("h2", {}, "Answer"), el("p", {}, a.text ? `"${a.text}" (score ${a.score.toFixed(2)})` : "no answer"), p);
  }
}

// --- export --------------------------------------------------------------------------------------------------------

function viewSVG() {
  // The current view as an SVG document (text).
  const k = data.kinds[state.kind], [nq, nk] = extent(), esc = (s) => s.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);
  if (state.view === "head") return new XMLSerializer().serializeToString($("headview"));
  if (state.view === "heatmap") {
    const cell = 12, m = 110, parts = [];
    for (let i = 0; i < nq; i++) {
      parts.push(`<text x="${m - 4}" y="${m + i * cell + 9}" text-anchor="end">${esc(shown(k.queries[i]))}</text>`);
      for (const [j, v] of rowOf(state.kind, state.layer, state.head, i)) {
        if (j < nk) parts.push(`<rect x="${m + j * cell}" y="${m + i * cell}" width="${cell}" height="${cell}" fill="#4c1e8f" fill-opacity="${v.toFixed(3)}"><title>${v.toFixed(3)}</title></rect>`);
      }
    }
    for (let j = 0; j < nk; j++) parts.push(`<text transform="translate(${m + j * cell + 9},${m - 4}) rotate(-90)">${esc(shown(k.keys[j]))}</text>`);
    const w = m + nk * cell, h = m + nq * cell;
    return `<svg xmlns="${SVG_NS}" width="${w}" height="${h}" font-family="monospace" font-size="10"><rect width="${w}" height="${h}" fill="#fff"/>${parts.join("")}</svg>`;
  }
  if (state.view === "model") {
    const size = 100, parts = [];
    document.querySelectorAll("#modelview canvas").forEach((c) => {
      paint(c, state.kind, +c.dataset.layer, +c.dataset.head, nq, nk, Math.min(8, 96 / Math.max(nq, nk)));
      parts.push(`<image x="${40 + c.dataset.head * size}" y="${20 + c.dataset.layer * size}" width="96" height="96" href="${c.toDataURL()}"/>`);
    });
    for (let l = 0; l < data.model.layers; l++) parts.push(`<text x="0" y="${70 + l * size}">L${l}</text>`);
    for (let h = 0; h < data.model.heads; h++) parts.push(`<text x="${80 + h * size}" y="14">H${h}</text>`);
    const w = 40 + data.model.heads * size, h = 20 + data.model.layers * size;
    return `<svg xmlns="${SVG_NS}" width="${w}" height="${h}" font-family="sans-serif" font-size="12"><rect width="${w}" height="${h}" fill="#fff"/>${parts.join("")}</svg>`;
  }
  const rows = headRows(), cols = Object.keys(rows[0]), lines = [];
  cols.forEach((c, x) => lines.push(`<text x="${10 + x * 90}" y="18" font-weight="bold">${c}</text>`));
  rows.forEach((r, y) => cols.forEach((c, x) => lines.push(`<text x="${10 + x * 90}" y="${36 + y * 16}">${c === "layer" || c === "head" ? r[c] : r[c].toFixed(3)}</text>`)));
  const w = 20 + cols.length * 90, h = 44 + rows.length * 16;
  return `<svg xmlns="${SVG_NS}" width="${w}" height="${h}" font-family="sans-serif" font-size="12"><rect width="${w}" height="${h}" fill="#fff"/>${lines.join("")}</svg>`;
}

function download(name, blob) {
  const a = el("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function exportName(ext) { return `attention-${state.kind}-${state.view}-layer${state.layer}-head${state.head}.${ext}`; }

function exportSVG() { download(exportName("svg"), new Blob([viewSVG()], { type: "image/svg+xml" })); }

function exportPNG() {
  if (state.view === "heatmap") { $("heatmap").toBlob((b) => download(exportName("png"), b)); return; }
  const svg = viewSVG(), img = new Image();
  img.onload = () => {
    const c = document.createElement("canvas"); c.width = img.width; c.height = img.height;
    const ctx = c.getContext("2d"); ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, c.width, c.height); ctx.drawImage(img, 0, 0);
    c.toBlob((b) => download(exportName("png"), b));
  };
  img.src = URL.createObjectURL(new Blob([svg], { type: "image/svg+xml" }));
}

// --- keys, live mode, start ------------------------------------------------------------------------------------------

document.addEventListener("keydown", (e) => {
  if (!data || e.target.closest("input, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
  const kinds = Object.keys(data.kinds), step = (n) => update({ shown: Math.max(data.outputs.prompt_tokens, Math.min(data.kinds.decoder.queries.length, state.shown + n)) });
  const keys = {
    ArrowLeft: () => update({ head: state.head - 1, heads: new Set([(state.head - 1 + data.model.heads) % data.model.heads]) }),
    ArrowRight: () => update({ head: state.head + 1, heads: new Set([(state.head + 1) % data.model.heads]) }),
    ArrowUp: () => update({ layer: state.layer - 1 }),
    ArrowDown: () => update({ layer: state.layer + 1 }),
    k: () => update({ kind: kinds[(kinds.indexOf(state.kind) + 1) % kinds.length] }),
    "[": () => stepping() && step(-1),
    "]": () => stepping() && step(1),
  };
  VIEWS.forEach(([view], i) => { keys[String(i + 1)] = () => update({ view }); });
  if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
});

function show(newData) {
  data = newData; unpacked = new Map();
  const m = data.model, kinds = Object.keys(data.kinds);
  $("model-info").textContent = `${m.path}: ${m.task} (${m.family}), ${m.layers} layers x ${m.heads} heads, ` +
    `d_model ${m.d_model}, ${(m.params / 1e6).toFixed(2)}M parameters`;
  $("threshold-note").textContent = `Weights are rounded to 1/${data.scale}; weights under ${data.min_weight} are ` +
    "left out of this page and shown as 0.";
  state.kind = kinds.includes("cross") ? "cross" : kinds[0];
  state.layer = 0; state.head = 0; state.heads = new Set([0]); state.hover = null; state.sort = null;
  state.shown = data.kinds.decoder ? data.kinds.decoder.queries.length : 0;
  render();
}

$("step").addEventListener("input", (e) => update({ shown: +e.target.value }));
$("step-back").addEventListener("click", () => update({ shown: Math.max(data.outputs.prompt_tokens, state.shown - 1) }));
$("step-forward").addEventListener("click", () => update({ shown: Math.min(data.kinds.decoder.queries.length, state.shown + 1) }));
$("export-png").addEventListener("click", () => data && exportPNG());  // nothing to export before a first run
$("export-svg").addEventListener("click", () => data && exportSVG());

function liveForm(family) {
  $("live").hidden = false;
  $("live-target-row").hidden = family !== "seq2seq";
  $("live-context-row").hidden = family !== "qa";
  $("live").addEventListener("submit", async (e) => {
    e.preventDefault();
    const status = $("live-status"), body = { text: $("live-text").value };
    if (family === "seq2seq" && $("live-target").value.trim()) body.target = $("live-target").value;
    if (family === "qa") body.context = $("live-context").value;
    status.className = ""; status.textContent = "running the model\u2026";
    try {
      const r = await fetch("api/explore", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const answer = await r.json();
      if (!r.ok) throw new Error(answer.error || r.statusText);
      show(answer); status.textContent = "";
    } catch (err) { status.className = "error"; status.textContent = String(err.message || err); }
  });
}

const initial = JSON.parse($("explorer-data").textContent);
if (LIVE) liveForm(LIVE.family);
if (initial) {
  if (LIVE) {
    $("live-text").value = initial.input.text || "";
    $("live-target").value = initial.input.target || "";
    $("live-context").value = initial.input.context || "";
  }
  show(initial);
} else {
  $("view").textContent = "Type a text above and run the model.";
}

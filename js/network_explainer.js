// @ts-check
// The NetworkExplainer (CNN Explainer, Wang et al. 2020, for any model): every layer for one input as columns in
// forward order (feature maps as small images, vectors as heat strips, the output as class probabilities);
// residual blocks boxed with their skip; a click on a unit shows its arithmetic as Python computed it from the
// model (the front end only displays numbers), a conv's kernel sliding over its input. The input comes from the
// gallery or a drawing (throttled: one request in flight). In a static page (save_html) the arithmetic of the
// embedded inputs is read from the page, and drawing says that it needs a kernel. While the view follows a training
// run (NetworkExplainer.follow), each new picture names the training step and time of the weights it shows, and a
// drill-down names the step of the weights its numbers come from. A new picture of the same network (a stroke, a
// refresh) repaints the existing canvases and numbers in place; the DOM is rebuilt only when the layout changes.
// Narrow views wrap the columns onto more rows (forward order reads left to right, then down).
import { decodeArrays } from "./lib/codec.js";
import { fmt, h, setupCanvas, theme, viewFrame } from "./lib/chart.js";
import { lut } from "./lib/colormap.js";
import { thumbCanvas } from "./lib/examples.js";
import { DrawPad } from "./lib/drawpad.js";
import { CSS } from "./lib/style.js";

const MAP_PAGE = 32; // as in hiddenwidgets/widgets/network_explainer.py
const CHANNELS_SHOWN = 6; // input channels of a conv unit listed at once; more on demand
const TERMS_SHOWN = 10; // largest products of a linear unit listed
const COLUMN_HEIGHT = 440; // CSS pixels a column of feature maps may take; more maps get smaller tiles

const LOCAL_CSS = `
.hw-nx-controls { display: flex; gap: 14px; align-items: flex-start; flex-wrap: wrap; margin-bottom: 8px; }
.hw-nx-gallery { display: flex; gap: 4px; flex-wrap: wrap; max-width: 460px; }
.hw-nx-thumb { border: 2px solid transparent; border-radius: 3px; padding: 0; background: none; cursor: pointer; }
.hw-nx-thumb[aria-pressed="true"] { border-color: #3b6fd8; }
.hw-nx-thumb:disabled { opacity: 0.35; cursor: not-allowed; }
.hw-nx-draw { display: flex; flex-direction: column; gap: 4px; font-size: 12px; }
.hw-drawpad { border: 1px solid var(--jp-border-color1, #c8ced5); cursor: crosshair; image-rendering: pixelated; }
.hw-nx-overview { display: flex; flex-wrap: wrap; gap: 10px 10px; align-items: flex-start; padding-bottom: 6px;
  max-width: 100%; }
.hw-nx-group { display: flex; flex-direction: column; gap: 2px; border: 1.5px dashed #a15c00; border-radius: 6px;
  padding: 2px 4px 4px; max-width: 100%; box-sizing: border-box; }
.hw-nx-group-cols { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
.hw-nx-group-label { font-size: 11px; color: #a15c00; overflow-wrap: anywhere; }
.hw-nx-weights { font-size: 12px; color: var(--jp-ui-font-color2, #59636e); }
.hw-nx-detail[data-stale="true"] { opacity: 0.55; }
.hw-nx-col { display: flex; flex-direction: column; align-items: center; gap: 2px; min-width: 40px;
  max-width: min(100%, 200px); }
.hw-nx-col-head { font-size: 11px; text-align: center; max-width: 120px; overflow-wrap: anywhere; }
.hw-nx-col-meta { font-size: 10px; color: var(--jp-ui-font-color2, #656d76); text-align: center; overflow-wrap: anywhere; }
.hw-nx-col[data-added="true"] .hw-nx-col-head { font-style: italic; }
.hw-nx-map { cursor: pointer; image-rendering: pixelated; border: 1px solid transparent; }
.hw-nx-map[data-active="true"] { border-color: #c2410c; }
.hw-nx-prob { display: grid; grid-template-columns: auto 60px auto; gap: 1px 4px; font-size: 11px; align-items: center;
  font-variant-numeric: tabular-nums; cursor: pointer; }
.hw-nx-prob span[data-top="true"] { font-weight: 700; }
.hw-nx-detail { margin-top: 10px; border-top: 1px solid var(--jp-border-color2, #e3e6ea); padding-top: 8px; }
.hw-nx-detail-head { font-weight: 600; margin-bottom: 4px; }
.hw-nx-row { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; margin: 4px 0; }
.hw-nx-table { border-collapse: collapse; font-size: 11px; font-variant-numeric: tabular-nums; }
.hw-nx-table td, .hw-nx-table th { border: 1px solid var(--jp-border-color2, #e3e6ea); padding: 1px 4px; text-align: right; }
.hw-nx-table td[data-pad="true"] { color: var(--jp-ui-font-color3, #adb5bd); }
.hw-nx-table td[data-hit="true"], .hw-nx-table tr[data-hit="true"] td { background: rgba(194,65,12,0.15); font-weight: 700; }
.hw-nx-eq { font-family: var(--jp-code-font-family, ui-monospace, monospace); font-size: 12px; }
.hw-nx-op { font-size: 16px; color: var(--jp-ui-font-color2, #656d76); }
`;

/** A number shown in the DOM: rounded text, the full value in data-value (for tests and copy). */
function num(tag, v, cls = "") {
  const e = h(tag, cls, v === null || v === undefined ? "–" : fmt(v));
  e.dataset.value = v === null || v === undefined ? "" : String(v);
  return e;
}

/** A kh x kw table of numbers, cells outside the input marked. */
function grid(values, rows, cols, inside, hit = -1) {
  const t = h("table", "hw-nx-table");
  for (let r = 0; r < rows; r++) {
    const tr = h("tr");
    for (let c = 0; c < cols; c++) {
      const td = num("td", values[r * cols + c]);
      if (inside && !inside[r * cols + c]) td.dataset.pad = "true";
      if (r * cols + c === hit) td.dataset.hit = "true";
      tr.append(td);
    }
    t.append(tr);
  }
  return t;
}

/** Draw one (h, w) map onto a canvas on the colour scale [lo, hi]. A canvas drawn again at the same size keeps its
 * backing store, pixel buffer and scratch canvas (a stroke repaints every map of the overview). */
const mapState = new WeakMap(); // canvas -> what drawMap set up for it

function drawMap(canvas, values, offset, hh, ww, lo, hi, size) {
  const scale = Math.max(1, size / Math.max(hh, ww));
  const cw = Math.round(ww * scale); const ch = Math.round(hh * scale);
  const dpr = (typeof window !== "undefined" && window.devicePixelRatio) || 1;
  let c = mapState.get(canvas);
  if (!c || c.cw !== cw || c.ch !== ch || c.ww !== ww || c.hh !== hh || c.dpr !== dpr) {
    const ctx = setupCanvas(canvas, cw, ch);
    if (!ctx || typeof ImageData === "undefined") return;
    const off = document.createElement("canvas");
    off.width = ww; off.height = hh;
    c = { ctx, cw, ch, ww, hh, dpr, off, octx: off.getContext("2d"), img: new ImageData(ww, hh) };
    mapState.set(canvas, c);
  }
  const signed = lo < 0;
  const table = lut(signed ? "diverging" : "viridis");
  const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
  const a = signed ? -m : 0;
  const b = signed ? m : (hi > 0 ? hi : 1);
  const px = c.img.data;
  for (let p = 0; p < hh * ww; p++) {
    const v = values[offset + p];
    const k = Number.isFinite(v) ? Math.max(0, Math.min(255, Math.round(((v - a) / (b - a)) * 255))) * 4 : -1;
    px[p * 4] = k < 0 ? 255 : table[k]; px[p * 4 + 1] = k < 0 ? 0 : table[k + 1];
    px[p * 4 + 2] = k < 0 ? 255 : table[k + 2]; px[p * 4 + 3] = 255;
  }
  c.octx?.putImageData(c.img, 0, 0);
  c.ctx.imageSmoothingEnabled = false;
  c.ctx.drawImage(c.off, 0, 0, cw, ch);
}

/** @param {ArrayLike<number>} arr */
function range(arr) {
  let lo = Infinity; let hi = -Infinity;
  for (let i = 0; i < arr.length; i++) { const v = arr[i]; if (Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; } }
  return Number.isFinite(lo) ? [lo, hi] : [0, 1];
}

function render({ model, el }) {
  const isStatic = Boolean(model.get("__hw_static"));
  const { root, title, note } = viewFrame("hw-nx", CSS, LOCAL_CSS);
  const notice = h("div", "hw-am-notice");
  notice.hidden = true;
  const controls = h("div", "hw-nx-controls");
  const gallery = h("div", "hw-nx-gallery");
  const drawBox = h("div", "hw-nx-draw");
  const readingBox = h("div");
  const reading = h("div", "hw-am-counter");
  const weightsLine = h("div", "hw-nx-weights");
  weightsLine.dataset.role = "weights";
  readingBox.append(reading, weightsLine);
  const overview = h("div", "hw-nx-overview");
  const detail = h("div", "hw-nx-detail");
  controls.append(gallery, drawBox, readingBox);
  root.append(notice, controls, overview, detail);
  el.appendChild(root);

  const st = model.get("_static") || {};
  let staticKey = isStatic ? String((st.chosen || [model.get("selected")])[0]) : "";
  let width = 900;
  let active = null; // {step, index}
  let anim = 0;
  let seq = 0;
  let inFlight = null; // {seq, at}
  let pending = null; // ink waiting to be sent
  const unitCache = new Map();

  function data() {
    if (isStatic) {
      const s = (st.inputs || {})[staticKey];
      if (!s) return { layers: [], arrays: {}, prediction: -1 };
      return { layers: s.layers, arrays: decodeArrays(s.overview.header.index, s.overview.data), prediction: s.prediction };
    }
    const o = model.get("_overview");
    return { layers: model.get("layers") || [], arrays: o && o.header ? decodeArrays(o.header.index, o.data) : {}, prediction: model.get("prediction") };
  }
  const className = (c) => { const n = model.get("class_names") || []; return n[c] !== undefined ? String(n[c]) : String(c); };
  let current = data();

  // ---------------------------------------------------------------------------------------------- controls
  function drawGallery() {
    const g = model.get("_gallery");
    gallery.replaceChildren();
    if (!g || !g.header) return;
    const arr = decodeArrays(g.header.index, g.data).images;
    const shape = g.header.index.images[2];
    const len = shape[1] * shape[2] * shape[3];
    const chosen = isStatic ? new Set((st.chosen || []).map(String)) : null;
    for (let i = 0; i < shape[0]; i++) {
      const b = /** @type {HTMLButtonElement} */ (h("button", "hw-nx-thumb"));
      b.dataset.index = String(i);
      b.append(thumbCanvas(arr.subarray(i * len, (i + 1) * len), shape.slice(1), 36));
      const selected = isStatic ? String(i) === staticKey : model.get("selected") === i;
      b.setAttribute("aria-pressed", String(selected));
      if (chosen && !chosen.has(String(i))) { b.disabled = true; b.title = "this input's numbers are not in the page: open the notebook with a running kernel"; }
      b.addEventListener("click", () => {
        if (isStatic) { staticKey = String(i); unitCache.clear(); current = data(); drawGallery(); drawAll(); return; }
        model.send({ type: "select", index: i, seq: ++seq });
      });
      gallery.append(b);
    }
  }

  let pad = null;
  function setupDraw() {
    drawBox.replaceChildren();
    if (!model.get("can_draw")) return;
    if (isStatic) { drawBox.append(h("span", "hw-note", "Drawing an input needs a running kernel (the model runs in Python); this page shows the inputs above.")); return; }
    const [rows, cols] = model.get("draw_shape");
    pad = new DrawPad(rows, cols, 120, (ink, final) => sendInk(ink, final));
    const clear = h("button", "hw-btn", "Clear");
    clear.addEventListener("click", () => pad && pad.clear());
    drawBox.append(h("span", "hw-note", "Draw an input:"), pad.canvas, clear);
  }

  function sendInk(ink, final) {
    if (inFlight && performance.now() - inFlight.at < 5000) { pending = ink; return; }
    pending = null;
    inFlight = { seq: ++seq, at: performance.now() };
    root.dataset.idle = "false";
    model.send({ type: "draw", seq: inFlight.seq, final }, undefined, [ink.buffer]); // (content, callbacks, buffers)
  }

  // ---------------------------------------------------------------------------------------------- overview
  function tileSize(cols) { return Math.max(22, Math.min(64, Math.floor(width / Math.max(1, cols)) - 14)); }

  /** The range a step's colours span: the whole output's (Python's lo/hi: a paged layer's other maps too). */
  function rangeOf(k) {
    const layer = k >= 0 ? current.layers[k] : null;
    return layer ? [layer.lo, layer.hi] : range(current.arrays.input || []);
  }

  /** One column: its elements are built once per layout; `painters` gets the function that draws the current
   * numbers into them (called again, without rebuilding, for every new picture of the same layout). */
  function column(k, layer, arrays, size, painters) {
    const col = h("div", "hw-nx-col");
    col.dataset.step = String(k);
    col.dataset.added = String(Boolean(layer && layer.added));
    const head = h("div", "hw-nx-col-head", layer ? layer.name : "input");
    head.title = layer ? `${layer.type}${layer.notes && layer.notes.length ? ` — ${layer.notes.join("; ")}` : ""}` : "the model's input";
    const key = layer ? `s${k}` : "input";
    const arr = arrays[key];
    const dims = layer ? layer.shape : (current.inputDims || []);
    col.append(head, h("div", "hw-nx-col-meta", `${layer ? layer.kind : "input"} ${dims.join("×")}`));
    if (!arr) return col;
    if (layer && layer.notes && layer.notes.length) col.append(h("div", "hw-nx-col-meta", (layer.added ? "ℹ " : "⚠ ") + layer.notes.join("; ")));
    if (dims.length === 3) {
      const [C, H, W] = dims;
      const page = layer ? layer.page : 0;
      const shown = Math.min(MAP_PAGE, C - page * MAP_PAGE);
      const tile = Math.max(12, Math.min(size, Math.floor(COLUMN_HEIGHT / shown) - 4));
      const maps = [];
      for (let c = 0; c < shown; c++) {
        const cv = /** @type {HTMLCanvasElement} */ (h("canvas", "hw-nx-map"));
        cv.dataset.channel = String(page * MAP_PAGE + c);
        if (layer) {
          cv.addEventListener("click", (e) => {
            const r = cv.getBoundingClientRect();
            const y = Math.min(H - 1, Math.floor(((e.clientY - r.top) / r.height) * H));
            const x = Math.min(W - 1, Math.floor(((e.clientX - r.left) / r.width) * W));
            select(k, [page * MAP_PAGE + c, y, x]);
          });
        }
        maps.push(cv);
        col.append(cv);
      }
      painters.push(() => {
        const a = current.arrays[key];
        if (!a) return;
        const [lo, hi] = rangeOf(k);
        for (let c = 0; c < maps.length; c++) drawMap(maps[c], a, c * H * W, H, W, lo, hi, tile);
      });
      if (layer && layer.pages > 1) col.append(pager(k, layer));
    } else if (layer && layer.kind === "softmax" && arr.length <= 100) {
      const probs = h("div", "hw-nx-prob");
      const rows = [];
      for (let j = 0; j < arr.length; j++) {
        const name = h("span", "", className(j));
        const bar = /** @type {HTMLCanvasElement} */ (h("canvas"));
        const p = num("span", arr[j]);
        for (const e of [name, bar, p]) { e.addEventListener("click", () => select(k, [j])); probs.append(e); }
        rows.push([name, bar, p]);
      }
      painters.push(() => {
        const a = current.arrays[key];
        if (!a) return;
        let top = 0;
        for (let j = 1; j < a.length; j++) if (a[j] > a[top]) top = j;
        for (let j = 0; j < rows.length; j++) {
          const [name, bar, p] = rows[j];
          name.dataset.top = String(j === top);
          p.dataset.top = String(j === top);
          p.textContent = fmt(a[j]);
          p.dataset.value = String(a[j]);
          const ctx = setupCanvas(bar, 60, 9);
          if (ctx) { ctx.fillStyle = "#e9ecef"; ctx.fillRect(0, 0, 60, 9); ctx.fillStyle = j === top ? "#c2410c" : "#3b6fd8"; ctx.fillRect(0, 0, 60 * a[j], 9); }
        }
      });
      col.append(probs);
    } else {
      const n = arr.length;
      const cell = Math.max(1, Math.min(12, Math.floor(300 / Math.max(1, n))));
      const strip = /** @type {HTMLCanvasElement} */ (h("canvas", "hw-nx-map"));
      painters.push(() => {
        const a = current.arrays[key];
        if (!a) return;
        const [lo, hi] = rangeOf(k);
        drawMap(strip, a, 0, n, 1, lo, hi, 0);
        strip.style.width = "14px";
        strip.style.height = `${Math.min(320, Math.max(n * cell, 20))}px`; // thousands of units: a strip, not a tower
      });
      strip.title = `${n} values`;
      if (layer) {
        strip.addEventListener("click", (e) => {
          const r = strip.getBoundingClientRect();
          select(k, [Math.min(n - 1, Math.floor(((e.clientY - r.top) / r.height) * n))]);
        });
      }
      col.append(strip);
    }
    return col;
  }

  function pager(k, layer) {
    const row = h("div", "hw-nx-col-meta");
    const prev = /** @type {HTMLButtonElement} */ (h("button", "hw-btn", "‹"));
    const next = /** @type {HTMLButtonElement} */ (h("button", "hw-btn", "›"));
    const lo = layer.page * MAP_PAGE + 1;
    const hi = Math.min(layer.channels, (layer.page + 1) * MAP_PAGE);
    prev.disabled = layer.page === 0 || isStatic;
    next.disabled = layer.page >= layer.pages - 1 || isStatic;
    if (isStatic) row.title = "other channels need a running kernel";
    prev.addEventListener("click", () => model.send({ type: "page", step: k, page: layer.page - 1 }));
    next.addEventListener("click", () => model.send({ type: "page", step: k, page: layer.page + 1 }));
    row.append(prev, h("span", "", ` ${lo}–${hi} of ${layer.channels} `), next);
    return row;
  }

  let built = null; // {key, painters}: the overview's elements for one layout
  let paintedAt = 0;

  /** What the overview's elements depend on (not the numbers): the same key, the same elements. */
  function layoutKey(layers, groups, size) {
    return JSON.stringify([size, current.inputDims, groups, layers.map((l) => [l.name, l.kind, l.type, l.shape, l.page, l.pages, l.added, l.notes])]);
  }

  function drawOverview() {
    const t0 = performance.now();
    const { layers, arrays } = current;
    const groups = isStatic ? groupsOf(layers) : (model.get("groups") || []);
    const size = tileSize(Math.min(layers.length + 1, columnsPerRow()));
    const key = layoutKey(layers, groups, size);
    if (!built || built.key !== key) {
      const painters = [];
      const parts = [column(-1, null, arrays, size, painters)];
      for (let k = 0; k < layers.length; k++) {
        const g = groups.find((gr) => gr.first === k);
        if (g) {
          const box = h("div", "hw-nx-group");
          const cols = h("div", "hw-nx-group-cols");
          const src = g.skip_from >= 0 ? layers[g.skip_from].name : "the input";
          box.append(h("div", "hw-nx-group-label", `${g.name}: residual block (skip from ${src})`), cols);
          for (let j = g.first; j <= g.last; j++) cols.append(column(j, layers[j], arrays, size, painters));
          parts.push(box);
          k = g.last;
        } else parts.push(column(k, layers[k], arrays, size, painters));
      }
      overview.replaceChildren(...parts);
      built = { key, painters };
    }
    for (const paint of built.painters) paint();
    markActive();
    const p = current.prediction;
    reading.textContent = p >= 0 ? `The network reads: ${className(p)}` : "";
    paintedAt = performance.now() - t0;
  }

  /** Columns that fit one row at the view's width (tiles shrink to at most this many per row, then wrap). */
  function columnsPerRow() { return Math.max(4, Math.floor(width / 70)); }

  function markActive() {
    for (const cv of /** @type {NodeListOf<HTMLCanvasElement>} */ (overview.querySelectorAll("canvas.hw-nx-map"))) {
      const col = /** @type {HTMLElement} */ (cv.closest(".hw-nx-col"));
      const on = Boolean(active && col && Number(col.dataset.step) === active.step && cv.dataset.channel !== undefined
        && Number(cv.dataset.channel) === active.index[0] && active.index.length === 3);
      if (on) cv.dataset.active = "true"; else delete cv.dataset.active;
    }
  }

  function showWeights() {
    // a page names the weights its embedded numbers come from (saved while following training), never "following"
    const w = isStatic ? st.weights : model.get("weights");
    weightsLine.textContent = w && w.text ? `weights of ${w.text}` : "";
    if (w && w.step !== null && w.step !== undefined) weightsLine.dataset.step = String(w.step); else delete weightsLine.dataset.step;
  }

  function groupsOf(layers) { return (st.groups || model.get("groups") || []).filter((g) => g.last < layers.length); }

  // ---------------------------------------------------------------------------------------------- drill-down
  function select(step, index) {
    const same = active && active.step === step && active.index.join(",") === index.join(",");
    active = { step, index };
    const key = `${step}:${index.join(",")}`;
    markActive();
    if (unitCache.has(key)) { showUnit(unitCache.get(key)); return; }
    if (isStatic) {
      const un = staticUnit(step, index);
      if (un) { unitCache.set(key, un); showUnit(un); }
      else detail.replaceChildren(h("div", "hw-note", "This unit's arithmetic is not in the page: open the notebook with a running kernel."));
      return;
    }
    // the same unit for a new picture: its old numbers stay, dimmed, until the new ones arrive (no jump)
    if (same && detail.dataset.key === key) detail.dataset.stale = "true";
    else { detail.replaceChildren(h("div", "hw-note", "computing…")); delete detail.dataset.key; }
    model.send({ type: "unit", step, index, key });
  }

  const packed = new Map(); // decoded steps of the static page

  /** A unit from the page: one step's units are stored together (hiddenwidgets/widgets/network_explainer.py: pack_units). */
  function staticUnit(step, index) {
    const entry = (((st.inputs || {})[staticKey] || {}).units || {})[String(step)];
    if (!entry) return null;
    if (entry.header.single) {
      const cell = entry.cells[index.join(",")];
      return cell ? decodeUnit(cell.header, cell.data) : null;
    }
    const cacheKey = `${staticKey}:${step}`;
    if (!packed.has(cacheKey)) packed.set(cacheKey, decodeArrays(entry.header.arrays, entry.data));
    const arrays = packed.get(cacheKey);
    const shape = current.layers[step].shape;
    let r = 0;
    for (let d = 0; d < shape.length; d++) r = r * shape[d] + index[d];
    if (r >= entry.header.count) return null;
    const u = { ...entry.header.common, index: [...index], shapes: {} };
    for (const [key, [, , shp]] of Object.entries(entry.header.arrays)) {
      if (key === "index" || key.startsWith("then:")) continue;
      if (key.startsWith("common:")) { u[key.slice(7)] = arrays[key]; u.shapes[key.slice(7)] = shp; continue; }
      if (shp.length === 1) { u[key] = arrays[key][r]; continue; }
      const len = shp.slice(1).reduce((a, b) => a * b, 1);
      u[key] = arrays[key].subarray(r * len, (r + 1) * len);
      u.shapes[key] = shp.slice(1);
    }
    u.then = (entry.header.then || []).map((t, j) => {
      const one = { ...t };
      for (const f of ["input", "output", "value"]) { const a = arrays[`then:${j}:${f}`]; if (a) one[f] = a[r]; }
      return one;
    });
    return u;
  }

  function decodeUnit(header, buffer) {
    const arrays = header.arrays && Object.keys(header.arrays).length ? decodeArrays(header.arrays, buffer) : {};
    return { ...header, ...arrays, shapes: Object.fromEntries(Object.entries(header.arrays || {}).map(([k, v]) => [k, v[2]])) };
  }

  function showUnit(u) {
    cancelAnimationFrame(anim);
    const step = u.weights_step === null || u.weights_step === undefined ? "" : ` · weights of training step ${u.weights_step}`;
    const head = h("div", "hw-nx-detail-head", `${u.name} · unit [${u.index.join(", ")}] · ${u.kind}${step}`);
    detail.dataset.key = `${u.step}:${u.index.join(",")}`;
    delete detail.dataset.stale;
    if (step) detail.dataset.step = String(u.weights_step); else delete detail.dataset.step;
    const out = h("div", "hw-nx-row");
    out.append(h("span", "", "the model computed"), num("b", u.output), h("span", "hw-note", u.formula || ""));
    out.dataset.role = "output";
    const body = h("div");
    body.dataset.kind = u.kind;
    const kinds = { conv2d: convDetail, linear: linearDetail, maxpool2d: poolDetail, avgpool2d: poolDetail,
      adaptive_maxpool2d: poolDetail, adaptive_avgpool2d: poolDetail, softmax: softmaxDetail, log_softmax: softmaxDetail };
    if (kinds[u.kind]) kinds[u.kind](u, body);
    else if (u.kind === "batchnorm") body.append(eq(`(${fmt(u.input)} − ${fmt(u.mean)}) / √(${fmt(u.var)} + ${fmt(u.eps)}) × ${fmt(u.gamma)} + ${fmt(u.beta)} =`, u.value));
    else if (u.kind === "activation") body.append(eq(`${u.function}(${fmt(u.input)}) =`, u.value));
    else if (u.kind === "add") body.append(eq(`${fmt(u.a)} (main path) + ${fmt(u.b)} (skip) =`, u.value));
    else if (u.kind === "flatten") body.append(eq(`input [${u.source.join(", ")}] =`, u.value));
    if (u.note) body.append(h("div", "hw-am-notice", u.note));
    if (u.then && u.then.length) {
      const chain = h("div", "hw-nx-row");
      chain.append(h("span", "hw-note", "then, element-wise:"));
      for (const t of u.then) chain.append(h("span", "hw-nx-op", "→"), h("span", "", `${t.name} (${t.kind})`), num("b", t.output));
      body.append(chain);
    }
    detail.replaceChildren(head, out, body);
  }

  function eq(text, value) {
    const row = h("div", "hw-nx-row hw-nx-eq");
    const v = num("b", value);
    v.dataset.role = "value";
    row.append(h("span", "", text), v);
    return row;
  }

  function convDetail(u, body) {
    const [cin, kh, kw] = u.shapes.patch;
    const layer = current.layers[u.step];
    const srcStep = layer && layer.sources && layer.sources.length ? layer.sources[0] : -1;
    body.append(slider(u, srcStep));
    let shown = Math.min(cin, CHANNELS_SHOWN);
    const list = h("div");
    const fill = () => {
      list.replaceChildren();
      for (let c = 0; c < shown; c++) {
        const o = c * kh * kw;
        const row = h("div", "hw-nx-row");
        row.dataset.channel = String(u.channels[c]);
        const inside = u.inside;
        row.append(h("span", "hw-note", `input channel ${u.channels[c]}`), grid(u.patch.subarray(o, o + kh * kw), kh, kw, inside),
          h("span", "hw-nx-op", "×"), grid(u.kernel.subarray(o, o + kh * kw), kh, kw, null), h("span", "hw-nx-op", "="),
          grid(u.products.subarray(o, o + kh * kw), kh, kw, inside), h("span", "hw-nx-op", "Σ ="), num("b", u.channel_sums[c]));
        list.append(row);
      }
      if (shown < cin) {
        const more = h("button", "hw-btn", `show ${Math.min(CHANNELS_SHOWN, cin - shown)} more of ${cin - shown} input channels`);
        more.addEventListener("click", () => { shown = Math.min(cin, shown + CHANNELS_SHOWN); fill(); });
        list.append(more);
      }
    };
    fill();
    body.append(list, h("div", "hw-note", `stride ${u.stride.join("×")}, padding ${u.padding.join("×")}, dilation ${u.dilation.join("×")}; grey: ${u.fill}`));
    body.append(eq(`Σ over ${cin} channel${cin > 1 ? "s" : ""} = ${fmt(u.sum)}; + bias ${fmt(u.bias)} =`, u.value));
  }

  /** The input map with the kernel's box sliding to the unit's position, beside the output map. */
  function slider(u, srcStep) {
    const wrap = h("div", "hw-nx-row");
    const srcArr = current.arrays[srcStep >= 0 ? `s${srcStep}` : "input"];
    const srcLayer = srcStep >= 0 ? current.layers[srcStep] : null;
    const srcShape = srcLayer ? srcLayer.shape : current.inputDims;
    const outLayer = current.layers[u.step];
    const outArr = current.arrays[`s${u.step}`];
    if (!srcArr || !srcShape || srcShape.length !== 3 || (srcLayer && srcLayer.pages > 1)) return wrap;
    const [, H, W] = srcShape;
    const [, OH, OW] = outLayer.shape;
    const ch = u.channels[0];
    const inCanvas = /** @type {HTMLCanvasElement} */ (h("canvas"));
    const outCanvas = /** @type {HTMLCanvasElement} */ (h("canvas"));
    const size = 140;
    const [lo, hi] = srcLayer ? [srcLayer.lo, srcLayer.hi] : range(srcArr);
    const [kh, kw] = [u.rows.length, u.cols.length];
    const [sh, sw] = u.stride; const [ph, pw] = u.padding; const [dh, dw] = u.dilation;
    const oc = u.index[0] - (outLayer.page || 0) * MAP_PAGE;
    const target = u.index[1] * OW + u.index[2];
    const t0 = performance.now();
    const colors = theme(root);
    const frame = (now) => {
      const pos = Math.min(target, Math.floor((now - t0) / Math.max(8, 1200 / (target + 1))));
      const i = Math.floor(pos / OW); const j = pos % OW;
      drawMap(inCanvas, srcArr, ch * H * W, H, W, lo, hi, size);
      const s = inCanvas.clientWidth / W || size / Math.max(H, W);
      const ctx = inCanvas.getContext("2d");
      if (ctx) {
        ctx.strokeStyle = "#ffd43b"; ctx.lineWidth = 2;
        const y0 = (i * sh - ph) * s; const x0 = (j * sw - pw) * s;
        ctx.strokeRect(x0, y0, ((kw - 1) * dw + 1) * s, ((kh - 1) * dh + 1) * s);
      }
      if (outArr && oc >= 0 && oc < MAP_PAGE) {
        drawMap(outCanvas, outArr, oc * OH * OW, OH, OW, outLayer.lo, outLayer.hi, size);
        const so = outCanvas.clientWidth / OW || size / Math.max(OH, OW);
        const o = outCanvas.getContext("2d");
        if (o) { o.strokeStyle = colors.warn; o.lineWidth = 2; o.strokeRect(j * so, i * so, so, so); }
      }
      if (pos < target) anim = requestAnimationFrame(frame);
    };
    anim = requestAnimationFrame(frame);
    wrap.append(h("span", "hw-note", `input channel ${ch}`), inCanvas, h("span", "hw-nx-op", "→"), outCanvas);
    return wrap;
  }

  function linearDetail(u, body) {
    const n = u.order.length;
    const t = h("table", "hw-nx-table");
    const hr = h("tr");
    for (const s of ["input k", "x", "w", "w·x"]) hr.append(h("th", "", s));
    t.append(hr);
    let shownSum = 0;
    for (let r = 0; r < Math.min(TERMS_SHOWN, n); r++) {
      const k = u.order[r];
      const tr = h("tr");
      tr.append(num("td", k), num("td", u.x[k]), num("td", u.weights[k]), num("td", u.products[k]));
      shownSum += u.products[k];
      t.append(tr);
    }
    body.append(h("div", "hw-note", `the ${Math.min(TERMS_SHOWN, n)} largest of ${n} products w·x`), t);
    if (n > TERMS_SHOWN) body.append(h("div", "hw-note", `the other ${n - TERMS_SHOWN} products sum to ${fmt(u.sum - shownSum)}`));
    body.append(eq(`Σ w·x = ${fmt(u.sum)}; + bias ${fmt(u.bias)} =`, u.value));
  }

  function poolDetail(u, body) {
    const [kh, kw] = u.shapes.window;
    const mean = u.kind.includes("avg");
    body.append(h("div", "hw-note", `input channel ${u.channel}, rows ${u.rows[0]}…${u.rows[kh - 1]}, columns ${u.cols[0]}…${u.cols[kw - 1]}`),
      grid(u.window, kh, kw, u.inside, mean ? -1 : u.argmax));
    body.append(mean ? eq(`${fmt(u.sum)} / ${fmt(u.divisor)} =`, u.value) : eq("max of the window =", u.value));
  }

  function softmaxDetail(u, body) {
    const t = h("table", "hw-nx-table");
    const hr = h("tr");
    for (const s of ["class", "score x", "exp(x − max)", "probability"]) hr.append(h("th", "", s));
    t.append(hr);
    for (let j = 0; j < u.logits.length; j++) {
      const tr = h("tr");
      if (j === u.position) tr.dataset.hit = "true";
      tr.append(h("td", "", className(j)), num("td", u.logits[j]), num("td", u.exps[j]), num("td", u.exps[j] / u.normaliser));
      t.append(tr);
    }
    body.append(t, eq(`exp(${fmt(u.logits[u.position])} − ${fmt(u.max)}) / ${fmt(u.normaliser)} =`, u.value));
  }

  // ---------------------------------------------------------------------------------------------- wiring
  function drawAll() {
    title.textContent = model.get("title") || "Network explainer";
    const left = isStatic ? (((st.inputs || {})[staticKey] || {}).left_out || []) : [];
    const notes = [...(model.get("notes") || []), ...(left.length ? [`the arithmetic of ${left.join(", ")} (more than 16,384 units each) is not in this page: open the notebook with a running kernel`] : [])];
    note.textContent = `layout from ${model.get("graph") || "the forward pass"}; click a unit for its arithmetic${isStatic ? " (static page: the numbers are embedded)" : ""}`;
    const status = model.get("status") || "";
    notice.hidden = !status && !notes.length;
    notice.dataset.state = status ? "error" : "";
    notice.textContent = [status, ...notes].filter(Boolean).join(" · ");
    showWeights();
    current = data();
    const g = model.get("_overview");
    if (g && g.header && g.header.index.input) current.inputDims = g.header.index.input[2];
    if (isStatic && current.arrays) {
      const s = (st.inputs || {})[staticKey];
      if (s) current.inputDims = s.overview.header.index.input[2];
    }
    drawOverview();
    if (active) {
      const key = `${active.step}:${active.index.join(",")}`;
      if (unitCache.has(key)) showUnit(unitCache.get(key));
    }
  }

  const onOverview = () => {
    const arrived = performance.now();
    unitCache.clear();
    drawAll();
    if (inFlight) { // a drawing's answer: the time from sending the ink to the redrawn overview
      const m = performance.measure("hw-explainer-update", { start: inFlight.at, end: performance.now() });
      performance.measure("hw-explainer-redraw", { start: arrived, end: performance.now() }); // of which: drawing
      root.dataset.latency = String(m ? m.duration : performance.now() - inFlight.at);
      root.dataset.paint = String(paintedAt);
    }
    if (active && !isStatic) select(active.step, active.index);
    if (model.get("selected") !== shownSelected) { shownSelected = model.get("selected"); drawGallery(); }
  };
  let shownSelected = model.get("selected");
  const onMsg = (msg, buffers) => {
    if (!msg) return;
    if (msg.type === "unit") {
      const u = decodeUnit(msg.header, buffers && buffers[0]);
      unitCache.set(msg.key, u);
      if (active && `${active.step}:${active.index.join(",")}` === msg.key) showUnit(u);
    } else if (msg.type === "done") {
      if (inFlight && msg.seq === inFlight.seq) {
        inFlight = null;
        if (pending) sendInk(pending, true);
      }
      root.dataset.idle = String(!inFlight && !pending);
      root.dataset.done = String(msg.seq);
    }
  };
  const events = [["change:_overview", onOverview], ["change:status", drawAll], ["change:title", drawAll], ["change:weights", showWeights], ["msg:custom", onMsg]];
  for (const [ev, fn] of events) model.on(ev, fn);
  const resize = typeof ResizeObserver !== "undefined" ? new ResizeObserver((entries) => {
    const w = Math.round(entries[0].contentRect.width);
    if (w > 0 && Math.abs(w - width) > 20) { width = w; drawOverview(); }
  }) : null;
  resize?.observe(root);
  width = root.clientWidth || width;
  drawGallery();
  setupDraw();
  drawAll();
  root.dataset.ready = "true";
  return () => {
    cancelAnimationFrame(anim);
    for (const [ev, fn] of events) model.off(ev, fn);
    resize?.disconnect();
    pad?.dispose();
    root.remove();
  };
}

export default { render };

// @ts-check
// The Projector view: a layer's representations as a 2-D scatter (rasterised into one ImageData, so 50,000
// points pan and zoom smoothly without WebGL), coloured by a label field. Hover shows the example (thumbnail,
// text or row, fetched from the kernel in pages); lasso / box / legend selections go to Python as int32 indices;
// a click shows the point's nearest neighbours in the layer's own space (prototypes). Static pages carry
// everything in `_static` and work without a kernel.
import { decodeArrays } from "./lib/codec.js";
import { fmt, h, setupCanvas } from "./lib/chart.js";
import { ExamplePages, PAGE, imageOf, thumbCanvas } from "./lib/examples.js";
import { lut } from "./lib/colormap.js";
import { PALETTE, PointGrid, View, boxSelect, combine, hexRgb, lassoSelect, pack, rasterise } from "./lib/scatter.js";
import { shapeGlyph, shapeOf, SHAPES } from "./lib/palette.js";
import { mountView, readTheme } from "./lib/frame.js";
import { CSS } from "./lib/style.js";

const SIDE = 280; // the side panel's width when it fits beside the plot
const THUMB_PX = 56;

const LOCAL_CSS = `
.hw-pj-body { display: flex; gap: 14px; align-items: flex-start; flex-wrap: wrap; }
.hw-pj-plot { position: relative; border: 1px solid var(--jp-border-color2, #e3e6ea); border-radius: 4px;
  touch-action: none; user-select: none; }
.hw-pj-plot canvas { position: absolute; left: 0; top: 0; }
.hw-pj-plot[data-tool="pan"] { cursor: grab; }
.hw-pj-plot[data-tool="lasso"], .hw-pj-plot[data-tool="box"] { cursor: crosshair; }
.hw-pj-side { width: ${SIDE}px; max-width: 100%; display: flex; flex-direction: column; gap: 10px; min-width: 0; }
.hw-pj-side[data-below="true"] { width: 100%; }
.hw-pj-controls { display: flex; gap: 10px; flex-wrap: wrap; align-items: center; margin: 4px 0 8px; font-size: 12px; }
.hw-pj-controls select, .hw-pj-controls input { font: inherit; }
.hw-pj-legend { display: grid; grid-template-columns: repeat(auto-fill, minmax(130px, 1fr)); gap: 1px 6px;
  max-height: 340px; overflow-y: auto; }
.hw-pj-legend-more { font-size: 12px; color: var(--hw-muted); }
.hw-pj-legend button { display: flex; gap: 6px; align-items: center; font: inherit; font-size: 12px; border: 0;
  background: transparent; color: inherit; cursor: pointer; padding: 1px 4px; text-align: left; border-radius: 3px; }
.hw-pj-legend button:hover { background: var(--jp-layout-color2, #f1f3f5); }
.hw-pj-swatch { width: 12px; flex: none; text-align: center; font-size: 12px; line-height: 1;
  -webkit-text-stroke: 0.7px var(--hw-outline); } /* pale colours keep an edge on white, dark ones on black */
.hw-pj-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; min-width: 0; }
.hw-pj-count { margin-left: auto; font-variant-numeric: tabular-nums; }
.hw-pj-card { font-size: 12px; min-height: 20px; }
.hw-pj-thumbs { display: flex; flex-wrap: wrap; gap: 4px; }
.hw-pj-thumb { display: flex; flex-direction: column; align-items: center; font-size: 10px; cursor: pointer;
  color: var(--hw-muted); }
.hw-pj-thumb canvas { image-rendering: pixelated; border: 1px solid var(--jp-border-color2, #e3e6ea); }
.hw-pj-text { font-size: 12px; white-space: pre-wrap; max-height: 90px; overflow: hidden; }
.hw-pj-row td { padding: 0 6px 0 0; font-size: 11px; font-variant-numeric: tabular-nums; }
.hw-btn[aria-pressed="true"] { background: var(--hw-accent); border-color: var(--hw-accent); color: var(--hw-accent-text); }
.hw-pj-status { font-size: 12px; color: var(--hw-muted); }
.hw-pj-status[data-error="true"] { color: var(--hw-bad); }
`;

/** @param {any} state */
function decode(state) {
  if (!state || !state.header || !state.data) return null;
  return { ...state.header, arrays: decodeArrays(state.header.index || {}, state.data) };
}

/** Marker shape per point: square for the first 12 classes, then ring, cross, diamond (colours repeat). */
export function shapePoints(values, field, n) {
  if (!values || !field || field.kind !== "category" || field.names.length <= PALETTE.length) return null;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = values[i] >= 0 ? SHAPES.indexOf(shapeOf(values[i])) : 0;
  return out;
}

/** Packed colour of a CSS colour as the canvas reads it ("#rrggbb" or "rgb(a)(...)"); white if unreadable. */
function packCss(ctx, css) {
  if (!ctx) return 0xffffffff;
  ctx.fillStyle = "#ffffff";
  ctx.fillStyle = css;
  const v = String(ctx.fillStyle);
  if (v.startsWith("#") && v.length === 7) return pack(...hexRgb(v));
  const m = v.match(/rgba?\(([^)]+)\)/);
  if (m) { const [r, g, b] = m[1].split(",").map((x) => Math.round(Number(x))); return pack(r, g, b); }
  return 0xffffffff;
}

/** Packed colours per point for a field: palette for categories, viridis over [min, max] for values. */
export function colourPoints(values, field, n) {
  const out = new Uint32Array(n);
  const grey = pack(120, 120, 120);
  if (!values || !field) { out.fill(pack(59, 111, 216)); return out; }
  if (field.kind === "category") {
    const table = PALETTE.map((c) => pack(...hexRgb(c)));
    for (let i = 0; i < n; i++) out[i] = values[i] >= 0 ? table[values[i] % table.length] : grey;
    return out;
  }
  let lo = Infinity; let hi = -Infinity;
  for (let i = 0; i < n; i++) { const v = values[i]; if (Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; } }
  const table = lut("viridis");
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) { out[i] = grey; continue; }
    const q = Math.round(hi > lo ? ((v - lo) / (hi - lo)) * 255 : 128) * 4;
    out[i] = pack(table[q], table[q + 1], table[q + 2]);
  }
  return out;
}

/** The points' key as Python writes it: layer|epoch|method, epoch "None" when nothing was recorded. */
export function pointsKey(layer, epoch, epochs, method) {
  let ep = null;
  if (epochs && epochs.length) ep = epoch < 0 || !epochs.includes(epoch) ? epochs[epochs.length - 1] : epoch;
  return `${layer}|${ep === null ? "None" : ep}|${method}`;
}

function render({ model, el }) {
  const isStatic = Boolean(model.get("__hw_static"));
  const root = h("div", "hw-am hw-pj");
  root.dataset.hwView = "projector";
  const style = h("style");
  style.textContent = CSS + LOCAL_CSS;
  const head = h("div", "hw-am-header");
  const title = h("span", "hw-am-title");
  const counts = h("span", "hw-am-frames");
  const status = h("span", "hw-pj-status");
  head.append(title, counts, status);

  const controls = h("div", "hw-pj-controls");
  const labelled = (text, node) => { const l = h("label"); l.append(`${text} `, node); return l; };
  const layerSel = /** @type {HTMLSelectElement} */ (h("select"));
  const methodSel = /** @type {HTMLSelectElement} */ (h("select"));
  const colourSel = /** @type {HTMLSelectElement} */ (h("select"));
  const epochBox = h("span");
  const epochRange = /** @type {HTMLInputElement} */ (h("input"));
  epochRange.type = "range";
  epochRange.min = "0";
  epochRange.step = "1";
  const epochText = h("span", "hw-chart-value");
  const play = h("button", "hw-btn", "▶ play");
  play.title = "Step through the recorded epochs";
  epochBox.append("epoch ", epochRange, " ", epochText, " ", play);
  const tools = {};
  const toolBar = h("span");
  for (const [name, key, tip] of [["pan", "P", "Drag to pan, wheel to zoom (P)"], ["lasso", "L", "Draw around points to select them; Shift adds, Alt removes (L)"], ["box", "B", "Drag a box to select; Shift adds, Alt removes (B)"]]) {
    const b = h("button", "hw-btn", `${name} (${key})`);
    b.title = tip;
    b.dataset.tool = name;
    tools[name] = b;
    toolBar.append(b, " ");
  }
  const clear = h("button", "hw-btn", "clear selection");
  clear.title = "Clear the selection (Esc)";
  const reset = h("button", "hw-btn", "reset view");
  reset.title = "Fit all points (double-click the plot, or 0)";
  toolBar.append(clear, " ", reset);
  controls.append(labelled("layer", layerSel), epochBox, labelled("projection", methodSel), labelled("colour", colourSel), toolBar);

  const body = h("div", "hw-pj-body");
  const plot = h("div", "hw-pj-plot");
  plot.tabIndex = 0;
  const base = /** @type {HTMLCanvasElement} */ (h("canvas"));
  const overlay = /** @type {HTMLCanvasElement} */ (h("canvas"));
  plot.append(base, overlay);
  const side = h("div", "hw-pj-side");
  const legendTitle = h("div", "hw-panel-title");
  const legend = h("div", "hw-pj-legend");
  const hoverTitle = h("div", "hw-panel-title", "hover a point");
  const hoverCard = h("div", "hw-pj-card");
  const nbTitle = h("div", "hw-panel-title", "click a point for its nearest neighbours in the layer");
  const nbCard = h("div", "hw-pj-card");
  const selTitle = h("div", "hw-panel-title");
  const selCard = h("div", "hw-pj-card");
  const legendMore = h("div", "hw-pj-legend-more");
  legendMore.hidden = true;
  side.append(legendTitle, legend, legendMore, selTitle, selCard, hoverTitle, hoverCard, nbTitle, nbCard);
  body.append(plot, side);
  root.append(style, head, controls, body);
  el.appendChild(root);

  const dpr = (typeof window !== "undefined" && window.devicePixelRatio) || 1;
  // the plot's size follows the output area: beside the side panel when both fit, else the side panel below
  let WIDTH = 0; let HEIGHT = 0;
  let ctx = /** @type {CanvasRenderingContext2D | null} */ (null);
  let octx = /** @type {CanvasRenderingContext2D | null} */ (null);
  let image = /** @type {ImageData | null} */ (null);
  let pixels = /** @type {Uint32Array | null} */ (null);
  let background = 0xffffffff;
  let ringColour = "#111111";
  const view = new View(620, 460);
  let shapes = /** @type {Uint8Array | null} */ (null);
  function layout(width, theme) {
    const beside = width >= SIDE + 14 + 320;
    const w = Math.max(160, Math.floor(beside ? Math.min(900, width - SIDE - 16) : width - 2));
    const hgt = Math.max(220, Math.min(560, Math.round(w * 0.74)));
    side.dataset.below = String(!beside);
    background = packCss(base.getContext("2d"), theme.bg);
    ringColour = theme.hover;
    if (w !== WIDTH || hgt !== HEIGHT) {
      const cx = view.cx; const cy = view.cy; const sc = view.scale;
      const refit = !WIDTH;
      WIDTH = w; HEIGHT = hgt;
      plot.style.width = `${WIDTH}px`;
      plot.style.height = `${HEIGHT}px`;
      ctx = setupCanvas(base, WIDTH, HEIGHT);
      octx = setupCanvas(overlay, WIDTH, HEIGHT);
      image = ctx && typeof ImageData !== "undefined" ? new ImageData(base.width, base.height) : null;
      pixels = image ? new Uint32Array(image.data.buffer) : null;
      view.width = WIDTH; view.height = HEIGHT;
      if (grid && (refit || !userMoved)) view.fit(grid.b);
      else { view.cx = cx; view.cy = cy; view.scale = sc; }
    }
    draw();
  }

  /** @type {Map<string, Float32Array>} */
  const pointsCache = new Map();
  const asked = new Set();
  const pages = new ExamplePages(model, isStatic);
  let xy = /** @type {Float32Array | null} */ (null);
  let shownKey = "";
  let shownLayerMethod = "";
  let grid = /** @type {PointGrid | null} */ (null);
  let colours = new Uint32Array(0);
  let colourArrays = /** @type {Record<string, any>} */ ({});
  let selection = new Int32Array(0);
  let selMask = /** @type {Uint8Array | null} */ (null);
  let tool = "lasso";
  let hovered = -1;
  let focus = -1;
  let neighbours = /** @type {{ index: number, indices: number[], distances: number[] } | null} */ (null);
  let drag = /** @type {{ x: number, y: number, poly: number[], moved: boolean, mode: string } | null} */ (null);
  let frame = 0;
  let playing = 0;
  let userMoved = false;
  const listeners = [];
  const on = (node, ev, fn, opts) => { node.addEventListener(ev, fn, opts); listeners.push(() => node.removeEventListener(ev, fn, opts)); };
  const save = (key, value) => { model.set(key, value); model.save_changes(); };
  const n = () => (xy ? xy.length >> 1 : 0);

  // -- drawing -------------------------------------------------------------------------------------------------
  function draw() {
    frame = 0;
    if (!ctx || !image || !pixels || !xy) return;
    const t0 = performance.now();
    rasterise(pixels, base.width, base.height, dpr, xy, colours, view,
      { size: shapes ? 5 : n() > 20000 ? 2 : 3, selected: selMask && selection.length ? selMask : null, background, shapes });
    ctx.putImageData(image, 0, 0);
    if (typeof performance.measure === "function") performance.measure("hw-projector-draw", { start: t0, end: performance.now() });
    drawOverlay();
  }
  function visibleShare() {
    if (!xy || !xy.length) return 1;
    let inside = 0;
    const step = Math.max(1, Math.floor(n() / 2000)); // a sample is enough
    let seen = 0;
    for (let i = 0; i < n(); i += step) {
      const sx = view.sx(xy[2 * i]); const sy = view.sy(xy[2 * i + 1]);
      if (sx >= 0 && sx <= WIDTH && sy >= 0 && sy <= HEIGHT) inside++;
      seen++;
    }
    return seen ? inside / seen : 1;
  }
  function requestDraw() {
    if (frame) return;
    if (typeof requestAnimationFrame === "function") frame = requestAnimationFrame(draw);
    else draw();
  }
  function ring(i, colour, r) {
    if (!octx || !xy || i < 0 || i >= n()) return;
    octx.beginPath();
    octx.arc(view.sx(xy[2 * i]), view.sy(xy[2 * i + 1]), r, 0, 2 * Math.PI);
    octx.strokeStyle = colour;
    octx.lineWidth = 2;
    octx.stroke();
  }
  function drawOverlay() {
    if (!octx) return;
    octx.clearRect(0, 0, WIDTH, HEIGHT);
    if (neighbours && neighbours.index === focus) for (const j of neighbours.indices) ring(j, "#c2410c", 5);
    ring(focus, ringColour, 7);
    ring(hovered, ringColour, 5);
    if (drag && drag.moved && tool !== "pan") {
      octx.beginPath();
      octx.strokeStyle = "#3b6fd8";
      octx.fillStyle = "rgba(59,111,216,0.08)";
      octx.lineWidth = 1.5;
      if (tool === "box") {
        const [x1, y1] = drag.poly.slice(-2);
        octx.rect(drag.x, drag.y, x1 - drag.x, y1 - drag.y);
      } else {
        for (let i = 0; i < drag.poly.length; i += 2) (i ? octx.lineTo : octx.moveTo).call(octx, drag.poly[i], drag.poly[i + 1]);
        octx.closePath();
      }
      octx.fill();
      octx.stroke();
    }
  }

  // -- data ------------------------------------------------------------------------------------------------------
  function currentKey() {
    return pointsKey(model.get("layer"), model.get("epoch"), model.get("epochs") || [], model.get("method"));
  }
  function takePoints(state) {
    const p = decode(state);
    if (p && p.arrays.xy) pointsCache.set(p.key, /** @type {Float32Array} */ (p.arrays.xy));
  }
  function showPoints() {
    const key = currentKey();
    if (isStatic && !pointsCache.has(key)) {
      const s = (model.get("_static") || {}).points || {};
      if (s[key]) takePoints(s[key]);
    }
    const found = pointsCache.get(key);
    if (!found) { // ask Python once per key (it computes in the background); the old picture stays until then
      if (!isStatic && !asked.has(key)) {
        asked.add(key);
        try {
          model.send({ type: "points", layer: model.get("layer"), epoch: model.get("epoch"), method: model.get("method") });
        } catch { asked.delete(key); } // no kernel: ask again at the next change
      }
      requestDraw();
      return;
    }
    if (key === shownKey && found === xy) return; // (the same key with new points: an epoch recorded again)
    const keyChanged = key !== shownKey;
    const layerMethod = `${model.get("layer")}|${model.get("method")}`;
    const first = !xy;
    xy = found;
    shownKey = key;
    grid = new PointGrid(xy);
    // refit on a new layer or method; on a new epoch only if the user has not zoomed or panned, or if most points
    // left the picture (an untrained layer's PCA can span 0.1 and the trained one 30)
    if (first || layerMethod !== shownLayerMethod || !userMoved || visibleShare() < 0.5) { view.fit(grid.b); userMoved = false; }
    shownLayerMethod = layerMethod;
    if (keyChanged && focus >= 0) setFocus(focus); // the neighbours of the clicked point in the layer now shown
    updateColours();
    counts.textContent = `${n().toLocaleString("en-US")} points`;
    requestDraw();
  }
  function updateColours() {
    const c = decode(model.get("_colors"));
    colourArrays = c ? c.arrays : {};
    const fields = model.get("color_fields") || {};
    const by = model.get("color_by");
    colours = colourPoints(colourArrays[by], fields[by], n());
    shapes = shapePoints(colourArrays[by], fields[by], n());
    drawLegend();
    requestDraw();
  }
  function drawLegend() {
    const fields = model.get("color_fields") || {};
    const by = model.get("color_by");
    const field = fields[by];
    const values = colourArrays[by];
    legendTitle.textContent = by ? `colour: ${by}` : "";
    if (!field || !values) { legend.replaceChildren(); return; }
    if (field.kind !== "category") {
      let lo = Infinity; let hi = -Infinity;
      for (const v of values) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      legend.replaceChildren(h("div", "hw-note", `viridis from ${fmt(lo)} (dark) to ${fmt(hi)} (yellow)`));
      return;
    }
    const total = new Array(field.names.length).fill(0);
    const picked = new Array(field.names.length).fill(0);
    for (let i = 0; i < values.length; i++) { total[values[i]]++; if (selMask && selMask[i]) picked[values[i]]++; }
    legendTitle.textContent = `colour: ${by} · ${field.names.length} classes`
      + (field.names.length > PALETTE.length ? ` (${PALETTE.length} colours; after them the colours repeat with ○ ✕ ◆ markers)` : "");
    legend.replaceChildren(...field.names.map((name, k) => {
      const b = h("button", "hw-pj-legend-item");
      const sw = h("span", "hw-pj-swatch", shapeGlyph(shapeOf(k)));
      sw.style.color = PALETTE[k % PALETTE.length];
      const label = h("span", "hw-pj-name hw-legend-label", String(name));
      label.title = String(name);
      const count = h("span", "hw-pj-count", selection.length ? `${picked[k]} / ${total[k]}` : String(total[k]));
      b.append(sw, label, count);
      b.title = "Select this class (Shift adds, Alt removes)";
      b.addEventListener("click", (ev) => {
        const members = [];
        for (let i = 0; i < values.length; i++) if (values[i] === k) members.push(i);
        setSelection(combine(selection, members, ev.shiftKey ? "add" : ev.altKey ? "remove" : "replace"), true);
      });
      return b;
    }));
  }
  function legendCue() {
    // a legend taller than its box scrolls: say how many entries are below (no class hidden without a cue)
    const hidden = legend.scrollHeight - legend.clientHeight > 2;
    legendMore.textContent = hidden ? "scroll the list for more classes ↓" : "";
    legendMore.hidden = !hidden;
  }
  function setSelection(indices, fromView) {
    selection = indices;
    let top = n();
    for (const i of selection) if (i >= top) top = i + 1;
    selMask = new Uint8Array(top);
    for (const i of selection) if (i < selMask.length) selMask[i] = 1;
    selTitle.textContent = selection.length ? `${selection.length.toLocaleString("en-US")} selected` : "no selection";
    selCard.textContent = selection.length ? (isStatic ? "(static page: the selection stays in this page)" : "mirrored in Python as projector.selection") : "draw a lasso or a box, or click a legend entry";
    if (fromView) {
      const copy = Int32Array.from(selection);
      model.send({ type: "select", count: copy.length }, undefined, [copy.buffer]); // (content, callbacks, buffers)
    }
    drawLegend();
    requestDraw();
  }

  // -- examples (hover and neighbours) ---------------------------------------------------------------------------
  function exampleNode(i, size = THUMB_PX) {
    const kind = model.get("example_kind");
    if (kind === "none") return null;
    const p = pages.get(i);
    if (!p) return h("span", "hw-note", isStatic ? "not saved in this page" : "loading…");
    const j = i % PAGE;
    if (kind === "image" && p.images) return thumbCanvas(imageOf(p, i, model.get("example_meta").shape), model.get("example_meta").shape, size);
    if (kind === "text" && p.texts) return h("div", "hw-pj-text", String(p.texts[j] ?? ""));
    if (kind === "row" && p.rows) {
      const cols = model.get("example_meta").columns || [];
      const table = h("table", "hw-pj-row");
      cols.slice(0, 8).forEach((name, k) => {
        const tr = h("tr");
        tr.append(h("td", "", String(name)), h("td", "", fmt(p.rows[j * cols.length + k])));
        table.append(tr);
      });
      return table;
    }
    return h("span", "hw-note", "not available in this page");
  }
  function describe(i) {
    const fields = model.get("color_fields") || {};
    const parts = [`#${i}`];
    for (const [name, field] of Object.entries(fields)) {
      const v = colourArrays[name]?.[i];
      if (v === undefined) continue;
      parts.push(`${name}: ${field.kind === "category" ? field.names[v] : fmt(v)}`);
    }
    return parts.join(" · ");
  }
  function showHover() {
    if (hovered < 0) { hoverTitle.textContent = "hover a point"; hoverCard.replaceChildren(); return; }
    hoverTitle.textContent = describe(hovered);
    const node = exampleNode(hovered);
    hoverCard.replaceChildren(...(node ? [node] : []));
  }
  function staticNeighbours(i) {
    const s = (model.get("_static") || {}).neighbours;
    if (!s || !s.header || s.key !== shownKey || i < 0) return null;
    const table = decodeArrays(s.header.index, s.data).indices;
    const k = s.header.index.indices[2][1];
    return { index: i, indices: Array.from(table.subarray(i * k, (i + 1) * k)), distances: [] };
  }
  function showNeighbours() {
    if (focus < 0) { nbTitle.textContent = "click a point for its nearest neighbours in the layer"; nbCard.replaceChildren(); return; }
    if (!neighbours || neighbours.index !== focus) {
      nbTitle.textContent = isStatic ? `neighbours of #${focus}: not in this page (saved for another layer)` : `neighbours of #${focus}…`;
      nbCard.replaceChildren();
      return;
    }
    nbTitle.textContent = `${neighbours.indices.length} nearest to ${describe(focus)}`;
    const items = [focus, ...neighbours.indices].map((j, r) => {
      const cell = h("div", "hw-pj-thumb");
      const node = exampleNode(j, 44);
      if (node) cell.append(node);
      const d = r === 0 ? "clicked" : neighbours.distances.length ? `d ${fmt(neighbours.distances[r - 1])}` : `#${j}`;
      cell.append(h("span", "", r === 0 ? `#${j}` : d));
      cell.title = describe(j);
      cell.addEventListener("click", () => setFocus(j));
      return cell;
    });
    const strip = h("div", "hw-pj-thumbs");
    strip.append(...items);
    nbCard.replaceChildren(strip);
  }
  function setFocus(i) {
    focus = i;
    neighbours = null;
    if (i >= 0) {
      if (isStatic) neighbours = staticNeighbours(i);
      else model.send({ type: "neighbours", index: i, key: shownKey });
    }
    showNeighbours();
    drawOverlay();
  }

  // -- pointer -----------------------------------------------------------------------------------------------------
  function local(ev) {
    const r = plot.getBoundingClientRect();
    return [ev.clientX - r.left, ev.clientY - r.top];
  }
  function pick(px, py) {
    if (!grid) return -1;
    return grid.nearest(view.dx(px), view.dy(py), 6 / view.scale);
  }
  on(plot, "pointerdown", (ev) => {
    const [x, y] = local(ev);
    drag = { x, y, poly: [x, y], moved: false, mode: ev.shiftKey ? "add" : ev.altKey ? "remove" : "replace" };
    if (plot.setPointerCapture && ev.pointerId !== undefined) { try { plot.setPointerCapture(ev.pointerId); } catch { /* synthetic events */ } }
  });
  on(plot, "pointermove", (ev) => {
    const [x, y] = local(ev);
    if (drag) {
      const last = drag.poly.length - 2;
      if (Math.hypot(x - drag.poly[last], y - drag.poly[last + 1]) < 2) return;
      drag.moved = drag.moved || Math.hypot(x - drag.x, y - drag.y) > 3;
      if (tool === "pan") {
        userMoved = true;
        view.pan(x - drag.poly[last], y - drag.poly[last + 1]);
        drag.poly = [x, y];
        requestDraw();
        return;
      }
      if (tool === "box") drag.poly = [drag.x, drag.y, x, y];
      else drag.poly.push(x, y);
      drawOverlay();
      return;
    }
    const i = pick(x, y);
    if (i !== hovered) { hovered = i; showHover(); drawOverlay(); }
  });
  on(plot, "pointerup", (ev) => {
    if (!drag) return;
    const [x, y] = local(ev);
    const d = drag;
    drag = null;
    if (!d.moved) { setFocus(pick(x, y)); return; }
    if (tool !== "pan" && xy) {
      const picked = tool === "box" ? boxSelect(xy, view, d.x, d.y, x, y) : lassoSelect(xy, view, d.poly);
      setSelection(combine(selection, picked, d.mode), true);
    }
    drawOverlay();
  });
  on(plot, "pointerleave", () => { if (!drag && hovered >= 0) { hovered = -1; showHover(); drawOverlay(); } });
  on(plot, "wheel", (ev) => {
    ev.preventDefault();
    const [x, y] = local(ev);
    userMoved = true;
    view.zoom(Math.exp(-ev.deltaY * 0.0015), x, y);
    requestDraw();
  }, { passive: false });
  on(plot, "dblclick", () => { if (grid) { view.fit(grid.b); userMoved = false; requestDraw(); } });
  on(plot, "keydown", (ev) => {
    const key = ev.key.toLowerCase();
    if (key === "escape") setSelection(new Int32Array(0), true);
    else if (key === "p") setTool("pan");
    else if (key === "l") setTool("lasso");
    else if (key === "b") setTool("box");
    else if (key === "0" && grid) { view.fit(grid.b); userMoved = false; requestDraw(); } else return;
    ev.preventDefault();
  });
  function setTool(name) {
    tool = name;
    plot.dataset.tool = name;
    for (const [k, b] of Object.entries(tools)) b.setAttribute("aria-pressed", String(k === name));
  }
  for (const [name, b] of Object.entries(tools)) on(b, "click", () => setTool(name));
  on(clear, "click", () => setSelection(new Int32Array(0), true));
  on(reset, "click", () => { if (grid) { view.fit(grid.b); userMoved = false; requestDraw(); } });
  on(layerSel, "change", () => save("layer", layerSel.value));
  on(methodSel, "change", () => save("method", methodSel.value));
  on(colourSel, "change", () => { model.set("color_by", colourSel.value); model.save_changes(); });
  on(epochRange, "input", () => {
    const epochs = model.get("epochs") || [];
    const k = Number(epochRange.value);
    save("epoch", k >= epochs.length - 1 ? -1 : epochs[k]);
  });
  on(play, "click", () => {
    if (playing) { clearInterval(playing); playing = 0; play.textContent = "▶ play"; return; }
    const epochs = model.get("epochs") || [];
    if (epochs.length < 2) return;
    let k = 0;
    play.textContent = "■ stop";
    save("epoch", epochs[0]);
    playing = /** @type {any} */ (setInterval(() => {
      k += 1;
      if (k >= epochs.length) { clearInterval(playing); playing = 0; play.textContent = "▶ play"; save("epoch", -1); return; }
      save("epoch", k === epochs.length - 1 ? -1 : epochs[k]);
    }, 500));
  });

  // -- model -------------------------------------------------------------------------------------------------------
  function fillSelect(sel, options, value) {
    if (sel.options.length !== options.length || [...sel.options].some((o, i) => o.value !== options[i])) {
      sel.replaceChildren(...options.map((o) => { const opt = /** @type {HTMLOptionElement} */ (h("option", "", String(o))); opt.value = String(o); return opt; }));
    }
    sel.value = value;
  }
  function updateControls() {
    title.textContent = model.get("title") || "Projector";
    fillSelect(layerSel, model.get("layers") || [], model.get("layer"));
    fillSelect(methodSel, model.get("methods") || ["pca"], model.get("method"));
    fillSelect(colourSel, Object.keys(model.get("color_fields") || {}), model.get("color_by"));
    const epochs = model.get("epochs") || [];
    epochBox.style.display = epochs.length ? "" : "none";
    epochRange.max = String(Math.max(0, epochs.length - 1));
    const ep = model.get("epoch");
    const k = ep < 0 || !epochs.includes(ep) ? epochs.length - 1 : epochs.indexOf(ep);
    epochRange.value = String(Math.max(0, k));
    epochText.textContent = epochs.length ? `${epochs[Math.max(0, k)]}${ep < 0 ? " (latest)" : ""}` : "";
    const s = model.get("status") || "";
    status.textContent = s;
    status.dataset.error = String(s.startsWith("error"));
  }
  const onPoints = () => { takePoints(model.get("_points")); showPoints(); };
  const onView = () => { updateControls(); showPoints(); };
  const onColours = () => { updateControls(); updateColours(); };
  const onSelection = () => {
    const s = decode(model.get("_selection"));
    const incoming = s ? /** @type {Int32Array} */ (s.arrays.indices) : new Int32Array(0);
    if (incoming.length !== selection.length || incoming.some((v, i) => v !== selection[i])) setSelection(Int32Array.from(incoming), false);
  };
  const onMsg = (msg, buffers) => {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "stale") { // an epoch recorded again: its pictures (and those aligned to it) are redone
      for (const key of msg.keys || []) { pointsCache.delete(key); asked.delete(key); }
      if ((msg.keys || []).includes(shownKey)) showPoints();
      return;
    }
    if (pages.receive(msg, buffers)) {
      showHover();
      showNeighbours();
    } else if (msg.type === "neighbours" && msg.index === focus && (!msg.key || msg.key === shownKey)) {
      if (msg.error) { nbTitle.textContent = msg.error; return; }
      neighbours = { index: msg.index, indices: msg.indices, distances: msg.distances };
      showNeighbours();
      drawOverlay();
    }
  };
  const sizing = mountView(root, "projector", (width, theme) => { layout(width, theme); drawLegend(); legendCue(); });
  on(legend, "scroll", () => { if (legend.scrollTop + legend.clientHeight >= legend.scrollHeight - 2) legendMore.hidden = true; });
  const events = [["change:_points", onPoints], ["change:layer change:epoch change:method change:epochs change:layers change:status change:title", onView],
    ["change:color_by change:color_fields change:_colors", onColours], ["change:_selection", onSelection], ["msg:custom", onMsg]];
  const bound = [];
  for (const [names, fn] of events) for (const ev of String(names).split(" ")) { model.on(ev, fn); bound.push([ev, fn]); }

  setTool("lasso");
  layout(Math.max(160, Math.floor(root.clientWidth || 920)), readTheme(root));
  updateControls();
  takePoints(model.get("_points"));
  showPoints();
  updateColours();
  onSelection();
  if (!selection.length) setSelection(new Int32Array(0), false);
  showHover();
  showNeighbours();
  return () => {
    sizing.dispose();
    for (const [ev, fn] of bound) model.off(ev, fn);
    for (const off of listeners) off();
    if (playing) clearInterval(playing);
    if (frame && typeof cancelAnimationFrame === "function") cancelAnimationFrame(frame);
    root.remove();
  };
}

export default { render };

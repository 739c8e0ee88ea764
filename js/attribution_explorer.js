// @ts-check
// The AttributionExplorer view: a methods x inputs grid. Each cell is the input in grey with the method's map
// over it (viridis for maps that are never negative, the diverging map centred on 0 for signed ones), and its
// deletion / insertion AUC and run time underneath. Methods, target, layer and opacity are chosen here; Python
// computes on a background thread and the progress bar and Cancel follow it.
import { decodeArrays } from "./lib/codec.js";
import { colorBar, drawPixels, fmt, h, setupCanvas } from "./lib/chart.js";
import { lut } from "./lib/colormap.js";
import { mountView } from "./lib/frame.js";
import { CSS } from "./lib/style.js";

const CELL = 136; // the largest cell; cells shrink to fit the output area down to MIN_CELL, then rows wrap
const MIN_CELL = 64;
/** Captions in words (the metric's full description is on hover, from Python's metric_help). */
const WORDS = { deletion: "deletion AUC", insertion: "insertion AUC", infidelity: "infidelity", sanity: "sanity check",
  sensitivity: "sensitivity" };

/** Whether any of a method's maps has values below 0 (then the whole row gets the diverging map). */
export function rowSigned(maps) {
  if (!maps) return false;
  for (let i = 0; i < maps.length; i++) if (maps[i] < 0) return true;
  return false;
}

let measurer = /** @type {CanvasRenderingContext2D | null | undefined} */ (undefined);
/** Width of caption text (12 px UI font) in CSS pixels. @param {string} text */
function textWidth(text) {
  if (measurer === undefined) {
    measurer = typeof document !== "undefined" ? document.createElement("canvas").getContext("2d") : null;
    if (measurer) measurer.font = "12px system-ui, -apple-system, 'Segoe UI', sans-serif";
  }
  return (measurer && measurer.measureText(text).width) || text.length * 6.2;
}

/** Finite [lo, hi] of values (a unit range if there are none). */
function range(values) {
  let lo = Infinity; let hi = -Infinity;
  for (let i = 0; i < values.length; i++) { const v = values[i]; if (Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; } }
  return Number.isFinite(lo) ? [lo, hi] : [0, 1];
}

/** @param {any} state */
function decode(state) {
  if (!state || !state.header) return null;
  return { ...state.header, arrays: decodeArrays(state.header.index, state.data) };
}

/**
 * Draw an image (C, H, W in [0, 1]) in grey with a map (H, W) over it, `size` CSS pixels square.
 * `scale`: [lo, hi] shared by a row, or null for the map's own range; `signed`: the row's choice of map for "auto".
 * @param {HTMLCanvasElement} canvas
 */
export function drawOverlay(canvas, image, shape, map, opacity, colormap = "auto", size = CELL,
  /** @type {number[] | null} */ scale = null, signedRow = /** @type {boolean | null} */ (null)) {
  const [c, hh, ww] = shape;
  const ctx = setupCanvas(canvas, size, size);
  if (!ctx || typeof ImageData === "undefined") return { signed: false };
  const img = new ImageData(ww, hh);
  let [lo, hi] = map ? range(map) : [0, 1];
  if (scale) [lo, hi] = scale;
  const signed = signedRow ?? (lo < 0 && hi > 0);
  const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
  const name = colormap === "auto" ? (signed ? "diverging" : "viridis") : colormap;
  const centred = name === "diverging";
  const table = lut(/** @type {any} */ (name));
  for (let p = 0; p < hh * ww; p++) {
    let g = 0;
    for (let k = 0; k < c; k++) g += image[k * hh * ww + p];
    g = (g / c) * 255;
    let r = g; let gg = g; let b = g;
    if (map) {
      const v = map[p];
      const t = centred ? (v / m + 1) / 2 : (hi > lo ? (v - lo) / (hi - lo) : 0);
      const q = Math.max(0, Math.min(255, Math.round(t * 255))) * 4;
      r = (1 - opacity) * g + opacity * table[q];
      gg = (1 - opacity) * g + opacity * table[q + 1];
      b = (1 - opacity) * g + opacity * table[q + 2];
    }
    img.data[p * 4] = r; img.data[p * 4 + 1] = gg; img.data[p * 4 + 2] = b; img.data[p * 4 + 3] = 255;
  }
  drawPixels(ctx, img, size, size);
  return { signed, name, lo: centred ? -m : lo, hi: centred ? m : hi };
}

/**
 * Draw a table row as bars, one per feature, from a zero line: positive up in red, negative down in blue (for
 * values, grey). The canvas gets a text title naming the largest bars (a title attribute is text, not markup).
 * @param {HTMLCanvasElement} canvas @param {ArrayLike<number>} values @param {string[] | null} names
 */
export function drawBars(canvas, values, names, signedColours = true, size = CELL) {
  const ctx = setupCanvas(canvas, size, size);
  const n = values.length;
  let m = 0;
  for (let i = 0; i < n; i++) if (Number.isFinite(values[i])) m = Math.max(m, Math.abs(values[i]));
  m = m || 1;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => Math.abs(values[b]) - Math.abs(values[a]));
  canvas.title = order.slice(0, 5).map((i) => `${names ? names[i] : `feature ${i}`}: ${fmt(values[i])}`).join("\n");
  if (!ctx) return;
  const w = size / n;
  const mid = size / 2;
  ctx.fillStyle = "rgba(128,128,128,0.12)";
  ctx.fillRect(0, 0, size, size);
  for (let i = 0; i < n; i++) {
    const v = values[i];
    const len = (Math.abs(v) / m) * (mid - 4);
    ctx.fillStyle = !signedColours ? "#868e96" : v >= 0 ? "#b40426" : "#3b4cc0";
    ctx.fillRect(i * w + w * 0.1, v >= 0 ? mid - len : mid, Math.max(1, w * 0.8), len);
  }
  ctx.fillStyle = "#868e96";
  ctx.fillRect(0, mid, size, 1);
}

/** @param {{model: any, el: HTMLElement}} ctx */
function render({ model, el }) {
  const root = h("div", "hw-am hw-ae");
  root.dataset.hwView = "attribution_explorer";
  const style = h("style");
  style.textContent = `${CSS}
.hw-ae-grid { display: grid; gap: 6px 8px; align-items: start; }
.hw-ae-rowhead { font-size: 12px; font-weight: 600; align-self: center; min-width: 0; overflow-wrap: anywhere; }
.hw-ae-grid[data-stacked="true"] .hw-ae-rowhead { grid-column: 1 / -1; margin-top: 6px; }
.hw-ae-rowhead .hw-ae-legend { font-weight: 400; }
.hw-ae-rowhead .hw-colorbar { font-weight: 400; font-size: 11px; gap: 3px; }
.hw-ae-rowhead .hw-colorbar-strip { width: 40px !important; }
.hw-ae-rowhead .hw-colorbar-scale { gap: 3px; }
.hw-ae-cell { font-size: 12px; color: var(--hw-muted); min-width: 0; }
.hw-ae-cell canvas { border-radius: 3px; }
.hw-ae-metric { display: block; white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
  font-variant-numeric: tabular-nums; line-height: 1.3; }
.hw-ae-err { color: var(--hw-bad); font-size: 12px; overflow-wrap: anywhere; }
.hw-ae-methods { display: flex; flex-wrap: wrap; gap: 4px 10px; margin: 4px 0 8px; font-size: 12px; }
.hw-ae-progress { width: 140px; }`;
  const header = h("div", "hw-am-header");
  const title = h("span", "hw-am-title");
  const targetLabel = h("label", "", "target ");
  const target = /** @type {HTMLSelectElement} */ (h("select", "hw-btn hw-ae-target"));
  targetLabel.appendChild(target);
  const layerLabel = h("label", "", "layer ");
  const layer = /** @type {HTMLSelectElement} */ (h("select", "hw-btn hw-ae-layer"));
  layerLabel.appendChild(layer);
  const cmapLabel = h("label", "", "colours ");
  const cmap = /** @type {HTMLSelectElement} */ (h("select", "hw-btn hw-ae-cmap"));
  cmap.replaceChildren(...[["auto", "auto"], ["viridis", "viridis"], ["diverging", "diverging (signed)"], ["heat", "heat"]]
    .map(([v, t]) => { const o = /** @type {HTMLOptionElement} */ (h("option", "", t)); o.value = v; return o; }));
  cmapLabel.appendChild(cmap);
  const scaleLabel = h("label", "", "scale ");
  const scaleSel = /** @type {HTMLSelectElement} */ (h("select", "hw-btn hw-ae-scale"));
  scaleSel.replaceChildren(...[["cell", "each map on its own"], ["row", "shared by each method's row"]]
    .map(([v, t]) => { const o = /** @type {HTMLOptionElement} */ (h("option", "", t)); o.value = v; return o; }));
  scaleSel.title = "Colour scale: each map from its own minimum to maximum, or one scale for all maps of a method";
  scaleLabel.appendChild(scaleSel);
  const opacityLabel = h("label", "", "opacity ");
  const opacity = /** @type {HTMLInputElement} */ (h("input", "hw-ae-opacity"));
  opacity.type = "range"; opacity.min = "0"; opacity.max = "1"; opacity.step = "0.05";
  opacityLabel.appendChild(opacity);
  const progress = /** @type {HTMLProgressElement} */ (h("progress", "hw-ae-progress"));
  progress.max = 1;
  const status = h("span", "hw-am-frames hw-ae-status");
  const cancel = /** @type {HTMLButtonElement} */ (h("button", "hw-btn hw-ae-cancel", "Cancel"));
  cancel.type = "button";
  header.append(title, targetLabel, layerLabel, cmapLabel, scaleLabel, opacityLabel, progress, status, cancel);
  const weightsLine = h("div", "hw-note hw-ae-weights");
  const weightsText = h("span");
  const refresh = /** @type {HTMLButtonElement} */ (h("button", "hw-btn hw-ae-refresh", "use current weights"));
  refresh.type = "button";
  refresh.title = "Copy the model's weights as they are now and compute the maps again";
  weightsLine.append(weightsText, " ", refresh);
  const methodsBox = h("div", "hw-ae-methods");
  const grid = h("div", "hw-ae-grid");
  root.append(style, header, weightsLine, methodsBox, grid);
  el.appendChild(root);

  const listeners = [];
  const on = (node, ev, fn) => { node.addEventListener(ev, fn); listeners.push(() => node.removeEventListener(ev, fn)); };
  const save = (key, value) => { model.set(key, value); model.save_changes(); };
  on(target, "change", () => save("target", target.value));
  on(layer, "change", () => save("layer", layer.value));
  on(cmap, "change", () => save("colormap", cmap.value));
  on(opacity, "input", () => { model.set("opacity", Number(opacity.value)); drawGrid(); });
  on(opacity, "change", () => model.save_changes());
  on(scaleSel, "change", () => drawGrid());
  on(cancel, "click", () => model.send({ type: "cancel" }));
  let width = 900;
  /** a method just ticked: its row is scrolled into view when it appears */
  let justTicked = "";
  on(refresh, "click", () => model.send({ type: "refresh" }));

  function drawControls() {
    title.textContent = model.get("title") || "Attributions";
    const g = decode(model.get("_gallery"));
    const classes = g ? g.arrays.probs.length / g.n : 0;
    const options = [["predicted", "predicted class"], ...(g && g.arrays.labels ? [["true", "true class"]] : []),
      ...(classes >= 3 ? [["top2", "2nd most probable"], ["top3", "3rd most probable"]] : []),
      ...Array.from({ length: classes }, (_, k) => [String(k), `class ${g && g.class_names ? g.class_names[k] : k}`])];
    if (target.options.length !== options.length) {
      target.replaceChildren(...options.map(([v, text]) => { const o = /** @type {HTMLOptionElement} */ (h("option", "", text)); o.value = v; return o; }));
    }
    target.value = model.get("target");
    const layers = model.get("layers") || [];
    if (layer.options.length !== layers.length) {
      layer.replaceChildren(...layers.map((n) => { const o = /** @type {HTMLOptionElement} */ (h("option", "", n)); o.value = n; return o; }));
    }
    layer.value = model.get("layer");
    layerLabel.hidden = !layers.length;
    cmapLabel.hidden = opacityLabel.hidden = scaleLabel.hidden = !!(g && g.tabular); // bars have their own colours
    opacity.value = String(model.get("opacity"));
    cmap.value = model.get("colormap") || "auto";
    const busy = model.get("progress") < 1;
    progress.value = model.get("progress");
    progress.hidden = !busy;
    cancel.hidden = !busy;
    status.textContent = model.get("status") || "";
    weightsText.textContent = model.get("weights") || "";
    refresh.hidden = !!model.get("__hw_static");
    root.dataset.busy = String(busy);
    const labels = model.get("method_labels") || {};
    const selected = model.get("selected_methods") || [];
    if (methodsBox.childElementCount !== (model.get("methods") || []).length) {
      methodsBox.replaceChildren(...(model.get("methods") || []).map((name) => {
        const lab = h("label");
        const box = /** @type {HTMLInputElement} */ (h("input"));
        box.type = "checkbox";
        box.dataset.method = name;
        on(box, "change", () => {
          const cur = model.get("selected_methods") || [];
          if (box.checked) justTicked = name;
          save("selected_methods", box.checked ? [...cur, name] : cur.filter((m) => m !== name));
        });
        const info = labels[name] || {};
        lab.title = info.paper || "";
        lab.append(box, document.createTextNode(` ${info.label || name}${info.needs_layer ? " (layer)" : ""}`));
        return lab;
      }));
    }
    for (const box of /** @type {HTMLInputElement[]} */ ([...methodsBox.querySelectorAll("input")])) {
      box.checked = selected.includes(box.dataset.method);
    }
  }

  function drawGrid() {
    const g = decode(model.get("_gallery"));
    const r = decode(model.get("_results"));
    if (!g) return;
    const n = g.n;
    const shape = g.index.images[2].slice(1);
    const size = shape.reduce((a, b) => a * b, 1);
    const names = g.feature_names || null;
    const classes = g.arrays.probs.length / n;
    const name = (k) => (g.class_names ? g.class_names[k] : String(k));
    // cells fill the width: beside a column of method names when they fit, else names above wrapping rows
    const gap = 8;
    const headW = Math.min(150, Math.max(90, Math.floor(width * 0.14)));
    const besideCell = Math.floor((width - headW - gap * n) / Math.max(1, n));
    const stacked = besideCell < MIN_CELL;
    const cellPx = stacked ? Math.max(MIN_CELL, Math.min(CELL, Math.floor((width - gap * (Math.min(n, 3) - 1)) / Math.min(n, 3))))
      : Math.min(CELL, besideCell);
    grid.dataset.stacked = String(stacked);
    grid.style.gridTemplateColumns = stacked ? `repeat(auto-fill, ${cellPx}px)` : `${headW}px repeat(${n}, ${cellPx}px)`;
    grid.replaceChildren();
    grid.appendChild(h("div", "hw-ae-rowhead", "input"));
    for (let i = 0; i < n; i++) {
      const cell = h("div", "hw-ae-cell");
      const canvas = /** @type {HTMLCanvasElement} */ (h("canvas"));
      if (g.tabular) drawBars(canvas, g.arrays.images.subarray(i * size, (i + 1) * size), names, false, cellPx);
      else drawOverlay(canvas, g.arrays.images.subarray(i * size, (i + 1) * size), shape, null, 0, "auto", cellPx);
      let best = 0;
      for (let k = 1; k < classes; k++) if (g.arrays.probs[i * classes + k] > g.arrays.probs[i * classes + best]) best = k;
      const caption = h("div", "");
      const line = (text, tip) => { const e = h("span", "hw-ae-metric", text); e.title = tip || text; caption.append(e); };
      if (g.arrays.labels) line(`true class ${name(g.arrays.labels[i])}`);
      line(`predicted ${name(best)}`, "the model's most probable class");
      line(`p = ${fmt(g.arrays.probs[i * classes + best])}`, "the model's probability of the predicted class");
      cell.append(canvas, caption);
      grid.appendChild(cell);
    }
    const opa = Number(model.get("opacity"));
    const cmapName = model.get("colormap") || "auto";
    const shared = scaleSel.value === "row";
    const help = (r && r.metric_help) || {};
    let scrollTo = null;
    for (const c of (r ? r.cells : [])) {
      const head = h("div", "hw-ae-rowhead");
      head.append(h("div", "hw-ae-method-name", c.label));
      // captions: "name value" where the name fits the cell, else the values alone with their names listed here
      const metricNames = [...Object.keys(c.metrics || {}).map((k) => WORDS[k] || k), "time"];
      const texts = Object.entries(c.metrics || {}).flatMap(([k, v]) => Array.from(v || [], (x) => `${WORDS[k] || k} ${fmt(x)}`));
      const words = texts.every((text) => textWidth(text) <= cellPx - 2);
      if (c.ready && !c.error && !words) head.append(h("div", "hw-note hw-ae-legend", `under each map: ${metricNames.join(", ")}`));
      head.dataset.method = c.method;
      grid.appendChild(head);
      if (c.method === justTicked) { scrollTo = head; justTicked = ""; }
      const maps = c.array ? r.arrays[c.array] : null;
      const msize = maps ? maps.length / n : 0;
      const fits = !g.tabular && msize === shape[1] * shape[2];
      // one map per method (row): diverging if any of its maps is signed, so a row never mixes the two
      const signed = rowSigned(maps);
      const rowScale = shared && maps ? range(maps) : null;
      if (rowScale && signed) { const m = Math.max(Math.abs(rowScale[0]), Math.abs(rowScale[1])); rowScale[0] = -m; rowScale[1] = m; }
      let keyScale = null;
      for (let i = 0; i < n; i++) {
        const cell = h("div", "hw-ae-cell");
        cell.dataset.method = c.method;
        if (!c.ready) {
          cell.append(h("div", "hw-note", "waiting…"));
        } else if (c.error) {
          cell.append(h("div", "hw-ae-err", c.error));
          cell.dataset.error = "true";
        } else {
          const canvas = /** @type {HTMLCanvasElement} */ (h("canvas"));
          if (g.tabular) {
            drawBars(canvas, maps.subarray(i * msize, (i + 1) * msize), names, true, cellPx);
          } else {
            keyScale = drawOverlay(canvas, g.arrays.images.subarray(i * size, (i + 1) * size), shape,
              fits ? maps.subarray(i * msize, (i + 1) * msize) : null, opa, cmapName, cellPx, rowScale, signed);
          }
          const caption = h("div", "");
          for (const [k, v] of Object.entries(c.metrics || {})) {
            const line = h("span", "hw-ae-metric", words ? `${WORDS[k] || k} ${fmt(v[i])}` : fmt(v[i]));
            line.title = help[k] || k;
            caption.append(line);
          }
          const ms = c.ms[i];
          const secs = ms >= 1000 ? `${fmt(ms / 1000)} s` : `${fmt(ms)} ms`;
          const time = h("span", "hw-ae-metric", words ? `time ${secs}` : secs);
          time.title = "time to compute this map";
          caption.append(time);
          cell.append(canvas, caption);
          cell.dataset.ready = "true";
        }
        grid.appendChild(cell);
      }
      if (keyScale && fits) { // the row's colour key
        const key = shared
          ? colorBar(keyScale.name, keyScale.lo, keyScale.hi, { note: "shared by the row" })
          : colorBar(keyScale.name, signed ? -1 : 0, 1, { note: signed ? "each map: ± its largest magnitude" : "each map: its min to max" });
        if (!shared) for (const [k, text] of [[0, signed ? "−max" : "min"], [1, "max"]]) key.querySelectorAll(".hw-colorbar-tick")[k].textContent = text;
        head.append(key);
      }
    }
    if (scrollTo && typeof scrollTo.scrollIntoView === "function") scrollTo.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  const update = () => { drawControls(); drawGrid(); };
  const sizing = mountView(root, "attribution_explorer", (w) => { width = w; drawGrid(); });
  const events = ["change:_results", "change:_gallery", "change:status", "change:progress", "change:selected_methods",
    "change:target", "change:layer", "change:title", "change:colormap", "change:weights"];
  for (const ev of events) model.on(ev, update);
  width = Math.max(160, Math.floor(root.clientWidth || 900));
  update();
  return () => {
    sizing.dispose();
    for (const ev of events) model.off(ev, update);
    for (const off of listeners) off();
    root.remove();
  };
}

export default { render };

// @ts-check
// The AttributionExplorer view: a methods x inputs grid. Each cell is the input in grey with the method's map
// over it (viridis for maps that are never negative, the diverging map centred on 0 for signed ones), and its
// deletion / insertion AUC and run time underneath. Methods, target, layer and opacity are chosen here; Python
// computes on a background thread and the progress bar and Cancel follow it.
import { decodeArrays } from "./lib/codec.js";
import { drawPixels, fmt, h, setupCanvas } from "./lib/chart.js";
import { lut } from "./lib/colormap.js";
import { CSS } from "./lib/style.js";

const CELL = 112;
const SHORT = { deletion: "del", insertion: "ins", infidelity: "inf", sanity: "san", sensitivity: "sens" };

/** @param {any} state */
function decode(state) {
  if (!state || !state.header) return null;
  return { ...state.header, arrays: decodeArrays(state.header.index, state.data) };
}

/**
 * Draw an image (C, H, W in [0, 1]) in grey with a map (H, W) over it.
 * @param {HTMLCanvasElement} canvas
 */
export function drawOverlay(canvas, image, shape, map, opacity, colormap = "auto") {
  const [c, hh, ww] = shape;
  const ctx = setupCanvas(canvas, CELL, CELL);
  if (!ctx || typeof ImageData === "undefined") return { signed: false };
  const img = new ImageData(ww, hh);
  let lo = Infinity;
  let hi = -Infinity;
  if (map) for (let i = 0; i < map.length; i++) { const v = map[i]; if (Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; } }
  const signed = lo < 0 && hi > 0;
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
  drawPixels(ctx, img, CELL, CELL);
  return { signed };
}

/**
 * Draw a table row as bars, one per feature, from a zero line: positive up in red, negative down in blue (for
 * values, grey). The canvas gets a text title naming the largest bars (a title attribute is text, not markup).
 * @param {HTMLCanvasElement} canvas @param {ArrayLike<number>} values @param {string[] | null} names
 */
export function drawBars(canvas, values, names, signedColours = true) {
  const ctx = setupCanvas(canvas, CELL, CELL);
  const n = values.length;
  let m = 0;
  for (let i = 0; i < n; i++) if (Number.isFinite(values[i])) m = Math.max(m, Math.abs(values[i]));
  m = m || 1;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => Math.abs(values[b]) - Math.abs(values[a]));
  canvas.title = order.slice(0, 5).map((i) => `${names ? names[i] : `feature ${i}`}: ${fmt(values[i])}`).join("\n");
  if (!ctx) return;
  const w = CELL / n;
  const mid = CELL / 2;
  ctx.fillStyle = "#f3f4f6";
  ctx.fillRect(0, 0, CELL, CELL);
  for (let i = 0; i < n; i++) {
    const v = values[i];
    const len = (Math.abs(v) / m) * (mid - 4);
    ctx.fillStyle = !signedColours ? "#868e96" : v >= 0 ? "#b40426" : "#3b4cc0";
    ctx.fillRect(i * w + w * 0.1, v >= 0 ? mid - len : mid, Math.max(1, w * 0.8), len);
  }
  ctx.fillStyle = "#868e96";
  ctx.fillRect(0, mid, CELL, 1);
}

/** @param {{model: any, el: HTMLElement}} ctx */
function render({ model, el }) {
  const root = h("div", "hw-am hw-ae");
  const style = h("style");
  style.textContent = `${CSS}
.hw-ae-grid { display: grid; gap: 6px 8px; align-items: start; overflow-x: auto; }
.hw-ae-rowhead { font-size: 12px; font-weight: 600; align-self: center; max-width: 130px; }
.hw-ae-cell { font-size: 11px; color: var(--jp-ui-font-color2, #656d76); width: ${CELL}px; }
.hw-ae-cell canvas { border-radius: 3px; }
.hw-ae-err { color: #9a3412; font-size: 11px; width: ${CELL}px; overflow-wrap: anywhere; }
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
  const opacityLabel = h("label", "", "opacity ");
  const opacity = /** @type {HTMLInputElement} */ (h("input", "hw-ae-opacity"));
  opacity.type = "range"; opacity.min = "0"; opacity.max = "1"; opacity.step = "0.05";
  opacityLabel.appendChild(opacity);
  const progress = /** @type {HTMLProgressElement} */ (h("progress", "hw-ae-progress"));
  progress.max = 1;
  const status = h("span", "hw-am-frames hw-ae-status");
  const cancel = /** @type {HTMLButtonElement} */ (h("button", "hw-btn hw-ae-cancel", "Cancel"));
  cancel.type = "button";
  header.append(title, targetLabel, layerLabel, cmapLabel, opacityLabel, progress, status, cancel);
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
  on(cancel, "click", () => model.send({ type: "cancel" }));
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
    cmapLabel.hidden = opacityLabel.hidden = !!(g && g.tabular); // bars have their own colours
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
    grid.style.gridTemplateColumns = `130px repeat(${n}, ${CELL}px)`;
    grid.replaceChildren();
    grid.appendChild(h("div", "hw-ae-rowhead", "input"));
    for (let i = 0; i < n; i++) {
      const cell = h("div", "hw-ae-cell");
      const canvas = /** @type {HTMLCanvasElement} */ (h("canvas"));
      if (g.tabular) drawBars(canvas, g.arrays.images.subarray(i * size, (i + 1) * size), names, false);
      else drawOverlay(canvas, g.arrays.images.subarray(i * size, (i + 1) * size), shape, null, 0);
      let best = 0;
      for (let k = 1; k < classes; k++) if (g.arrays.probs[i * classes + k] > g.arrays.probs[i * classes + best]) best = k;
      const truth = g.arrays.labels ? `true ${name(g.arrays.labels[i])} · ` : "";
      cell.append(canvas, h("div", "", `${truth}pred ${name(best)} (${fmt(g.arrays.probs[i * classes + best])})`));
      grid.appendChild(cell);
    }
    const opa = Number(model.get("opacity"));
    for (const c of (r ? r.cells : [])) {
      const head = h("div", "hw-ae-rowhead", c.label);
      head.dataset.method = c.method;
      grid.appendChild(head);
      const maps = c.array ? r.arrays[c.array] : null;
      const msize = maps ? maps.length / n : 0;
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
            drawBars(canvas, maps.subarray(i * msize, (i + 1) * msize), names);
          } else {
            const fits = msize === shape[1] * shape[2];
            drawOverlay(canvas, g.arrays.images.subarray(i * size, (i + 1) * size), shape,
              fits ? maps.subarray(i * msize, (i + 1) * msize) : null, opa, model.get("colormap") || "auto");
          }
          const parts = Object.entries(c.metrics || {}).map(([k, v]) => `${SHORT[k] || k} ${fmt(v[i])}`);
          parts.push(`${fmt(c.ms[i])} ms`);
          const line = h("div", "", parts.join(" · "));
          line.title = Object.values(r.metric_help || {}).join("\n");
          cell.append(canvas, line);
          cell.dataset.ready = "true";
        }
        grid.appendChild(cell);
      }
    }
  }

  const update = () => { drawControls(); drawGrid(); };
  const events = ["change:_results", "change:_gallery", "change:status", "change:progress", "change:selected_methods",
    "change:target", "change:layer", "change:title", "change:colormap", "change:weights"];
  for (const ev of events) model.on(ev, update);
  update();
  return () => {
    for (const ev of events) model.off(ev, update);
    for (const off of listeners) off();
    root.remove();
  };
}

export default { render };

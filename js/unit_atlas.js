// @ts-check
// The UnitAtlas view: a page of a layer's units as tiles (optimised image, top data set examples cropped to the
// receptive field, dissection label), a pager, and on click a unit's detail (facets, top and bottom examples with
// the receptive-field box, the histogram of its scores over the data, the negative optimisation); an inversion
// panel reconstructs one example from each layer. Python computes on a background thread: the view asks by
// setting traits (layer, objective, seed, page, unit, inversion_example) and draws live frames as they come.
// A static page (save_html) holds every result computed so far in `_static`; what needs a kernel says so.
import { decodeArrays } from "./lib/codec.js";
import { fmt, h } from "./lib/chart.js";
import { thumbCanvas } from "./lib/examples.js";
import { FrameMeter, drawHistogram, drawImage, nth } from "./lib/pictures.js";
import { CSS } from "./lib/style.js";
import { mountView } from "./lib/frame.js";

const IMG = 104; // tile image, CSS pixels
const CROP = 24; // tile crops
const CROPS_SHOWN = 4;
const DETAIL_IMG = 128;
const EXAMPLE_IMG = 64;
const NEEDS_KERNEL = "needs a running kernel: this page shows what was computed before it was saved";

const LOCAL_CSS = `
.hw-ua { max-width: 1100px; }
.hw-ua-ex, .hw-ua-facet, .hw-ua-fig { max-width: 100%; }
.hw-ua-bar { display: flex; gap: 10px; flex-wrap: wrap; align-items: center; margin: 4px 0 6px; font-size: 12px; }
.hw-ua-bar select, .hw-ua-bar input { font: inherit; font-size: 12px; }
.hw-ua-bar input[type="number"] { width: 64px; }
.hw-ua-status { font-size: 12px; color: var(--hw-muted); overflow-wrap: anywhere; }
.hw-ua-status[data-error="true"] { color: var(--hw-bad); }
.hw-ua-live { display: flex; gap: 8px; align-items: center; font-size: 12px; min-height: 20px;
  font-variant-numeric: tabular-nums; color: var(--hw-muted); }
.hw-ua-live progress { width: 140px; }
.hw-ua-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(${IMG + 10}px, 1fr)); gap: 8px;
  margin: 6px 0; }
.hw-ua-tile { border: 1px solid var(--jp-border-color2, #e3e6ea); border-radius: 6px; padding: 4px; cursor: pointer;
  display: flex; flex-direction: column; align-items: center; gap: 3px; background: var(--jp-layout-color1, #fff);
  min-width: 0; }
.hw-ua-tile:hover, .hw-ua-tile:focus { border-color: var(--hw-accent); outline: none; }
.hw-ua-tile[aria-pressed="true"] { border-color: var(--hw-accent); box-shadow: 0 0 0 1px var(--hw-accent); }
.hw-ua-tile-head { display: flex; justify-content: space-between; width: ${IMG}px; font-size: 11px; gap: 4px; }
.hw-ua-unit { font-weight: 600; white-space: nowrap; }
.hw-ua-value { font-variant-numeric: tabular-nums; color: var(--hw-muted); white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }
.hw-ua-img { width: ${IMG}px; height: ${IMG}px; background: var(--hw-neutral-tint); border-radius: 3px; image-rendering: pixelated; }
.hw-ua-crops { display: flex; gap: 2px; width: ${IMG}px; justify-content: space-between; min-height: ${CROP}px; }
.hw-ua-crops canvas { image-rendering: pixelated; border-radius: 2px; }
.hw-ua-label { font-size: 11px; width: 100%; min-height: 15px; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; text-align: center; }
.hw-ua-chip { background: var(--hw-neutral-tint); color: inherit; border: 1px solid var(--hw-accent); border-radius: 8px; padding: 0 6px;
  display: inline-block; max-width: 100%; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; vertical-align: bottom; }
.hw-ua-chip[data-weak="true"] { border-color: transparent; color: var(--hw-muted); }
.hw-ua-wait { font-size: 11px; color: var(--hw-muted); }
.hw-ua-pager { display: flex; gap: 10px; align-items: center; font-size: 12px; margin: 4px 0; }
.hw-ua-panel { border: 1px solid var(--jp-border-color2, #e3e6ea); border-radius: 6px; padding: 8px 10px; margin: 8px 0; }
.hw-ua-panel-head { display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; margin-bottom: 6px; }
.hw-ua-panel-title { font-weight: 600; }
.hw-ua-row { display: flex; gap: 14px; flex-wrap: wrap; align-items: flex-start; margin: 6px 0; }
.hw-ua-fig { display: flex; flex-direction: column; gap: 2px; font-size: 11px; max-width: ${DETAIL_IMG + 40}px; }
.hw-ua-fig canvas { image-rendering: pixelated; border-radius: 3px; }
.hw-ua-cap { color: var(--hw-muted); overflow-wrap: anywhere; }
.hw-ua-strip { display: flex; gap: 4px; flex-wrap: wrap; }
.hw-ua-ex { display: flex; flex-direction: column; align-items: center; font-size: 10px; line-height: 1.25;
  color: var(--hw-muted); width: ${EXAMPLE_IMG + 6}px; overflow: hidden; font-variant-numeric: tabular-nums; }
.hw-ua-ex canvas + span { margin-top: 2px; }
.hw-ua-ex canvas { image-rendering: pixelated; }
.hw-ua-facet { display: flex; flex-direction: column; gap: 3px; font-size: 11px; width: ${EXAMPLE_IMG + 64}px; }
.hw-ua-section { font-size: 12px; color: var(--hw-muted); margin-top: 6px; }
.hw-ua-concepts { font-size: 12px; display: flex; gap: 6px; flex-wrap: wrap; }
.hw-ua .hw-btn:disabled { opacity: 0.5; cursor: default; }
`;

/** @param {any} state */
function decode(state) {
  if (!state || !state.header) return null;
  const index = state.header.index || {};
  const data = state.data;
  return { ...state.header, arrays: data && Object.keys(index).length ? decodeArrays(index, data) : {} };
}

/** Python's key for a page or a detail: parts joined by "|". */
export function atlasKey(...parts) { return parts.map(String).join("|"); }

/** Units of page `page` from the layer's unit list. */
export function pageUnits(units, page, size) { return (units || []).slice(page * size, (page + 1) * size); }

/** @param {{model: any, el: HTMLElement}} ctx */
function render({ model, el }) {
  const isStatic = Boolean(model.get("__hw_static"));
  const root = h("div", "hw-am hw-ua");
  root.dataset.hwView = "unit_atlas";
  const style = h("style");
  style.textContent = CSS + LOCAL_CSS;
  const head = h("div", "hw-am-header");
  const title = h("span", "hw-am-title");
  const status = h("span", "hw-ua-status");
  head.append(title, status);

  const bar = h("div", "hw-ua-bar");
  const labelled = (text, node) => { const l = h("label"); l.append(`${text} `, node); return l; };
  const layerSel = /** @type {HTMLSelectElement} */ (h("select", "hw-ua-layer"));
  const objSel = /** @type {HTMLSelectElement} */ (h("select", "hw-ua-objective"));
  const seedBox = /** @type {HTMLInputElement} */ (h("input", "hw-ua-seed"));
  seedBox.type = "number"; seedBox.min = "0"; seedBox.step = "1";
  seedBox.title = "Seed of the random start and transforms: another seed, other images of the same units";
  bar.append(labelled("layer", layerSel), labelled("objective", objSel), labelled("seed", seedBox));

  const weightsLine = h("div", "hw-note hw-ua-weights");
  const weightsText = h("span");
  const refresh = /** @type {HTMLButtonElement} */ (h("button", "hw-btn hw-ua-refresh", "use current weights"));
  refresh.type = "button";
  refresh.title = "Copy the model's weights as they are now and compute the atlas again";
  weightsLine.append(weightsText, " ", refresh);

  const live = h("div", "hw-ua-live");
  const progress = /** @type {HTMLProgressElement} */ (h("progress", "hw-ua-progress"));
  progress.max = 1;
  const liveText = h("span", "hw-ua-livetext");
  const fpsText = h("span", "hw-ua-fps");
  const cancel = /** @type {HTMLButtonElement} */ (h("button", "hw-btn hw-ua-cancel", "Cancel"));
  cancel.type = "button";
  cancel.title = "Stop the computation in progress (after its current step)";
  live.append(progress, liveText, fpsText, cancel);

  const objectiveNote = h("div", "hw-note hw-ua-objnote");
  const pager = h("div", "hw-ua-pager");
  const prev = /** @type {HTMLButtonElement} */ (h("button", "hw-btn hw-ua-prev", "◀ prev"));
  const next = /** @type {HTMLButtonElement} */ (h("button", "hw-btn hw-ua-next", "next ▶"));
  prev.type = next.type = "button";
  const pageText = h("span", "hw-ua-pagetext");
  const pageNote = h("span", "hw-note hw-ua-pagenote");
  pager.append(prev, pageText, next, pageNote);
  const grid = h("div", "hw-ua-grid");
  const detail = h("div", "hw-ua-panel hw-ua-detail");
  detail.hidden = true;

  const inversion = h("div", "hw-ua-panel hw-ua-inversion");
  const invHead = h("div", "hw-ua-panel-head");
  const invExample = /** @type {HTMLInputElement} */ (h("input", "hw-ua-invexample"));
  invExample.type = "number"; invExample.min = "0"; invExample.step = "1"; invExample.value = "0";
  const invGo = /** @type {HTMLButtonElement} */ (h("button", "hw-btn hw-ua-invert", "reconstruct"));
  invGo.type = "button";
  invHead.append(h("span", "hw-ua-panel-title", "Inversion"), labelled("example", invExample), invGo);
  const invNote = h("div", "hw-note", "the example reconstructed from each layer's code alone (Mahendran & Vedaldi 2015): "
    + "what a layer keeps of the input; pixel error ‖x − x₀‖ / ‖x₀‖, code error ‖Φ(x) − Φ(x₀)‖ / ‖Φ(x₀)‖");
  const invBody = h("div", "hw-ua-row hw-ua-invbody");
  inversion.append(invHead, invNote, invBody);

  root.append(style, head, bar, weightsLine, live, objectiveNote, pager, grid, detail, inversion);
  el.appendChild(root);

  /** @type {Map<string, any>} */ const tiles = new Map();
  /** @type {Map<string, any>} */ const details = new Map();
  /** @type {Map<string, any>} */ const inversions = new Map();
  /** @type {Map<string, string>} */ const errors = new Map();
  /** live frames: target|key -> {units, shape, images} */
  const frames = new Map();
  /** @type {Map<number, HTMLCanvasElement>} */ let tileCanvas = new Map();
  const meter = new FrameMeter();
  const inspect = { meter, frames: 0, tiles, details, inversions };
  /** @type {any} */ (root).__hwAtlas = inspect;
  let version = model.get("version") || 0;
  let liveState = { step: 0, total: 0, value: null, target: "" };

  const stat = model.get("_static") || {};
  for (const [key, s] of Object.entries(stat.pages || {})) tiles.set(key, decode(s));
  for (const [key, s] of Object.entries(stat.details || {})) details.set(key, decode(s));
  for (const [key, s] of Object.entries(stat.inversions || {})) inversions.set(key, decode(s));

  const listeners = [];
  const on = (node, ev, fn) => { node.addEventListener(ev, fn); listeners.push(() => node.removeEventListener(ev, fn)); };
  const save = (key, value) => { model.set(key, value); model.save_changes(); };
  const info = () => (model.get("layer_info") || {})[model.get("layer")] || { units: [], kind: "conv" };
  const pages = () => Math.max(1, Math.ceil(info().units.length / (model.get("page_size") || 1)));
  const pageKey = () => atlasKey(model.get("layer"), model.get("objective"), model.get("seed"), model.get("page"));
  const detailKey = () => atlasKey(model.get("layer"), model.get("objective"), model.get("seed"), model.get("unit"));
  const fetch = (what) => { if (!isStatic) model.send({ type: "fetch", what }); };

  on(layerSel, "change", () => save("layer", layerSel.value));
  on(objSel, "change", () => save("objective", objSel.value));
  on(seedBox, "change", () => { const v = Math.max(0, Math.floor(Number(seedBox.value) || 0)); save("seed", v); });
  on(prev, "click", () => { if (model.get("page") > 0) save("page", model.get("page") - 1); });
  on(next, "click", () => { if (model.get("page") < pages() - 1) save("page", model.get("page") + 1); });
  on(cancel, "click", () => model.send({ type: "cancel" }));
  on(refresh, "click", () => model.send({ type: "refresh" }));
  on(invGo, "click", () => {
    const v = Math.floor(Number(invExample.value));
    const n = model.get("n_examples") || 0;
    if (!(v >= 0 && v < n)) { invBody.replaceChildren(h("span", "hw-note", `choose an example 0..${n - 1}`)); return; }
    save("inversion_example", v);
  });

  // -- header and controls ------------------------------------------------------------------------------------
  function options(select, values) {
    if ([...select.options].map((o) => o.value).join("\u0000") !== values.join("\u0000")) {
      select.replaceChildren(...values.map((v) => { const o = /** @type {HTMLOptionElement} */ (h("option", "", v)); o.value = v; return o; }));
    }
  }

  function drawControls() {
    title.textContent = model.get("title") || "Unit atlas";
    options(layerSel, model.get("layers") || []);
    layerSel.value = model.get("layer");
    options(objSel, model.get("objectives") || []);
    objSel.value = model.get("objective");
    seedBox.value = String(model.get("seed"));
    weightsText.textContent = (model.get("weights") || "") + (isStatic ? ` · a saved page: it shows what was computed; computing more ${NEEDS_KERNEL.split(":")[0]}` : "");
    refresh.disabled = isStatic;
    if (isStatic) refresh.title = `use current weights ${NEEDS_KERNEL}`;
    const text = model.get("status") || "";
    status.textContent = text;
    status.dataset.error = String(text.startsWith("error"));
    const busy = Boolean(model.get("busy")) && !isStatic;
    cancel.hidden = !busy;
    progress.hidden = !busy;
    root.dataset.busy = String(busy);
    if (!busy) liveText.textContent = "";
    const p = model.get("page");
    const size = model.get("page_size") || 1;
    const units = info().units;
    const shown = pageUnits(units, p, size);
    pageText.textContent = shown.length
      ? `units ${shown[0]}–${shown[shown.length - 1]} of ${units.length} · page ${p + 1} of ${pages()}` : "no units";
    prev.disabled = p <= 0;
    next.disabled = p >= pages() - 1;
    const n = model.get("n_examples") || 0;
    invExample.max = String(Math.max(0, n - 1));
  }

  function drawLive() {
    const { step, total, value, target } = liveState;
    if (total) progress.value = step / total;
    const what = { page: "optimising the page", negative: "negative optimisation", facets: "facets", inversion: "inversion", pass: "" }[target] ?? "";
    liveText.textContent = target === "pass" ? liveState.what
      : `${what} · step ${step} of ${total}${value === null || value === undefined ? "" : ` · objective ${fmt(value)}`}`;
    const rate = meter.rate();
    fpsText.textContent = rate ? `${rate.toFixed(1)} frames/s` : "";
  }

  // -- tiles -------------------------------------------------------------------------------------------------
  function drawGrid() {
    const key = pageKey();
    const t = tiles.get(key);
    const units = t ? t.units : pageUnits(info().units, model.get("page"), model.get("page_size") || 1);
    objectiveNote.textContent = t ? `${t.objective_text} · ${(model.get("settings") || {}).steps} steps`
      + (t.n_examples ? ` · examples: the top ${(model.get("settings") || {}).k} of ${t.n_examples} by the unit's ${(model.get("settings") || {}).pool} over positions` : "")
      + (t.dissection_note ? ` · ${t.dissection_note}` : "") : "";
    const err = (t && t.error) || errors.get(`tiles|${key}`);
    pageNote.textContent = err ? err : !t && isStatic ? `this page was not computed before the page was saved (${NEEDS_KERNEL})` : "";
    tileCanvas = new Map();
    const unit = model.get("unit");
    grid.replaceChildren(...units.map((u, i) => tile(u, i, t, u === unit)));
    const live = frames.get(`page|${key}`);
    if (live) drawFrame("page", key, live);
  }

  function tile(u, i, t, pressed) {
    const box = h("div", "hw-ua-tile");
    box.tabIndex = 0;
    box.dataset.unit = String(u);
    box.setAttribute("role", "button");
    box.setAttribute("aria-pressed", String(pressed));
    const top = h("div", "hw-ua-tile-head");
    const value = h("span", "hw-ua-value");
    top.append(h("span", "hw-ua-unit", `unit ${u}`), value);
    const canvas = /** @type {HTMLCanvasElement} */ (h("canvas", "hw-ua-img"));
    tileCanvas.set(u, canvas);
    const crops = h("div", "hw-ua-crops");
    const label = h("div", "hw-ua-label");
    box.append(top, canvas, crops, label);
    const a = t ? t.arrays : {};
    const state = a.state ? a.state[i] : 0;
    box.dataset.state = ["waiting", "done", "stopped"][state];
    if (state && a.images) {
      const [px, shape] = nth(a.images, t.index.images[2], i);
      drawImage(canvas, px, shape, IMG);
      value.textContent = state === 2 ? `stopped ${a.steps[i]}/${(model.get("settings") || {}).steps}` : fmt(a.values[i]);
      value.title = state === 2 ? "optimisation stopped before the end: cancelled, or the view moved on"
        : "the objective on the optimised image";
    } else {
      value.textContent = isStatic ? "not computed" : "…";
    }
    if (a.crops) {
      const cshape = t.index.crops[2];
      const k = cshape[1];
      const per = cshape.slice(2).reduce((x, y) => x * y, 1);
      for (let j = 0; j < Math.min(CROPS_SHOWN, k); j++) {
        if (a.top_indices[i * k + j] < 0) continue;
        const c = thumbCanvas(a.crops.subarray((i * k + j) * per, (i * k + j + 1) * per), cshape.slice(2), CROP);
        c.title = `example ${a.top_indices[i * k + j]}: score ${fmt(a.top_values[i * k + j])}`;
        crops.appendChild(c);
      }
    }
    if (t && t.concepts) {
      const iou = a.iou[i];
      const chip = h("span", "hw-ua-chip", `${t.concepts[i]} ${iou.toFixed(2)}`);
      chip.dataset.weak = String(!(iou > 0.04));
      chip.title = `dissection: the concept whose masks overlap this unit's top activations most (IoU ${fmt(iou)}; `
        + "Bau et al. call a unit a detector above 0.04)";
      label.appendChild(chip);
      label.title = chip.textContent || "";
    }
    return box;
  }

  const tileOf = (ev) => /** @type {HTMLElement | null} */ (ev.target instanceof HTMLElement ? ev.target.closest(".hw-ua-tile") : null);
  on(grid, "click", (ev) => { const t = tileOf(ev); if (t) openUnit(Number(t.dataset.unit)); });
  on(grid, "keydown", (ev) => {
    const t = tileOf(ev);
    if (t && (ev.key === "Enter" || ev.key === " ")) { ev.preventDefault(); openUnit(Number(t.dataset.unit)); }
  });
  on(detail, "click", (ev) => { if (ev.target instanceof HTMLElement && ev.target.closest(".hw-ua-close")) save("unit", -1); });

  function openUnit(u) {
    if (model.get("unit") === u) { save("unit", -1); return; }
    save("unit", u);
  }

  function drawFrame(target, key, f) {
    if (target === "page") {
      if (key !== pageKey()) return;
      const t = tiles.get(key);
      f.units.forEach((u, i) => {
        const canvas = tileCanvas.get(u);
        const j = t ? t.units.indexOf(u) : -1;
        if (!canvas || (t && j >= 0 && t.arrays.state && t.arrays.state[j] === 1)) return; // finished: keep the result
        const [px, shape] = nth(f.images, f.shape, i);
        drawImage(canvas, px, shape, IMG);
        canvas.dataset.live = String(f.step);
      });
    } else if ((target === "negative" || target === "facets") && key === detailKey()) {
      const node = detail.querySelector(target === "negative" ? ".hw-ua-negative" : ".hw-ua-facets");
      if (!node) return;
      const canvases = [...node.querySelectorAll("canvas.hw-ua-liveimg")];
      f.units.forEach((_, i) => {
        if (!canvases[i]) return;
        const [px, shape] = nth(f.images, f.shape, i);
        drawImage(/** @type {HTMLCanvasElement} */ (canvases[i]), px, shape, target === "negative" ? DETAIL_IMG : EXAMPLE_IMG + 32);
      });
    } else if (target === "inversion" && key === String(model.get("inversion_example"))) {
      const canvases = [...invBody.querySelectorAll("canvas.hw-ua-liveimg")];
      f.units.forEach((_, i) => {
        if (!canvases[i]) return;
        const [px, shape] = nth(f.images, f.shape, i);
        drawImage(/** @type {HTMLCanvasElement} */ (canvases[i]), px, shape, EXAMPLE_IMG + 32);
      });
    }
  }

  // -- the unit's detail ---------------------------------------------------------------------------------------
  function examplesStrip(d, which) {
    const a = d.arrays;
    const strip = h("div", "hw-ua-strip");
    strip.dataset.which = which;
    const images = a[`${which}_images`];
    if (!images) return strip;
    const shape = d.index[`${which}_images`][2];
    const boxes = a[`${which}_boxes`];
    const labels = d[`${which}_labels`] || [];
    for (let i = 0; i < shape[0]; i++) {
      const fig = h("div", "hw-ua-ex");
      const c = /** @type {HTMLCanvasElement} */ (h("canvas"));
      const [px, sh] = nth(images, shape, i);
      drawImage(c, px, sh, EXAMPLE_IMG, boxes ? Array.from(boxes.subarray(i * 4, i * 4 + 4)) : null, d.image_size);
      fig.append(c, h("span", "", `#${a[`${which}_indices`][i]}`), h("span", "", fmt(a[`${which}_values`][i])));
      if (labels[i]) fig.append(h("span", "", labels[i]));
      if (a[`${which}_crops`]) {
        const cs = d.index[`${which}_crops`][2];
        const [cpx, csh] = nth(a[`${which}_crops`], cs, i);
        const crop = thumbCanvas(cpx, csh, 32);
        crop.title = "the receptive-field crop";
        fig.append(crop);
      }
      strip.appendChild(fig);
    }
    return strip;
  }

  /** A canvas with a caption (one line per entry of `caption`). */
  function figure(caption, size, pixels, shape, cls) {
    const fig = h("div", `hw-ua-fig ${cls || ""}`);
    const c = /** @type {HTMLCanvasElement} */ (h("canvas", "hw-ua-liveimg"));
    if (pixels) drawImage(c, pixels, shape, size);
    else { c.width = c.height = 0; c.style.width = c.style.height = `${size}px`; c.style.background = "rgba(128,128,128,0.14)"; }
    fig.append(c, ...(Array.isArray(caption) ? caption : [caption]).map((line) => h("span", "hw-ua-cap", line)));
    return fig;
  }

  function drawDetail() {
    const unit = model.get("unit");
    detail.hidden = unit < 0;
    if (unit < 0) { detail.replaceChildren(); return; }
    const key = detailKey();
    const d = details.get(key);
    const headRow = h("div", "hw-ua-panel-head");
    const close = h("button", "hw-btn hw-ua-close", "close");
    headRow.append(h("span", "hw-ua-panel-title", `${model.get("layer")} · unit ${unit}`));
    if (d && d.concepts && d.concepts.length) {
      const cs = h("span", "hw-ua-concepts");
      for (const [name, iou] of d.concepts.slice(0, 3)) {
        const chip = h("span", "hw-ua-chip", `${name} · IoU ${iou.toFixed(2)}`);
        chip.dataset.weak = String(!(iou > 0.04));
        cs.appendChild(chip);
      }
      headRow.append(cs);
    }
    headRow.append(close);
    const body = [headRow];
    const err = (d && d.error) || errors.get(`detail|${key}`);
    if (err) body.push(h("div", "hw-ua-status", err));
    if (!d) {
      body.push(h("div", "hw-note", isStatic ? `this unit's detail was not computed before the page was saved (${NEEDS_KERNEL})` : "computing…"));
      detail.replaceChildren(...body);
      return;
    }
    const a = d.arrays;
    const row = h("div", "hw-ua-row");
    const t = tiles.get(pageKey());
    const j = t ? t.units.indexOf(unit) : -1;
    if (a.image) row.append(figure(`optimised · ${fmt(d.value)}`, DETAIL_IMG, ...nth(a.image, d.index.image[2], 0), "hw-ua-own"));
    else if (t && j >= 0 && t.arrays.state && t.arrays.state[j]) row.append(figure(`optimised · ${fmt(t.arrays.values[j])}`, DETAIL_IMG, ...nth(t.arrays.images, t.index.images[2], j), "hw-ua-own"));
    const neg = d.negative;
    row.append(figure(neg ? `negative · ${fmt(neg.value)}${neg.cancelled ? ` (stopped at step ${neg.steps})` : ""}` : (isStatic ? "negative: not computed" : "negative: optimising…"),
      DETAIL_IMG, a.negative ? nth(a.negative, d.index.negative[2], 0)[0] : null, a.negative ? d.index.negative[2].slice(1) : null, "hw-ua-negative"));
    if (a.hist_counts) {
      const hist = h("div", "hw-ua-fig hw-ua-hist");
      const c = /** @type {HTMLCanvasElement} */ (h("canvas"));
      const marks = [];
      if (d.comparable) {
        if (a.image || (t && j >= 0)) marks.push({ value: a.image ? d.value : t.arrays.values[j], label: "optimised", color: "#009e73" });
        if (neg) marks.push({ value: neg.value, label: "negative", color: "#c2410c" });
      }
      drawHistogram(c, a.hist_counts, a.hist_edges, marks, 300, 128);
      hist.style.maxWidth = "310px";
      hist.append(c, h("span", "hw-ua-cap", `the unit's ${d.pool} over positions on each of ${d.hist_n} examples`
        + (d.comparable ? "; marks: the objective on the optimised and negative images (the same measure)" : "")));
      row.append(hist);
    }
    body.push(row);
    body.push(h("div", "hw-ua-section", "facets: clusters of the top examples, each optimised from its cluster's mean (Nguyen et al. 2016)"));
    const facetRow = h("div", "hw-ua-row hw-ua-facets");
    if (a.facets) {
      const fs = d.index.facets[2];
      for (let f = 0; f < fs[0]; f++) {
        const col = h("div", "hw-ua-facet");
        col.dataset.facet = String(f);
        const [px, sh] = nth(a.facets, fs, f);
        col.append(figure([`facet ${f + 1}: ${a.facet_sizes[f]} examples`, `objective ${fmt(a.facet_values[f])}`], EXAMPLE_IMG + 32, px, sh, ""));
        const strip = h("div", "hw-ua-strip");
        const ms = d.index.facet_members[2];
        for (let m = 0; m < Math.min(ms[1], a.facet_sizes[f]); m++) {
          const per = ms.slice(2).reduce((x, y) => x * y, 1);
          strip.appendChild(thumbCanvas(a.facet_members.subarray((f * ms[1] + m) * per, (f * ms[1] + m + 1) * per), ms.slice(2), 22));
        }
        col.append(strip);
        facetRow.append(col);
      }
    } else if (d.facets_note) {
      facetRow.append(h("span", "hw-note", d.facets_note));
    } else {
      const n = (model.get("settings") || {}).facets || 3;
      for (let f = 0; f < n; f++) facetRow.append(figure(isStatic ? "not computed" : "optimising…", EXAMPLE_IMG + 32, null, null, ""));
    }
    body.push(facetRow);
    const rf = d.arrays.top_boxes ? " (outlined and cropped: the receptive field at the unit's highest position)" : "";
    body.push(h("div", "hw-ua-section", `top ${(model.get("settings") || {}).k} examples by the unit's ${d.pool} over positions${rf}`));
    body.push(examplesStrip(d, "top"));
    body.push(h("div", "hw-ua-section", `bottom examples, lowest first${rf ? " (outlined: the receptive field at the lowest position)" : ""}`));
    body.push(examplesStrip(d, "bottom"));
    detail.replaceChildren(...body);
    detail.dataset.ready = String(Boolean(a.facets && a.negative));
  }

  // -- inversion -------------------------------------------------------------------------------------------------
  function drawInversion() {
    const ex = model.get("inversion_example");
    invExample.disabled = false;
    invGo.disabled = false;
    if (ex < 0) {
      const saved = [...inversions.keys()];
      if (isStatic && saved.length) { showInversion(inversions.get(saved[0])); return; }
      invBody.replaceChildren(h("span", "hw-note", isStatic ? `no inversion was computed before the page was saved (${NEEDS_KERNEL})`
        : "choose an example and press reconstruct"));
      return;
    }
    invExample.value = String(ex);
    const inv = inversions.get(String(ex));
    if (inv) { showInversion(inv); return; }
    const err = errors.get(`inversion|${ex}`);
    if (err) { invBody.replaceChildren(h("span", "hw-ua-status", err)); return; }
    if (isStatic) { invBody.replaceChildren(h("span", "hw-note", `example ${ex} was not reconstructed before the page was saved (${NEEDS_KERNEL})`)); return; }
    const layers = model.get("layers") || [];
    invBody.replaceChildren(figure(`example ${ex}`, EXAMPLE_IMG + 32, null, null, ""),
      ...layers.map((name) => figure(`${name}: reconstructing…`, EXAMPLE_IMG + 32, null, null, "")));
  }

  function showInversion(inv) {
    const a = inv.arrays;
    invExample.value = String(inv.example);
    const figs = [figure(`example ${inv.example}${inv.label ? ` · ${inv.label}` : ""}`, EXAMPLE_IMG + 32, ...nth(a.example, inv.index.example[2], 0), "")];
    inv.layers.forEach((name, i) => {
      const fig = figure([name, `pixel error ${fmt(a.pixel_error[i])}`, `code error ${fmt(a.code_error[i])}`], EXAMPLE_IMG + 32,
        ...nth(a.images, inv.index.images[2], i), "");
      fig.dataset.layer = name;
      figs.push(fig);
    });
    if (inv.cancelled) figs.push(h("span", "hw-note", `stopped at step ${inv.steps}`));
    invBody.replaceChildren(...figs);
    invBody.dataset.ready = "true";
  }

  // -- messages -------------------------------------------------------------------------------------------------
  const onMsg = (msg, buffers) => {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "reset") {
      version = msg.version;
      tiles.clear(); details.clear(); inversions.clear(); errors.clear(); frames.clear();
      update();
      return;
    }
    const v = msg.version ?? (msg.header && msg.header.version);
    if (v !== undefined && v < version) return; // from weights replaced since
    if (msg.type === "frame") {
      const arrays = decodeArrays(msg.index, buffers[0]);
      const f = { units: msg.units, shape: msg.index.images[2], images: arrays.images, step: msg.step };
      frames.set(`${msg.target}|${msg.key}`, f);
      meter.add();
      inspect.frames += 1;
      liveState = { step: msg.step, total: msg.total, value: msg.value, target: msg.target };
      drawFrame(msg.target, msg.key, f);
      drawLive();
    } else if (msg.type === "progress") {
      liveState = { step: msg.done, total: msg.total, value: null, target: "pass", what: `${msg.what}: ${msg.done} of ${msg.total} examples` };
      drawLive();
    } else if (msg.type === "tiles") {
      tiles.set(msg.header.key, decode({ header: msg.header, data: buffers[0] }));
      frames.delete(`page|${msg.header.key}`);
      if (msg.header.key === pageKey()) { drawGrid(); drawDetail(); }
    } else if (msg.type === "detail") {
      details.set(msg.header.key, decode({ header: msg.header, data: buffers[0] }));
      if (msg.header.key === detailKey()) drawDetail();
    } else if (msg.type === "inversion") {
      inversions.set(msg.header.key, decode({ header: msg.header, data: buffers[0] }));
      if (msg.header.key === String(model.get("inversion_example"))) drawInversion();
    } else if (msg.type === "error") {
      errors.set(`${msg.what}|${msg.key}`, msg.message);
      update();
    }
  };

  function update() { drawControls(); drawGrid(); drawDetail(); drawInversion(); }
  const onPage = () => {
    const unit = model.get("unit");
    if (isStatic && unit >= 0 && !pageUnits(info().units, model.get("page"), model.get("page_size") || 1).includes(unit)) {
      model.set("unit", -1); // as Python does: paging away from a unit closes its detail
    }
    drawControls(); drawGrid(); drawDetail();
  };
  // (a trait change reaches Python, which computes or resends what it asks for: no fetch needed here; a view asks
  // at render for what it shows, since results computed before it existed were sent to the views of then)
  const onUnit = () => { drawGrid(); drawDetail(); };
  const onExample = () => { drawInversion(); };
  const onState = () => { drawControls(); if (!model.get("busy")) drawLive(); };
  const events = [
    ["change:layer change:objective change:seed change:page", onPage], ["change:unit", onUnit],
    ["change:inversion_example", onExample], ["change:status change:busy change:weights change:title", onState],
    ["change:version", () => { version = model.get("version"); }], ["msg:custom", onMsg]];
  const bound = [];
  for (const [names, fn] of events) for (const ev of String(names).split(" ")) { model.on(ev, fn); bound.push([ev, fn]); }

  const sizing = mountView(root, "unit_atlas", () => { drawDetail(); drawInversion(); }); // canvases follow the theme
  update();
  if (!isStatic) {
    if (!tiles.has(pageKey())) fetch("page");
    if (model.get("unit") >= 0) fetch("detail");
    if (model.get("inversion_example") >= 0) fetch("inversion");
  } else {
    for (const node of [layerSel, objSel, seedBox, invExample]) node.title = `${node.title ? `${node.title}. ` : ""}Only what was computed before saving can be shown here`;
  }
  return () => {
    sizing.dispose();
    for (const [ev, fn] of bound) model.off(ev, fn);
    for (const off of listeners) off();
    root.remove();
  };
}

export default { render };

// @ts-check
// The InformationPlane view: each layer's trajectory in (I(X;T), I(T;Y)) coloured by epoch, as in Shwartz-Ziv &
// Tishby's figure, with the estimator switchable, and the gradient mean / standard deviation per layer on
// log-log axes with the drift -> diffusion transition marked. All numbers come from Python.
import { decodeArrays } from "./lib/codec.js";
import { LineChart, colorBar, fmt, h, nearestIndex, setupCanvas, theme, trackHover, niceTicks } from "./lib/chart.js";
import { color } from "./lib/colormap.js";
import { CSS } from "./lib/style.js";

/** @param {any} state */
export function decodeState(state) {
  if (!state || !state.header) return null;
  const a = decodeArrays(state.header.index, state.data);
  const L = state.header.layers.length;
  return { ...state.header, epochs: a.epochs, points: a.points, L, gradEpochs: a.grad_epochs, gradMean: a.grad_mean,
    gradStd: a.grad_std };
}

/** @param {{model: any, el: HTMLElement}} ctx */
function render({ model, el }) {
  const root = h("div", "hw-am hw-ip");
  const style = h("style");
  style.textContent = CSS;
  const header = h("div", "hw-am-header");
  const title = h("span", "hw-am-title");
  const counter = h("span", "hw-am-counter");
  const select = /** @type {HTMLSelectElement} */ (h("select", "hw-btn hw-ip-estimator"));
  select.setAttribute("aria-label", "estimator");
  const binsLabel = h("label", "hw-ip-bins", "bins ");
  const bins = /** @type {HTMLInputElement} */ (h("input", "hw-btn"));
  bins.type = "number";
  bins.min = "2";
  bins.max = "1000";
  bins.style.width = "4.5em";
  binsLabel.appendChild(bins);
  const status = h("span", "hw-am-frames");
  header.append(title, counter, select, binsLabel, status);
  const plane = h("div", "hw-panel");
  const planeTitle = h("div", "hw-panel-title");
  const canvas = /** @type {HTMLCanvasElement} */ (h("canvas", "hw-ip-canvas"));
  const readout = h("div", "hw-chart-readout");
  const bar = h("div", "hw-detail-bar");
  const notes = h("div", "hw-am-events");
  plane.append(planeTitle, notes, canvas, bar, readout);
  const gradsTitle = h("div", "hw-panel-title", "gradient mean and standard deviation over mini-batches (log-log)");
  const grads = h("div", "hw-am-layer-small");
  root.append(style, header, plane, gradsTitle, grads);
  el.appendChild(root);

  /** @type {ReturnType<typeof decodeState>} */
  let data = null;
  let hover = null;
  /** @type {LineChart[]} */
  let gradCharts = [];
  Object.defineProperty(root, "__hwState", { get: () => data });

  const onSelect = () => { model.set("estimator", select.value); model.save_changes(); };
  const onBins = () => {
    const v = Math.round(Number(bins.value));
    if (v >= 2) { model.set("n_bins", v); model.save_changes(); }
  };
  select.addEventListener("change", onSelect);
  bins.addEventListener("change", onBins);
  const layout = { left: 52, right: 90, top: 12, bottom: 36 };
  const stopHover = trackHover(canvas, (x, y) => { hover = { x, y }; drawPlane(); }, () => { hover = null; drawPlane(); });

  function update() {
    data = decodeState(model.get("_state"));
    title.textContent = model.get("title") || "Information plane";
    status.textContent = model.get("status") || "";
    root.dataset.estimator = model.get("estimator");
    if (!data) return;
    counter.textContent = `epoch ${Math.max(data.epoch, 0)} · ${data.epochs.length} of ${data.scheduled} recorded`;
    if (select.options.length !== data.estimators.length) {
      select.replaceChildren(...data.estimators.map((e) => {
        const o = /** @type {HTMLOptionElement} */ (h("option", "", e.label));
        o.value = e.name;
        return o;
      }));
    }
    select.value = model.get("estimator");
    bins.value = String(model.get("n_bins"));
    binsLabel.hidden = model.get("estimator") !== "binned";
    planeTitle.textContent = `information plane: ${data.label}`;
    notes.replaceChildren(...(data.notes || []).map((n) => h("div", "hw-event", n)));
    root.dataset.recorded = String(data.epochs.length);
    drawPlane();
    drawGrads();
  }

  function width() { return Math.max(320, Math.floor(root.clientWidth || 900)); }

  function drawPlane() {
    const w = Math.min(width(), 760);
    const hgt = Math.round(w * 0.62);
    const ctx = setupCanvas(canvas, w, hgt);
    if (!ctx || !data) return;
    const t = theme(root);
    const { epochs, points, L } = data;
    const E = epochs.length;
    const xMax = Math.max(data.bounds.I_XT, 1e-6);
    const yMax = Math.max(data.bounds.I_TY, 1e-6);
    const pw = w - layout.left - layout.right;
    const ph = hgt - layout.top - layout.bottom;
    const X = (v) => layout.left + (v / xMax) * pw;
    const Y = (v) => layout.top + (1 - v / yMax) * ph;
    ctx.font = t.font;
    ctx.strokeStyle = t.grid;
    ctx.fillStyle = t.muted;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const tick of niceTicks(0, yMax, 4)) {
      ctx.beginPath(); ctx.moveTo(layout.left, Y(tick)); ctx.lineTo(layout.left + pw, Y(tick)); ctx.stroke();
      ctx.fillText(fmt(tick), layout.left - 4, Y(tick));
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const tick of niceTicks(0, xMax, 6)) ctx.fillText(fmt(tick), X(tick), layout.top + ph + 4);
    ctx.fillText("I(X;T)  [bits]", layout.left + pw / 2, layout.top + ph + 18);
    ctx.save();
    ctx.translate(12, layout.top + ph / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText("I(T;Y)  [bits]", 0, 0);
    ctx.restore();
    const logE = (e) => Math.log10(e + 1);
    const e0 = E ? logE(epochs[0]) : 0;
    const e1 = E ? logE(epochs[E - 1]) : 1;
    const tOf = (e) => (e1 > e0 ? (logE(e) - e0) / (e1 - e0) : 1);
    const at = (i, l, k) => points[(i * L + l) * 2 + k];
    let best = null;
    for (let l = 0; l < L; l++) {
      ctx.strokeStyle = "rgba(140,140,140,0.5)";
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (let i = 0; i < E; i++) {
        const x = X(at(i, l, 0)); const y = Y(at(i, l, 1));
        if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      }
      ctx.stroke();
      for (let i = 0; i < E; i++) {
        const x = X(at(i, l, 0)); const y = Y(at(i, l, 1));
        ctx.fillStyle = color("viridis", tOf(epochs[i]));
        ctx.beginPath(); ctx.arc(x, y, 3.2, 0, 2 * Math.PI); ctx.fill();
        if (hover) {
          const d = (x - hover.x) ** 2 + (y - hover.y) ** 2;
          if (!best || d < best.d) best = { d, i, l, x, y };
        }
      }
      if (E) {
        ctx.fillStyle = t.text;
        ctx.textAlign = "left";
        ctx.textBaseline = "middle";
        ctx.fillText(data.layers[l], X(at(E - 1, l, 0)) + 6, Y(at(E - 1, l, 1)));
      }
    }
    if (best && best.d < 400) {
      ctx.strokeStyle = t.text;
      ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.arc(best.x, best.y, 6, 0, 2 * Math.PI); ctx.stroke();
      readout.textContent = `${data.layers[best.l]} · epoch ${epochs[best.i]} · I(X;T) ${fmt(at(best.i, best.l, 0))} bits`
        + ` · I(T;Y) ${fmt(at(best.i, best.l, 1))} bits`;
    } else {
      readout.textContent = E ? "hover a point for its layer, epoch and values" : "waiting for the first recorded epoch…";
    }
    if (E) bar.replaceChildren(h("span", "hw-note", "epoch"), colorBar("viridis", epochs[0], epochs[E - 1]),
      h("span", "hw-note", "(log scale)"));
  }

  function drawGrads() {
    if (!data) return;
    const w = width();
    const cols = Math.max(1, Math.min(data.L, Math.floor(w / 260)));
    const cw = Math.floor((w - (cols - 1) * 12) / cols) - 2;
    while (gradCharts.length < data.L) {
      const c = new LineChart(data.layers[gradCharts.length], { height: 130 });
      c.el.dataset.layer = data.layers[gradCharts.length];
      gradCharts.push(c);
      grads.appendChild(c.el);
    }
    const G = data.gradEpochs.length;
    const xs = Array.from(data.gradEpochs, (e) => e + 1);
    for (let l = 0; l < data.L; l++) {
      const mean = Array.from(data.gradMean.subarray(l * G, (l + 1) * G));
      const std = Array.from(data.gradStd.subarray(l * G, (l + 1) * G));
      const tr = data.transition[data.layers[l]];
      const snr = G ? mean[G - 1] / std[G - 1] : NaN;
      gradCharts[l].update({
        xs, logX: true, logY: true,
        value: G ? `SNR ${fmt(snr)}` : "",
        marks: tr === null || tr === undefined ? [] : [{ x: tr + 1, label: "drift → diffusion" }],
        lines: [
          { ys: mean, label: "mean", color: "#3b6fd8" },
          { ys: std, label: "std", color: "#d9480f", dash: [4, 3] },
        ],
      }, cw);
    }
  }

  const events = ["change:_state", "change:estimator", "change:n_bins", "change:status", "change:title"];
  for (const ev of events) model.on(ev, update);
  const observer = typeof ResizeObserver !== "undefined" ? new ResizeObserver(() => { drawPlane(); drawGrads(); }) : null;
  if (observer) observer.observe(root);
  update();

  return () => {
    for (const ev of events) model.off(ev, update);
    if (observer) observer.disconnect();
    select.removeEventListener("change", onSelect);
    bins.removeEventListener("change", onBins);
    stopHover();
    for (const c of gradCharts) c.dispose();
    gradCharts = [];
    root.remove();
  };
}

export default { render };

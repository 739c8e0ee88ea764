// @ts-check
// The InformationPlane view: each layer's trajectory in (I(X;T), I(T;Y)) coloured by epoch, as in Shwartz-Ziv &
// Tishby's figure, with the estimator switchable, and the gradient mean / standard deviation per layer on
// log-log axes with the drift -> diffusion transition marked. All numbers come from Python.
import { decodeArrays } from "./lib/codec.js";
import { LineChart, colorBar, fitTicks, fmt, h, setupCanvas, trackHover } from "./lib/chart.js";
import { color } from "./lib/colormap.js";
import { CATEGORICAL } from "./lib/palette.js";
import { Labels, mountView, readTheme } from "./lib/frame.js";
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
  root.dataset.hwView = "information_plane";
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
  const gradsTitle = h("div", "hw-panel-title", "gradient mean and standard deviation over mini-batches, per layer (log-log)");
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
  let viewWidth = 900;
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
    showNotes(data.notes || []);
    root.dataset.recorded = String(data.epochs.length);
    drawPlane();
    drawGrads();
  }

  function width() { return viewWidth; }

  // several warnings fold into one line (click to read them all); one warning shows as it is
  let notesKey = "";
  function showNotes(list) {
    const key = list.join("\n");
    if (key === notesKey) return;
    notesKey = key;
    if (list.length <= 1) { notes.replaceChildren(...list.map((n) => h("div", "hw-event", n))); return; }
    const fold = h("details", "hw-fold");
    const summary = h("summary", "", `⚠ ${list.length} warnings about this estimate — click to read: ${list[0]}`);
    summary.style.whiteSpace = "nowrap"; summary.style.overflow = "hidden"; summary.style.textOverflow = "ellipsis";
    fold.append(summary, ...list.map((n) => h("div", "hw-event", n)));
    notes.replaceChildren(fold);
  }

  function drawPlane() {
    const w = Math.min(width(), 900);
    const hgt = Math.max(220, Math.round(Math.min(w * 0.62, 520)));
    const ctx = setupCanvas(canvas, w, hgt);
    if (!ctx || !data) return;
    const t = readTheme(root);
    const { epochs, points, L } = data;
    const E = epochs.length;
    ctx.font = t.font;
    const Lb = new Labels(ctx, t.fontSize);
    const lineH = Math.ceil(t.fontSize * 1.2);
    const measure = (x) => ctx.measureText(x).width || x.length * 6;
    const xMax = Math.max(data.bounds.I_XT, 1e-6);
    const yMax = Math.max(data.bounds.I_TY, 1e-6);
    const top = 10; const bottom = 2 * lineH + 10;
    const ph = hgt - top - bottom;
    const yTicks = fitTicks(0, yMax, ph, fmt, () => lineH, { most: 6, gap: 8 });
    const left = Math.ceil(Math.max(...yTicks.map((v) => measure(fmt(v))), 10) + 8 + lineH + 2);
    const labelW = Math.min(w * 0.25, Math.max(20, ...data.layers.map(measure)) + 10);
    const right = Math.ceil(labelW);
    const pw = w - left - right;
    const X = (v) => left + (v / xMax) * pw;
    const Y = (v) => top + (1 - v / yMax) * ph;
    ctx.strokeStyle = t.grid;
    ctx.fillStyle = t.muted;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const tick of yTicks) {
      ctx.beginPath(); ctx.moveTo(left, Y(tick)); ctx.lineTo(left + pw, Y(tick)); ctx.stroke();
      Lb.place(fmt(tick), left - 4, Math.max(top + lineH / 2, Y(tick)));
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const tick of fitTicks(0, xMax, pw, fmt, measure, { most: 8 })) Lb.place(fmt(tick), Math.min(X(tick), w - measure(fmt(tick)) / 2), top + ph + 4);
    ctx.textBaseline = "bottom";
    Lb.place("I(X;T)  [bits]", left + pw / 2, hgt - 1);
    ctx.textBaseline = "top";
    Lb.place("I(T;Y)  [bits]", 1, top + ph / 2, { angle: -Math.PI / 2 });
    const logE = (e) => Math.log10(e + 1);
    const e0 = E ? logE(epochs[0]) : 0;
    const e1 = E ? logE(epochs[E - 1]) : 1;
    const tOf = (e) => (e1 > e0 ? (logE(e) - e0) / (e1 - e0) : 1);
    const at = (i, l, k) => points[(i * L + l) * 2 + k];
    let best = null;
    const c0 = t.dark ? 0.3 : 0; const c1 = t.dark ? 1 : 0.92;
    for (let l = 0; l < L; l++) {
      ctx.strokeStyle = t.dark ? "rgba(200,200,200,0.45)" : "rgba(120,120,120,0.5)";
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (let i = 0; i < E; i++) {
        const x = X(at(i, l, 0)); const y = Y(at(i, l, 1));
        if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      }
      ctx.stroke();
      for (let i = 0; i < E; i++) {
        const x = X(at(i, l, 0)); const y = Y(at(i, l, 1));
        ctx.fillStyle = color("viridis", c0 + (c1 - c0) * tOf(epochs[i]));
        ctx.beginPath(); ctx.arc(x, y, 3.2, 0, 2 * Math.PI); ctx.fill();
        if (hover) {
          const d = (x - hover.x) ** 2 + (y - hover.y) ** 2;
          if (!best || d < best.d) best = { d, i, l, x, y };
        }
      }
    }
    // layer names at their trajectory's last point: right of it, else left, above or below; with a leader line
    // when pushed further away, never over another name
    if (E) {
      ctx.fillStyle = t.text;
      ctx.textBaseline = "middle";
      for (let l = 0; l < L; l++) {
        const x = X(at(E - 1, l, 0)); const y = Y(at(E - 1, l, 1));
        const name = Lb.fit(data.layers[l], right + pw / 3);
        const wd = measure(name);
        /** @type {{x: number, y: number, align: string}[]} */
        const tries = [{ x: x + 6, y, align: "left" }, { x: x - 6, y, align: "right" }, { x, y: y - lineH, align: "center" },
          { x, y: y + lineH, align: "center" }];
        for (let k = 2; k < 8; k++) tries.push({ x: x + 6, y: y - k * lineH * 0.9, align: "left" }, { x: x + 6, y: y + k * lineH * 0.9, align: "left" });
        let placed = false;
        for (const { x: tx, y: ty, align } of tries) {
          const x0 = align === "left" ? tx : align === "right" ? tx - wd : tx - wd / 2;
          if (x0 < left || x0 + wd > w - 1 || ty - lineH / 2 < 0 || ty + lineH / 2 > top + ph) continue;
          ctx.textAlign = /** @type {CanvasTextAlign} */ (align);
          if (Lb.place(name, tx, ty, { halo: t.bg })) {
            if (Math.abs(ty - y) > lineH * 1.1) {
              ctx.strokeStyle = t.muted; ctx.lineWidth = 0.75;
              ctx.beginPath(); ctx.moveTo(x + 3, y); ctx.lineTo(tx - 1, ty); ctx.stroke();
            }
            placed = true;
            break;
          }
        }
        if (!placed) { ctx.textAlign = "left"; Lb.place(name, Math.min(x + 6, w - wd - 1), y, { halo: t.bg }); }
      }
    }
    Lb.attach(canvas);
    if (best && best.d < 400) {
      ctx.strokeStyle = t.text;
      ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.arc(best.x, best.y, 6, 0, 2 * Math.PI); ctx.stroke();
      readout.textContent = `${data.layers[best.l]} · epoch ${epochs[best.i]} · I(X;T) ${fmt(at(best.i, best.l, 0))} bits`
        + ` · I(T;Y) ${fmt(at(best.i, best.l, 1))} bits`;
    } else {
      readout.textContent = E ? "hover a point for its layer, epoch and values" : "waiting for the first recorded epoch…";
    }
    if (E) {
      const key = `${epochs[0]}|${epochs[E - 1]}|${t.dark}`;
      if (bar.dataset.key !== key) {
        bar.dataset.key = key;
        bar.replaceChildren(colorBar("viridis", epochs[0], epochs[E - 1], { title: "point colour: epoch", note: "log scale" }));
      }
    }
  }

  function drawGrads() {
    if (!data) return;
    const w = width();
    const cols = Math.max(1, Math.min(data.L, Math.floor(w / 280)));
    const cw = Math.floor((w - (cols - 1) * 12) / cols) - 2;
    while (gradCharts.length < data.L) {
      const c = new LineChart(data.layers[gradCharts.length], { height: 140, xTitle: "epoch (log)", yTitle: "|gradient| (log)" });
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
          { ys: mean, label: "mean", color: CATEGORICAL[1] },
          { ys: std, label: "std", color: CATEGORICAL[0], dash: [4, 3] },
        ],
      }, cw);
    }
  }

  const events = ["change:_state", "change:estimator", "change:n_bins", "change:status", "change:title"];
  for (const ev of events) model.on(ev, update);
  const sizing = mountView(root, "information_plane", (w) => { viewWidth = w; drawPlane(); drawGrads(); });
  viewWidth = Math.max(160, Math.floor(root.clientWidth || 900));
  update();

  return () => {
    for (const ev of events) model.off(ev, update);
    sizing.dispose();
    select.removeEventListener("change", onSelect);
    bins.removeEventListener("change", onBins);
    stopHover();
    for (const c of gradCharts) c.dispose();
    gradCharts = [];
    root.remove();
  };
}

export default { render };

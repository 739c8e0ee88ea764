// @ts-check
// The ConceptScores view: TCAV scores of a concept per target class and layer (bars, ± one standard deviation
// over the concept's CAVs), the random baseline as a grey tick, significance marked; and, when TCAV was run at
// several epochs, the concept's score over training per layer for one class (concept learning curves). While a
// TCAV computation runs in the kernel the view says so, with its progress; a failed one is said, with its error.
import { LineChart, fitTicks, fmt, h, setupCanvas, trackHover, viewFrame } from "./lib/chart.js";
import { CATEGORICAL as PALETTE } from "./lib/palette.js";
import { Labels, mountView, readTheme } from "./lib/frame.js";
import { CSS } from "./lib/style.js";

/** Group records: concepts, layers, targets, epochs (first-seen order; epochs ascending) and a lookup. */
export function index(records) {
  const concepts = []; const layers = []; const targets = []; const epochs = [];
  const byKey = new Map();
  for (const r of records) {
    if (!concepts.includes(r.concept)) concepts.push(r.concept);
    if (!layers.includes(r.layer)) layers.push(r.layer);
    if (!targets.includes(r.target)) targets.push(r.target);
    const e = r.epoch === null || r.epoch === undefined ? -1 : r.epoch;
    if (!epochs.includes(e)) epochs.push(e);
    byKey.set(`${r.concept}|${r.layer}|${r.target}|${e}`, r);
  }
  epochs.sort((a, b) => a - b);
  return { concepts, layers, targets, epochs, at: (c, l, t, e) => byKey.get(`${c}|${l}|${t}|${e}`) };
}

function render({ model, el }) {
  const { root, title, note } = viewFrame("hw-cs", CSS, "", "concept_scores");
  const controls = h("div", "hw-am-chips");
  const conceptSel = /** @type {HTMLSelectElement} */ (h("select"));
  const epochRange = /** @type {HTMLInputElement} */ (h("input"));
  epochRange.type = "range";
  epochRange.min = "0";
  const epochText = h("span", "hw-chart-value");
  const epochBox = h("span");
  epochBox.append(" epoch ", epochRange, " ", epochText);
  const conceptLabel = h("label");
  conceptLabel.append("concept ", conceptSel);
  controls.append(conceptLabel, epochBox);
  const legend = h("div", "hw-am-chips");
  const busy = h("div", "hw-am-notice hw-cs-activity");
  busy.setAttribute("role", "status");
  busy.setAttribute("aria-live", "polite");
  const canvas = /** @type {HTMLCanvasElement} */ (h("canvas"));
  const readout = h("div", "hw-chart-readout");
  const curveHead = h("div", "hw-am-chips");
  const classSel = /** @type {HTMLSelectElement} */ (h("select"));
  const classLabel = h("label");
  classLabel.append("concept score over training for class ", classSel);
  curveHead.append(classLabel);
  const curve = new LineChart("TCAV score over training", { height: 170, xTitle: "epoch", yTitle: "TCAV score", xInteger: true });
  root.append(controls, busy, legend, canvas, readout, curveHead, curve.el);
  el.appendChild(root);

  let ix = index([]);
  let epochAt = -1;
  let bars = []; // hit boxes: {x0, x1, y0, y1, r}
  let hover = null;
  let W = 640; const H = 260;

  function fill(sel, values, labels, value) {
    const vals = values.map(String);
    if (sel.options.length !== vals.length || [...sel.options].some((o, i) => o.value !== vals[i])) {
      sel.replaceChildren(...values.map((v, i) => { const o = /** @type {HTMLOptionElement} */ (h("option", "", String(labels[i]))); o.value = String(v); return o; }));
    }
    if (value !== undefined && vals.includes(String(value))) sel.value = String(value);
  }
  function className(t) { const names = model.get("class_names") || []; return names[t] !== undefined ? String(names[t]) : String(t); }

  function drawBars() {
    const t = readTheme(root);
    const ctx = setupCanvas(canvas, W, H);
    if (!ctx) return;
    ctx.font = t.font;
    const L = new Labels(ctx, t.fontSize);
    const lineH = Math.ceil(t.fontSize * 1.2);
    const PAD = { left: 30 + lineH, right: 8, top: 14, bottom: 2 * lineH + 10 };
    const concept = conceptSel.value;
    const e = ix.epochs[epochAt];
    const groups = ix.targets.length; const per = ix.layers.length;
    const gw = (W - PAD.left - PAD.right) / Math.max(1, groups);
    const bw = Math.max(3, Math.min(22, (gw - 8) / Math.max(1, per)));
    const ph = H - PAD.top - PAD.bottom;
    const Y = (v) => PAD.top + (1 - v) * ph;
    ctx.strokeStyle = t.grid; ctx.fillStyle = t.muted; ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (const v of fitTicks(0, 1, ph, fmt, () => lineH, { most: 5, gap: 6 })) {
      const y = Math.round(Y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(PAD.left, y); ctx.lineTo(W - PAD.right, y); ctx.stroke();
      L.place(fmt(v), PAD.left - 4, y);
    }
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    L.place("TCAV score", 1, PAD.top + ph / 2, { angle: -Math.PI / 2 });
    ctx.textBaseline = "bottom";
    L.place("target class", PAD.left + (W - PAD.left - PAD.right) / 2, H - 1);
    bars = [];
    if (!ix.targets.length) {
      ctx.textAlign = "center"; ctx.textBaseline = "middle";
      const empty = model.get("__hw_static") ? "no TCAV results in this page"
        : activityState() === "running" ? "computing… TCAV results appear here as they are added"
          : "no TCAV results yet: they appear here as they are added";
      L.place(L.fit(empty, W - PAD.left - PAD.right - 8), PAD.left + (W - PAD.left - PAD.right) / 2, PAD.top + ph / 2);
    }
    ix.targets.forEach((target, g) => {
      const gx = PAD.left + g * gw + (gw - bw * per) / 2;
      ix.layers.forEach((layer, k) => {
        const r = ix.at(concept, layer, target, e);
        if (!r) return;
        const x0 = gx + k * bw; const colour = PALETTE[k % PALETTE.length];
        // not significant: a pale fill with an outline in the layer's colour (the colour stays readable, the
        // difference does not rely on transparency alone)
        ctx.globalAlpha = r.significant ? 1 : 0.25;
        ctx.fillStyle = colour;
        ctx.fillRect(x0, Y(r.score), bw - 2, Y(0) - Y(r.score));
        ctx.globalAlpha = 1;
        if (!r.significant) { ctx.strokeStyle = colour; ctx.lineWidth = 1; ctx.strokeRect(x0 + 0.5, Y(r.score) + 0.5, bw - 3, Y(0) - Y(r.score) - 1); }
        ctx.strokeStyle = t.text; ctx.lineWidth = 1;
        if (Number.isFinite(r.score_std)) {
          const xm = x0 + (bw - 2) / 2;
          ctx.beginPath(); ctx.moveTo(xm, Y(Math.min(1, r.score + r.score_std))); ctx.lineTo(xm, Y(Math.max(0, r.score - r.score_std))); ctx.stroke();
        }
        if (Number.isFinite(r.random_score)) { // the random baseline: a grey tick across the bar
          ctx.strokeStyle = t.muted; ctx.lineWidth = 2;
          ctx.beginPath(); ctx.moveTo(x0 - 1, Y(r.random_score)); ctx.lineTo(x0 + bw - 1, Y(r.random_score)); ctx.stroke();
        }
        if (r.significant) { ctx.fillStyle = t.text; ctx.textAlign = "center"; ctx.textBaseline = "bottom"; ctx.fillText("*", x0 + (bw - 2) / 2, Y(Math.min(1, r.score + (r.score_std || 0))) - 1); }
        bars.push({ x0, x1: x0 + bw - 2, y0: PAD.top, y1: Y(0), r });
      });
      ctx.fillStyle = t.muted; ctx.textAlign = "center"; ctx.textBaseline = "top";
      L.place(L.fit(className(target), gw - 4), PAD.left + g * gw + gw / 2, Y(0) + 4);
    });
    L.attach(canvas);
    if (hover) { ctx.strokeStyle = t.hover; ctx.lineWidth = 2; ctx.strokeRect(hover.x0 - 1, hover.y0, hover.x1 - hover.x0 + 2, hover.y1 - hover.y0); }
    const r = hover && hover.r;
    readout.textContent = r ? `${r.concept} · ${r.layer} · class ${className(r.target)}: TCAV ${fmt(r.score)} ± ${fmt(r.score_std)} vs random ${fmt(r.random_score)} ± ${fmt(r.random_std)} · p = ${fmt(r.p_value)}${r.p_corrected !== undefined && r.p_corrected !== null ? ` (corrected ${fmt(r.p_corrected)})` : ""} · ${r.significant ? "significant" : "not significant"} · CAV accuracy ${fmt(r.cav_accuracy)}` : "hover a bar: bars are the mean TCAV score over the concept's CAVs (± one standard deviation), the grey tick the random baseline, * significant; pale outlined bars are not significant";
  }
  const disposeHover = trackHover(canvas, (x, y) => {
    const hit = bars.find((b) => x >= b.x0 && x <= b.x1 && y >= b.y0 && y <= b.y1) || null;
    if (hit !== hover) { hover = hit; drawBars(); }
  }, () => { hover = null; drawBars(); });

  function drawCurve() {
    const many = ix.epochs.length > 1;
    curveHead.style.display = many ? "" : "none";
    curve.el.style.display = many ? "" : "none";
    if (!many) return;
    const concept = conceptSel.value; const target = Number(classSel.value);
    const lines = ix.layers.map((layer, k) => ({
      ys: ix.epochs.map((e) => ix.at(concept, layer, target, e)?.score ?? NaN), label: layer, color: PALETTE[k % PALETTE.length] }));
    curve.update({ xs: ix.epochs, lines, yMin: 0, yMax: 1, value: `${concept}, class ${className(target)}` }, W);
  }
  /** "running", "failed" or "" (a static page computes nothing: it shows only a failure it recorded) */
  function activityState() {
    const a = model.get("activity") || {};
    return a.state === "failed" || (a.state === "running" && !model.get("__hw_static")) ? a.state : "";
  }
  function showActivity() {
    const state = activityState();
    busy.textContent = state ? String((model.get("activity") || {}).text || "") : "";
    busy.dataset.state = state === "failed" ? "error" : state;
    busy.hidden = !state;
    root.dataset.busy = String(state === "running");
  }
  function draw() {
    showActivity();
    ix = index(model.get("records") || []);
    title.textContent = model.get("title") || "TCAV";
    note.textContent = model.get("description") || "";
    fill(conceptSel, ix.concepts, ix.concepts, conceptSel.value || ix.concepts[0]);
    fill(classSel, ix.targets, ix.targets.map(className), classSel.value || ix.targets[0]);
    if (epochAt < 0 || epochAt >= ix.epochs.length) epochAt = ix.epochs.length - 1;
    epochBox.style.display = ix.epochs.length > 1 ? "" : "none";
    epochRange.max = String(Math.max(0, ix.epochs.length - 1));
    epochRange.value = String(epochAt);
    epochText.textContent = ix.epochs[epochAt] >= 0 ? String(ix.epochs[epochAt]) : "";
    legend.replaceChildren(...ix.layers.map((layer, k) => {
      const chip = h("span", "hw-chart-head hw-legend-label");
      const sw = h("span", "hw-swatch");
      sw.style.background = PALETTE[k % PALETTE.length];
      chip.append(sw, layer);
      return chip;
    }));
    drawBars();
    drawCurve();
  }
  const listeners = [[conceptSel, "change", draw], [classSel, "change", drawCurve], [epochRange, "input", () => { epochAt = Number(epochRange.value); draw(); }]];
  for (const [node, ev, fn] of listeners) /** @type {HTMLElement} */ (node).addEventListener(/** @type {string} */ (ev), /** @type {any} */ (fn));
  const events = ["change:records", "change:title", "change:description", "change:class_names"];
  const redraw = () => { epochAt = -1; draw(); };
  for (const ev of events) model.on(ev, redraw);
  const onActivity = () => { showActivity(); if (!ix.targets.length) drawBars(); };
  model.on("change:activity", onActivity);
  const frame = mountView(root, "concept_scores", (w) => { W = w; draw(); });
  frame.now();
  return () => {
    frame.dispose();
    for (const ev of events) model.off(ev, redraw);
    model.off("change:activity", onActivity);
    for (const [node, ev, fn] of listeners) /** @type {HTMLElement} */ (node).removeEventListener(/** @type {string} */ (ev), /** @type {any} */ (fn));
    disposeHover();
    curve.dispose();
    root.remove();
  };
}

export default { render };

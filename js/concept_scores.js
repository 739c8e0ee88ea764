// @ts-check
// The ConceptScores view: TCAV scores of a concept per target class and layer (bars, ± one standard deviation
// over the concept's CAVs), the random baseline as a grey tick, significance marked; and, when TCAV was run at
// several epochs, the concept's score over training per layer for one class (concept learning curves).
import { LineChart, fmt, h, setupCanvas, theme, trackHover, viewFrame } from "./lib/chart.js";
import { PALETTE } from "./lib/scatter.js";
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
  const { root, title, note } = viewFrame("hw-cs", CSS);
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
  const canvas = /** @type {HTMLCanvasElement} */ (h("canvas"));
  const readout = h("div", "hw-chart-readout");
  const curveHead = h("div", "hw-am-chips");
  const classSel = /** @type {HTMLSelectElement} */ (h("select"));
  const classLabel = h("label");
  classLabel.append("concept score over training for class ", classSel);
  curveHead.append(classLabel);
  const curve = new LineChart("TCAV score over training", { height: 170 });
  root.append(controls, legend, canvas, readout, curveHead, curve.el);
  el.appendChild(root);

  let ix = index([]);
  let epochAt = -1;
  let bars = []; // hit boxes: {x0, x1, y0, y1, r}
  let hover = null;
  const W = 640; const H = 260; const PAD = { left: 40, right: 10, top: 14, bottom: 30 };

  function fill(sel, values, labels, value) {
    const vals = values.map(String);
    if (sel.options.length !== vals.length || [...sel.options].some((o, i) => o.value !== vals[i])) {
      sel.replaceChildren(...values.map((v, i) => { const o = /** @type {HTMLOptionElement} */ (h("option", "", String(labels[i]))); o.value = String(v); return o; }));
    }
    if (value !== undefined && vals.includes(String(value))) sel.value = String(value);
  }
  function className(t) { const names = model.get("class_names") || []; return names[t] !== undefined ? String(names[t]) : String(t); }

  function drawBars() {
    const ctx = setupCanvas(canvas, W, H);
    if (!ctx) return;
    const t = theme(root);
    const concept = conceptSel.value;
    const e = ix.epochs[epochAt];
    const groups = ix.targets.length; const per = ix.layers.length;
    const gw = (W - PAD.left - PAD.right) / Math.max(1, groups);
    const bw = Math.max(3, Math.min(22, (gw - 8) / Math.max(1, per)));
    const Y = (v) => PAD.top + (1 - v) * (H - PAD.top - PAD.bottom);
    ctx.font = t.font;
    ctx.strokeStyle = t.grid; ctx.fillStyle = t.muted; ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (const v of [0, 0.25, 0.5, 0.75, 1]) {
      const y = Math.round(Y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(PAD.left, y); ctx.lineTo(W - PAD.right, y); ctx.stroke();
      ctx.fillText(String(v), PAD.left - 4, y);
    }
    bars = [];
    ix.targets.forEach((target, g) => {
      const gx = PAD.left + g * gw + (gw - bw * per) / 2;
      ix.layers.forEach((layer, k) => {
        const r = ix.at(concept, layer, target, e);
        if (!r) return;
        const x0 = gx + k * bw; const colour = PALETTE[k % PALETTE.length];
        ctx.globalAlpha = r.significant ? 1 : 0.3;
        ctx.fillStyle = colour;
        ctx.fillRect(x0, Y(r.score), bw - 2, Y(0) - Y(r.score));
        ctx.globalAlpha = 1;
        ctx.strokeStyle = t.text; ctx.lineWidth = 1;
        if (Number.isFinite(r.score_std)) {
          const xm = x0 + (bw - 2) / 2;
          ctx.beginPath(); ctx.moveTo(xm, Y(Math.min(1, r.score + r.score_std))); ctx.lineTo(xm, Y(Math.max(0, r.score - r.score_std))); ctx.stroke();
        }
        if (Number.isFinite(r.random_score)) { // the random baseline: a grey tick across the bar
          ctx.strokeStyle = "#555"; ctx.lineWidth = 2;
          ctx.beginPath(); ctx.moveTo(x0 - 1, Y(r.random_score)); ctx.lineTo(x0 + bw - 1, Y(r.random_score)); ctx.stroke();
        }
        if (r.significant) { ctx.fillStyle = t.text; ctx.textAlign = "center"; ctx.textBaseline = "bottom"; ctx.fillText("*", x0 + (bw - 2) / 2, Y(Math.min(1, r.score + (r.score_std || 0))) - 1); }
        bars.push({ x0, x1: x0 + bw - 2, y0: PAD.top, y1: Y(0), r });
      });
      ctx.fillStyle = t.muted; ctx.textAlign = "center"; ctx.textBaseline = "top";
      ctx.fillText(className(target), PAD.left + g * gw + gw / 2, Y(0) + 6);
    });
    if (hover) { ctx.strokeStyle = "#111"; ctx.lineWidth = 2; ctx.strokeRect(hover.x0 - 1, hover.y0, hover.x1 - hover.x0 + 2, hover.y1 - hover.y0); }
    const r = hover && hover.r;
    readout.textContent = r ? `${r.concept} · ${r.layer} · class ${className(r.target)}: TCAV ${fmt(r.score)} ± ${fmt(r.score_std)} vs random ${fmt(r.random_score)} ± ${fmt(r.random_std)} · p = ${fmt(r.p_value)}${r.p_corrected !== undefined && r.p_corrected !== null ? ` (corrected ${fmt(r.p_corrected)})` : ""} · ${r.significant ? "significant" : "not significant"} · CAV accuracy ${fmt(r.cav_accuracy)}` : "hover a bar: bars are the mean TCAV score over the concept's CAVs (± one standard deviation), the grey tick the random baseline, * significant; faded bars are not significant";
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
  function draw() {
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
      const chip = h("span", "hw-chart-head");
      const sw = h("span");
      sw.style.cssText = `display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;background:${PALETTE[k % PALETTE.length]}`;
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
  draw();
  return () => {
    for (const ev of events) model.off(ev, redraw);
    for (const [node, ev, fn] of listeners) /** @type {HTMLElement} */ (node).removeEventListener(/** @type {string} */ (ev), /** @type {any} */ (fn));
    disposeHover();
    curve.dispose();
    root.remove();
  };
}

export default { render };

// @ts-check
// The ProbeChart view: held-out accuracy of a linear probe per layer, with the control task (Hewitt & Liang)
// and chance, at one epoch; and, when probes were run at several epochs, accuracy per layer over training.
import { LineChart, fmt, h, pct, viewFrame } from "./lib/chart.js";
import { Heatmap } from "./lib/heatmap.js";
import { CSS } from "./lib/style.js";
import { mountView } from "./lib/frame.js";
import { CATEGORICAL } from "./lib/palette.js";

/** Records -> { layers, epochs, at(epoch, layer) } keeping first-seen layer order and ascending epochs. */
export function table(records) {
  const layers = [];
  const epochs = [];
  const byKey = new Map();
  for (const r of records) {
    if (!layers.includes(r.layer)) layers.push(r.layer);
    const e = r.epoch === null || r.epoch === undefined ? -1 : r.epoch;
    if (!epochs.includes(e)) epochs.push(e);
    byKey.set(`${e}|${r.layer}`, r);
  }
  epochs.sort((a, b) => a - b);
  return { layers, epochs, at: (e, layer) => byKey.get(`${e}|${layer}`) };
}

function render({ model, el }) {
  const { root, title, note } = viewFrame("hw-pc", CSS, "", "probe_chart");
  const controls = h("div", "hw-am-chips");
  const range = /** @type {HTMLInputElement} */ (h("input"));
  range.type = "range";
  range.min = "0";
  const epochText = h("span", "hw-chart-value");
  controls.append("epoch ", range, " ", epochText);
  let t = table([]);
  let shown = -1;
  const chart = new LineChart("held-out accuracy per layer", {
    height: 200, xTitle: "layer", yTitle: "accuracy (%)", yFormat: "percent",
    readout: (i) => {
      const r = t.at(t.epochs[shown], t.layers[i]);
      if (!r) return "";
      const parts = [`${r.layer}: accuracy ${pct(r.accuracy)}`, `train ${pct(r.train_accuracy)}`];
      if (r.control_accuracy !== null && r.control_accuracy !== undefined) parts.push(`control ${pct(r.control_accuracy)}`, `selectivity ${fmt(100 * r.selectivity)} pts`);
      parts.push(`chance ${pct(r.chance)}`, `${r.n_train} train / ${r.n_test} test`);
      return parts.join(" · ");
    },
  });
  const over = new Heatmap((row, col) => {
    const r = t.at(t.epochs[row], t.layers[col]);
    return r ? `epoch ${r.epoch} · ${r.layer}: accuracy ${pct(r.accuracy)}` : "";
  });
  const overTitle = h("div", "hw-panel-title", "accuracy per layer over training");
  root.append(controls, chart.el, overTitle, over.el);
  el.appendChild(root);

  let width = 0;
  function draw() {
    t = table(model.get("records") || []);
    title.textContent = model.get("title") || "Probes";
    note.textContent = model.get("description") || "";
    const many = t.epochs.length > 1;
    controls.style.display = many ? "" : "none";
    overTitle.style.display = many ? "" : "none";
    over.el.style.display = many ? "" : "none";
    if (shown < 0 || shown >= t.epochs.length) shown = t.epochs.length - 1;
    range.max = String(Math.max(0, t.epochs.length - 1));
    range.value = String(shown);
    epochText.textContent = many ? String(t.epochs[shown]) : "";
    const e = t.epochs[shown];
    const col = (key) => t.layers.map((layer) => { const r = t.at(e, layer); const v = r ? r[key] : null; return v === null || v === undefined ? NaN : v; });
    const lines = [{ ys: col("accuracy"), label: "probe", color: CATEGORICAL[1] }];
    if (col("control_accuracy").some(Number.isFinite)) lines.push({ ys: col("control_accuracy"), label: "control", color: CATEGORICAL[0], dash: [4, 3] });
    lines.push({ ys: col("chance"), label: "chance", color: "#8c8c8c", dash: [2, 3] });
    chart.update({ xs: t.layers.map((_, i) => i), xLabels: t.layers, lines, yMin: 0, yMax: 1,
      value: `best: ${t.layers.length ? t.layers[col("accuracy").indexOf(Math.max(...col("accuracy").filter(Number.isFinite)))] ?? "–" : "–"}` }, width);
    if (many) {
      over.update({ values: t.epochs.map((ep) => t.layers.map((layer) => t.at(ep, layer)?.accuracy ?? null)),
        rows: t.epochs.map(String), cols: t.layers, rowTitle: "epoch", colTitle: "layer", cellText: t.epochs.length <= 20,
        valueTitle: "held-out accuracy" }, width);
    }
  }
  const onRange = () => { shown = Number(range.value); draw(); };
  range.addEventListener("input", onRange);
  const events = ["change:records", "change:title", "change:description"];
  const redraw = () => { shown = -1; draw(); };
  for (const ev of events) model.on(ev, redraw);
  const frame = mountView(root, "probe_chart", (w) => { width = w; draw(); });
  frame.now();
  return () => {
    frame.dispose();
    for (const ev of events) model.off(ev, redraw);
    range.removeEventListener("input", onRange);
    chart.dispose();
    over.dispose();
    root.remove();
  };
}

export default { render };

import { test } from "node:test";
import assert from "node:assert/strict";
import { installDom } from "./helpers.js";

installDom();
const { fitTicks, fmt, niceTicks, powerTicks } = await import("../lib/chart.js");
const { Labels, overlaps } = await import("../lib/frame.js");
const { heatScale } = await import("../lib/heatmap.js");
const { layerWarnings, THRESHOLDS } = await import("../lib/warnings.js");

test("numbers keep their leading zero; small ones use an exponent", () => {
  assert.equal(fmt(0.00316), "0.00316");
  assert.equal(fmt(-0.5), "-0.5");
  assert.equal(fmt(0.000316), "3.16e-4");
  assert.equal(fmt(1e-5), "1e-5");
});

test("integer axes never get a fractional tick (no epoch 2.5)", () => {
  assert.deepEqual(niceTicks(0, 10, 4), [0, 2.5, 5, 7.5, 10]); // real-valued: 2.5 is fine
  assert.deepEqual(niceTicks(0, 10, 4, true), [0, 5, 10]);
  assert.deepEqual(niceTicks(0, 10, 5, true), [0, 2, 4, 6, 8, 10]);
  assert.deepEqual(niceTicks(0, 3, 8, true), [0, 1, 2, 3]);
});

test("log ticks inside a decade are 1-2-5 values, never 10^-2.5", () => {
  const ticks = powerTicks(Math.log10(0.0012), Math.log10(0.009)).map((e) => Number((10 ** e).toPrecision(3)));
  assert.deepEqual(ticks, [0.002, 0.005]);
  assert.deepEqual(powerTicks(-3.2, -0.5), [-3, -2, -1]);
});

test("fitTicks thins ticks until their labels (plus a gap) fit the spacing", () => {
  const width = (s) => s.length * 7;
  const ticks = fitTicks(0, 100000, 200, String, width, { integer: true });
  const px = (200 / 100000) * (ticks[1] - ticks[0]);
  assert.ok(px >= Math.max(...ticks.map((t) => width(String(t)))) + 10, `${ticks}`);
  assert.ok(ticks.length >= 2);
});

test("Labels refuses a label that would overlap one placed before it, and records boxes", () => {
  const drawn = [];
  const ctx = { textAlign: "left", textBaseline: "top", measureText: (s) => ({ width: s.length * 6 }),
    fillText: (s) => drawn.push(s), save() {}, restore() {}, translate() {}, rotate() {} };
  const L = new Labels(/** @type {any} */ (ctx), 10);
  assert.ok(L.place("l1", 10, 10));
  assert.equal(L.place("l2", 14, 12), null); // on top of l1
  assert.ok(L.place("l2", 10, 30));
  assert.deepEqual(drawn, ["l1", "l2"]);
  assert.equal(L.fit("a long layer name", 40).endsWith("…"), true);
  assert.ok(L.width(L.fit("a long layer name", 40)) <= 40);
  const [a, b] = L.boxes;
  assert.equal(overlaps(a, b), false);
  // a vertical label's box is the text's box turned: width = line height, height = text width
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  const v = L.place("vertical", 100, 100, { angle: -Math.PI / 2 });
  assert.ok(Math.abs(v.w - 12) < 1e-6 && Math.abs(v.h - 48) < 1e-6, JSON.stringify(v));
});

test("heatmaps scale to the data's range, and centre signed data on 0", () => {
  assert.deepEqual(heatScale([[0.69, 0.99], [0.8, null]]), { lo: 0.69, hi: 0.99, name: "viridis", note: "scaled to the data's range 0.69–0.99" });
  const s = heatScale([[-0.2, 0.5]]);
  assert.equal(s.name, "diverging"); assert.equal(s.lo, -0.5); assert.equal(s.hi, 0.5);
});

test("layer warnings: dead units and exploding gradients at their stated thresholds", () => {
  const rows = (dead, grads) => ({ count: grads.length, has: () => true, step: (i) => 10 * i,
    value: (i, f) => (f === "dead_frac" ? dead : f === "grad_norm" ? grads[i] : 0) });
  const below = layerWarnings(rows(THRESHOLDS.dead - 0.01, [1, 1, 1, 1, 1]));
  assert.deepEqual(below, []);
  const w = layerWarnings(rows(0.41, [1, 1, 1, 1, 1, 500]));
  assert.deepEqual(w.map((x) => x.kind), ["dead", "exploding"]);
  assert.match(w[0].text, /41% of units dead \(flagged at 25% or more\)/);
  assert.match(w[1].text, /500× its median \(flagged above 100×\)/);
  assert.deepEqual(layerWarnings(rows(0, [1, 1, 1, 1, 1, 1e-4])).map((x) => x.kind), ["vanishing"]);
});

test("layer warnings: saturated units at their stated threshold, with the rule Python sent", () => {
  const rows = (info) => ({ count: 1, has: () => false, step: () => 7, value: () => 0, info });
  assert.deepEqual(layerWarnings(rows({})), []);  // a layer without stated bounds: no statistic, no warning
  assert.deepEqual(layerWarnings(rows({ saturated: [7, THRESHOLDS.saturated - 0.01] })), []);
  const [w] = layerWarnings(rows({ saturated: [7, 0.41], saturation: "Tanh: output in [-1, 1]" }));
  assert.equal(w.kind, "saturated");
  assert.match(w.text, /41% of units saturated at step 7 \(flagged at 25% or more\)/);
  assert.match(w.detail, /^Tanh: output in \[-1, 1\]; flagged when 25% or more/);
});

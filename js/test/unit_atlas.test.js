import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeModel, installDom } from "./helpers.js";
import { FrameMeter, drawHistogram, imageData, nth } from "../lib/pictures.js";

const dom = installDom();
const { default: view, atlasKey, pageUnits } = await import("../unit_atlas.js");

/** Pack arrays like hiddenwidgets.transport.encode, uint8 included (each array 4-byte aligned). */
function encode(arrays) {
  const index = {};
  const parts = [];
  let offset = 0;
  for (const [key, [arr, shape]] of Object.entries(arrays)) {
    const dtype = arr instanceof Int32Array ? "int32" : arr instanceof Uint8Array ? "uint8" : "float32";
    index[key] = [dtype, offset, shape];
    const bytes = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
    const padded = new Uint8Array(bytes.length + ((4 - (bytes.length % 4)) % 4));
    padded.set(bytes);
    parts.push(padded);
    offset += padded.length;
  }
  const buf = new Uint8Array(offset);
  let at = 0;
  for (const p of parts) { buf.set(p, at); at += p.length; }
  return { index, data: new DataView(buf.buffer) };
}

const UNITS = [0, 1, 2];
const K = 2;

function tilesMessage(states = [1, 1, 0], extra = {}) {
  const n = UNITS.length;
  const images = new Uint8Array(n * 4 * 4 * 3).map((_, i) => i % 256);
  const { index, data } = encode({
    images: [images, [n, 4, 4, 3]], values: [new Float32Array([1.5, 0.25, NaN]), [n]],
    steps: [new Int32Array([32, 32, 0]), [n]], state: [new Int32Array(states), [n]],
    top_values: [new Float32Array([3, 2, 1, 0.5, 0.2, 0.1]), [n, K]],
    top_indices: [new Int32Array([5, 7, 1, -1, 2, 3]), [n, K]],
    crops: [new Uint8Array(n * K * 2 * 2 * 3).fill(200), [n, K, 2, 2, 3]],
    iou: [new Float32Array([0.31, 0.01, 0.2]), [n]],
  });
  return {
    header: { key: atlasKey("conv2", "channel", 0, 0), layer: "conv2", objective: "channel", seed: 0, page: 0, units: UNITS,
      version: 0, objective_text: "channel('conv2', unit)", comparable: true, n_examples: 10, index,
      concepts: ["<b>red</b>", "circle", "stripes"], ...extra },
    data,
  };
}

function detailMessage(unit = 1) {
  const { index, data } = encode({
    top_indices: [new Int32Array([5, 7]), [2]], top_values: [new Float32Array([3, 2]), [2]],
    top_images: [new Uint8Array(2 * 8 * 8 * 3).fill(90), [2, 8, 8, 3]], top_boxes: [new Int32Array([0, 0, 4, 4, 2, 2, 6, 6]), [2, 4]],
    top_crops: [new Uint8Array(2 * 4 * 4 * 3).fill(10), [2, 4, 4, 3]],
    bottom_indices: [new Int32Array([1]), [1]], bottom_values: [new Float32Array([-1]), [1]],
    bottom_images: [new Uint8Array(8 * 8 * 3), [1, 8, 8, 3]],
    hist_counts: [new Int32Array([1, 4, 2]), [3]], hist_edges: [new Float32Array([-1, 0, 1, 2]), [4]],
    negative: [new Uint8Array(4 * 4 * 3), [1, 4, 4, 3]],
    facets: [new Uint8Array(2 * 4 * 4 * 3), [2, 4, 4, 3]], facet_values: [new Float32Array([2.5, 1.5]), [2]],
    facet_sizes: [new Int32Array([6, 4]), [2]], facet_members: [new Uint8Array(2 * 4 * 2 * 2 * 3), [2, 4, 2, 2, 3]],
  });
  return {
    header: { key: atlasKey("conv2", "channel", 0, unit), layer: "conv2", unit, objective: "channel", seed: 0, version: 0,
      pool: "mean", comparable: true, index, image_size: [8, 8], hist_n: 7, top_labels: ["<i>cat</i>", "dog"],
      negative: { value: -0.5, steps: 32, cancelled: false }, facets: { steps: 32, cancelled: false, examples: 10 },
      concepts: [["red", 0.31], ["solid", 0.1]] },
    data,
  };
}

function state(extra = {}) {
  return {
    title: "atlas", layers: ["conv1", "conv2"], layer: "conv2", objectives: ["channel", "neuron"], objective: "channel",
    seed: 0, page: 0, page_size: 3, unit: -1, inversion_example: -1, n_examples: 10, status: "", busy: false,
    weights: "computed on a copy of the weights taken 12:00:00", version: 0,
    layer_info: { conv1: { units: [0, 1], kind: "conv", count: 2 }, conv2: { units: [0, 1, 2, 3, 4], kind: "conv", count: 5 } },
    settings: { steps: 32, k: K, pool: "mean", facets: 2, fps: 12 }, ...extra,
  };
}

function mount(extra) {
  const model = new FakeModel(state(extra));
  const el = document.createElement("div");
  document.body.appendChild(el);
  return { model, el, cleanup: view.render({ model, el }) };
}

const msg = (model, m, buffers) => model.emit("msg:custom", m, buffers);

test("helpers: keys as Python writes them, pages of units, nth image, grey and RGB pixels", () => {
  assert.equal(atlasKey("conv2", "channel", 0, 3), "conv2|channel|0|3");
  assert.deepEqual(pageUnits([4, 5, 6, 7, 8], 1, 2), [6, 7]);
  const [px, shape] = nth(new Uint8Array([1, 2, 3, 4, 5, 6]), [2, 1, 1, 3], 1);
  assert.deepEqual([...px], [4, 5, 6]);
  assert.deepEqual(shape, [1, 1, 3]);
  const grey = imageData(new Uint8Array([7, 9]), [1, 2, 1]);
  assert.deepEqual([...grey.data], [7, 7, 7, 255, 9, 9, 9, 255]);
  const meter = new FrameMeter(1000);
  for (let t = 0; t <= 1000; t += 100) meter.add(t);
  assert.equal(meter.rate(1000), 10);
  assert.equal(meter.rate(5000), 0);
});

test("a live view asks for its page, draws the tiles Python sends, labels as text", () => {
  const { model, el, cleanup } = mount();
  assert.deepEqual(model.sent, [{ type: "fetch", what: "page" }]);
  const m = tilesMessage();
  msg(model, { type: "tiles", header: m.header }, [m.data]);
  const tiles = el.querySelectorAll(".hw-ua-tile");
  assert.equal(tiles.length, 3);
  assert.deepEqual([...tiles].map((t) => t.dataset.state), ["done", "done", "waiting"]);
  assert.equal(tiles[0].querySelector(".hw-ua-value").textContent, "1.5");
  assert.equal(tiles[2].querySelector(".hw-ua-value").textContent, "…");
  assert.equal(tiles[0].querySelector(".hw-ua-label").textContent, "<b>red</b> 0.31");
  assert.equal(el.querySelectorAll("b").length, 0);
  assert.equal(tiles[1].querySelector(".hw-ua-chip").dataset.weak, "true"); // IoU 0.01 is no detector
  // unit 1 has one valid top example (index -1 is padding): one crop drawn
  assert.equal(tiles[1].querySelectorAll(".hw-ua-crops canvas").length, 1);
  assert.match(el.querySelector(".hw-ua-pagetext").textContent, /units 0–2 of 5 · page 1 of 2/);
  cleanup();
  assert.equal(model.listenerCount(), 0);
  assert.equal(el.childElementCount, 0);
});

test("live frames redraw waiting tiles only, show progress and the objective, and are counted", () => {
  const { model, el, cleanup } = mount({ busy: true, status: "optimising conv2 units 0–2" });
  const m = tilesMessage();
  msg(model, { type: "tiles", header: m.header }, [m.data]);
  const { index, data } = encode({ images: [new Uint8Array(3 * 4 * 4 * 3).fill(128), [3, 4, 4, 3]] });
  msg(model, { type: "frame", target: "page", key: "conv2|channel|0|0", units: UNITS, step: 7, total: 32, value: 2.5, version: 0, index }, [data]);
  const canvases = el.querySelectorAll(".hw-ua-tile canvas.hw-ua-img");
  assert.equal(canvases[2].dataset.live, "7");
  assert.equal(canvases[0].dataset.live, undefined); // finished units keep their result
  assert.match(el.querySelector(".hw-ua-livetext").textContent, /step 7 of 32 · objective 2\.5/);
  assert.equal(el.querySelector(".hw-ua-progress").value, 7 / 32);
  assert.equal(el.querySelector(".hw-ua").__hwAtlas.frames, 1);
  // a frame of another page (the view moved on) draws nothing
  msg(model, { type: "frame", target: "page", key: "conv2|channel|0|1", units: [3, 4], step: 9, total: 32, value: 1, version: 0, index }, [data]);
  assert.equal(el.querySelectorAll(".hw-ua-tile canvas.hw-ua-img")[2].dataset.live, "7");
  assert.equal(el.querySelector(".hw-ua").__hwAtlas.frames, 2); // (received: counted)
  // frames of replaced weights are dropped
  model.set("version", 2);
  msg(model, { type: "frame", target: "page", key: "conv2|channel|0|0", units: UNITS, step: 11, total: 32, value: 1, version: 1, index }, [data]);
  assert.equal(el.querySelector(".hw-ua").__hwAtlas.frames, 2);
  assert.equal(el.querySelector(".hw-ua-cancel").hidden, false);
  el.querySelector(".hw-ua-cancel").click();
  assert.deepEqual(model.sent.at(-1), { type: "cancel" });
  cleanup();
});

test("controls write the traits: pager, layer, objective, seed, use current weights", () => {
  const { model, el, cleanup } = mount();
  assert.equal(el.querySelector(".hw-ua-cancel").hidden, true);
  assert.equal(el.querySelector(".hw-ua-prev").disabled, true);
  el.querySelector(".hw-ua-next").click();
  assert.equal(model.get("page"), 1);
  assert.deepEqual(model.sent, [{ type: "fetch", what: "page" }]); // only at render: Python acts on the trait
  assert.equal(el.querySelector(".hw-ua-next").disabled, true);
  const layer = el.querySelector(".hw-ua-layer");
  assert.deepEqual([...layer.options].map((o) => o.value), ["conv1", "conv2"]);
  layer.value = "conv1";
  layer.dispatchEvent(new window.Event("change"));
  assert.equal(model.get("layer"), "conv1");
  const objective = el.querySelector(".hw-ua-objective");
  objective.value = "neuron";
  objective.dispatchEvent(new window.Event("change"));
  assert.equal(model.get("objective"), "neuron");
  const seed = el.querySelector(".hw-ua-seed");
  seed.value = "4";
  seed.dispatchEvent(new window.Event("change"));
  assert.equal(model.get("seed"), 4);
  el.querySelector(".hw-ua-refresh").click();
  assert.deepEqual(model.sent.at(-1), { type: "refresh" });
  assert.ok(model.saves >= 4);
  cleanup();
});

test("clicking a unit opens its detail: negative, histogram, facets, top and bottom examples", () => {
  const { model, el, cleanup } = mount();
  const m = tilesMessage();
  msg(model, { type: "tiles", header: m.header }, [m.data]);
  el.querySelectorAll(".hw-ua-tile")[1].click();
  assert.equal(model.get("unit"), 1);
  assert.ok(model.saves >= 1);
  assert.equal(el.querySelector(".hw-ua-detail").hidden, false);
  assert.match(el.querySelector(".hw-ua-detail").textContent, /computing…/);
  const d = detailMessage(1);
  msg(model, { type: "detail", header: d.header }, [d.data]);
  const panel = el.querySelector(".hw-ua-detail");
  assert.equal(panel.dataset.ready, "true");
  assert.equal(panel.querySelectorAll(".hw-ua-facet").length, 2);
  assert.match(panel.querySelector(".hw-ua-facet").textContent, /facet 1: 6 examplesobjective 2\.5/);
  assert.equal(panel.querySelectorAll('.hw-ua-strip[data-which="top"] .hw-ua-ex').length, 2);
  assert.equal(panel.querySelectorAll('.hw-ua-strip[data-which="bottom"] .hw-ua-ex').length, 1);
  assert.match(panel.textContent, /<i>cat<\/i>/); // a class name stays text
  assert.equal(panel.querySelectorAll("i").length, 0);
  assert.match(panel.querySelector(".hw-ua-negative").textContent, /negative · -0\.5/);
  assert.match(panel.querySelector(".hw-ua-own").textContent, /optimised · 0\.25/); // from the tile
  assert.match(panel.querySelector(".hw-ua-hist").textContent, /each of 7 examples/);
  assert.match(panel.querySelector(".hw-ua-concepts").textContent, /red · IoU 0\.31/);
  // the histogram marks the optimised and negative values (the same measure as the scores)
  dom.calls.length = 0;
  model.set("unit", 1);
  assert.ok(dom.calls.some((c) => c[0] === "fillText" && c[1] === "optimised"));
  assert.ok(dom.calls.some((c) => c[0] === "fillText" && c[1] === "negative"));
  el.querySelector(".hw-ua-close").click();
  assert.equal(model.get("unit"), -1);
  assert.equal(el.querySelector(".hw-ua-detail").hidden, true);
  cleanup();
});

test("errors from Python are shown where the result would be", () => {
  const { model, el, cleanup } = mount();
  msg(model, { type: "error", what: "tiles", key: "conv2|channel|0|0", message: "FeatureVisualizationError: bad <layer>" });
  assert.equal(el.querySelector(".hw-ua-pagenote").textContent, "FeatureVisualizationError: bad <layer>");
  model.set("status", "error: FeatureVisualizationError: bad <layer>");
  assert.equal(el.querySelector(".hw-ua-status").dataset.error, "true");
  cleanup();
});

test("inversion: the panel asks for an example and shows each layer's reconstruction and errors", () => {
  const { model, el, cleanup } = mount();
  const box = el.querySelector(".hw-ua-invexample");
  box.value = "99";
  el.querySelector(".hw-ua-invert").click();
  assert.equal(model.get("inversion_example"), -1); // out of range: not sent
  assert.match(el.querySelector(".hw-ua-invbody").textContent, /choose an example 0\.\.9/);
  box.value = "3";
  el.querySelector(".hw-ua-invert").click();
  assert.equal(model.get("inversion_example"), 3);
  assert.match(el.querySelector(".hw-ua-invbody").textContent, /conv1: reconstructing…/);
  const { index, data } = encode({ example: [new Uint8Array(4 * 4 * 3), [1, 4, 4, 3]], images: [new Uint8Array(2 * 4 * 4 * 3), [2, 4, 4, 3]],
    pixel_error: [new Float32Array([0.1, 0.4]), [2]], code_error: [new Float32Array([0.01, 0.02]), [2]] });
  msg(model, { type: "inversion", header: { key: "3", example: 3, layers: ["conv1", "conv2"], steps: 32, cancelled: false, version: 0, index } }, [data]);
  const figs = el.querySelectorAll(".hw-ua-invbody [data-layer]");
  assert.deepEqual([...figs].map((f) => f.dataset.layer), ["conv1", "conv2"]);
  assert.match(figs[1].textContent, /conv2pixel error 0\.4code error 0\.02/);
  cleanup();
});

test("a static page shows what was computed, and says what needs a kernel instead of failing", () => {
  const m = tilesMessage([1, 2, 1]);
  const d = detailMessage(0);
  const { model, el, cleanup } = mount({ __hw_static: true,
    _static: { pages: { [m.header.key]: { header: m.header, data: m.data } }, details: { [d.header.key]: { header: d.header, data: d.data } }, inversions: {} } });
  assert.deepEqual(model.sent, []); // no kernel to ask
  const tiles = el.querySelectorAll(".hw-ua-tile");
  assert.deepEqual([...tiles].map((t) => t.dataset.state), ["done", "stopped", "done"]);
  assert.match(tiles[1].querySelector(".hw-ua-value").textContent, /stopped 32\/32/);
  assert.equal(el.querySelector(".hw-ua-refresh").disabled, true);
  assert.match(el.querySelector(".hw-ua-weights").textContent, /a saved page: .* needs a running kernel/);
  assert.equal(el.querySelector(".hw-ua-cancel").hidden, true);
  tiles[0].click();
  assert.equal(el.querySelector(".hw-ua-detail").dataset.ready, "true");
  el.querySelectorAll(".hw-ua-tile")[2].click();
  assert.match(el.querySelector(".hw-ua-detail").textContent, /not computed before the page was saved \(needs a running kernel/);
  el.querySelector(".hw-ua-next").click();
  assert.match(el.querySelector(".hw-ua-pagenote").textContent, /needs a running kernel/);
  assert.match(el.querySelector(".hw-ua-invbody").textContent, /needs a running kernel/);
  assert.deepEqual(model.sent, []);
  cleanup();
});

test("a reset (new weights) drops what the view held", () => {
  const { model, el, cleanup } = mount();
  const m = tilesMessage();
  msg(model, { type: "tiles", header: m.header }, [m.data]);
  assert.equal(el.querySelector(".hw-ua-tile").dataset.state, "done");
  msg(model, { type: "reset", version: 1 });
  assert.equal(el.querySelector(".hw-ua-tile").dataset.state, "waiting");
  // tiles of the old weights that arrive late are ignored
  msg(model, { type: "tiles", header: m.header }, [m.data]);
  assert.equal(el.querySelector(".hw-ua-tile").dataset.state, "waiting");
  cleanup();
});

test("drawHistogram scales bars to the tallest bin and draws marks beyond the data's range", () => {
  dom.calls.length = 0;
  const canvas = document.createElement("canvas");
  drawHistogram(canvas, [2, 4], [0, 1, 2], [{ value: 3, label: "optimised", color: "#0a0" }], 100, 60);
  const rects = dom.calls.filter((c) => c[0] === "fillRect");
  // plot height 60 - 16 - 18 = 26: bars of 13 and 26 pixels
  assert.deepEqual(rects.slice(0, 2).map((r) => r[4]), [13, 26]);
  assert.ok(dom.calls.some((c) => c[0] === "fillText" && c[1] === "3")); // the axis reaches the mark
});

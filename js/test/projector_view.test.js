import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeModel, installDom, pack } from "./helpers.js";
import { PointGrid, View, boxSelect, combine, fade, inside, lassoSelect, pack as px, rasterise } from "../lib/scatter.js";

installDom();
const { default: view, colourPoints, pointsKey } = await import("../projector.js");

test("rasterise puts each point's colour at its screen position, selected points on top", () => {
  const v = new View(10, 10);
  v.fit([0, 1, 0, 1], 0); // data [0,1]^2 onto 10 x 10 pixels, y up
  const pixels = new Uint32Array(100);
  const xy = new Float32Array([0.05, 0.95, 0.55, 0.45, 0.55, 0.45]);
  const red = px(255, 0, 0); const blue = px(0, 0, 255);
  const drawn = rasterise(pixels, 10, 10, 1, xy, new Uint32Array([red, blue, red]), v, { size: 1 });
  assert.equal(drawn, 3);
  assert.equal(pixels[1 * 10 + 1] >>> 0, red); // (0.05, 0.95) -> screen (0.5, 0.5) -> pixel (1, 1)
  const white = 0xffffffff;
  assert.equal(pixels.filter((p) => p !== white).length, 2); // points 1 and 2 share a pixel
  // with a selection, unselected points fade and the selected one wins the shared pixel
  rasterise(pixels, 10, 10, 1, xy, new Uint32Array([red, blue, red]), v, { size: 1, selected: new Uint8Array([0, 1, 0]) });
  const shared = pixels.find((p) => p === blue);
  assert.equal(shared, blue);
  assert.ok(pixels.includes(fade(red, 0.7)));
});

test("the grid finds the same nearest point as a brute-force search", () => {
  let seed = 7;
  const rand = () => { seed = (seed * 16807) % 2147483647; return seed / 2147483647; };
  const xy = new Float32Array(4000).map(() => rand() * 10);
  const grid = new PointGrid(xy, 32);
  for (let q = 0; q < 50; q++) {
    const x = rand() * 10; const y = rand() * 10; const r = 0.3;
    let best = -1; let bestD = r * r;
    for (let i = 0; i < 2000; i++) {
      const d = (xy[2 * i] - x) ** 2 + (xy[2 * i + 1] - y) ** 2;
      if (d <= bestD) { bestD = d; best = i; }
    }
    const found = grid.nearest(x, y, r);
    if (best < 0) assert.equal(found, -1);
    else assert.equal((xy[2 * found] - x) ** 2 + (xy[2 * found + 1] - y) ** 2, bestD);
  }
});

test("lasso and box select exactly the points inside, zoom keeps the point under the cursor", () => {
  const v = new View(100, 100);
  v.fit([0, 10, 0, 10], 0);
  const xy = new Float32Array([1, 1, 5, 5, 9, 9, 5, 9]);
  // a triangle around (5, 5) and (1, 1) in screen space; (9, 9) and (5, 9) outside
  const poly = [v.sx(0), v.sy(0), v.sx(12), v.sy(0), v.sx(0), v.sy(12)];
  assert.deepEqual([...lassoSelect(xy, v, poly)], [0, 1]);
  assert.deepEqual([...boxSelect(xy, v, v.sx(4), v.sy(4), v.sx(10), v.sy(10))], [1, 2, 3]);
  assert.ok(inside([0, 0, 10, 0, 0, 10], 2, 2) && !inside([0, 0, 10, 0, 0, 10], 8, 8));
  const [bx, by] = [v.dx(30), v.dy(60)];
  v.zoom(2.5, 30, 60);
  assert.ok(Math.abs(v.sx(bx) - 30) < 1e-9 && Math.abs(v.sy(by) - 60) < 1e-9);
  assert.deepEqual([...combine(new Int32Array([1, 5]), [3, 5], "add")], [1, 3, 5]);
  assert.deepEqual([...combine(new Int32Array([1, 5]), [5], "remove")], [1]);
  assert.deepEqual([...combine(new Int32Array([1, 5]), [9, 2], "replace")], [2, 9]);
});

test("colours: categories from the palette, values on viridis; keys match Python's", () => {
  const cats = colourPoints(new Int32Array([0, 1, 0]), { kind: "category", names: ["a", "b"] }, 3);
  assert.equal(cats[0], cats[2]);
  assert.notEqual(cats[0], cats[1]);
  const vals = colourPoints(new Float32Array([0, 0.5, 1, NaN]), { kind: "value" }, 4);
  assert.notEqual(vals[0], vals[2]);
  assert.equal(vals[3], px(120, 120, 120));
  assert.equal(pointsKey("l", -1, [], "pca"), "l|None|pca");
  assert.equal(pointsKey("l", -1, [0, 3], "pca"), "l|3|pca");
  assert.equal(pointsKey("l", 0, [0, 3], "umap"), "l|0|umap");
});

function state() {
  const pts = pack({ xy: [new Float32Array([0, 0, 1, 1, 2, 0, 3, 1]), [4, 2]] });
  const cols = pack({ label: [new Int32Array([0, 1, 1, 0]), [4]] });
  return {
    title: "P", layers: ["a", "b"], layer: "b", epochs: [], epoch: -1, methods: ["pca"], method: "pca",
    color_fields: { label: { kind: "category", names: ["<img src=x onerror=alert(1)>", "one"] } }, color_by: "label",
    k: 2, status: "", example_kind: "text", example_meta: {},
    _points: { header: { index: pts.index, key: "b|None|pca", n: 4 }, data: pts.data },
    _colors: { header: { index: cols.index }, data: cols.data },
    _selection: {},
  };
}

test("the view lists classes as text, selects a class from the legend and asks for neighbours", () => {
  const model = new FakeModel(state());
  const el = document.createElement("div");
  document.body.appendChild(el);
  const cleanup = view.render({ model, el });
  const legend = [...el.querySelectorAll(".hw-pj-legend button")];
  assert.equal(legend.length, 2);
  assert.equal(el.querySelector("img"), null); // the class name stayed text
  assert.ok(legend[0].textContent.includes("<img src=x"));
  legend[1].dispatchEvent(new window.MouseEvent("click"));
  const at = model.sent.findIndex((m) => m.type === "select");
  assert.ok(at >= 0 && model.sent[at].count === 2);
  const [buffer] = model.buffers[at]; // the indices travel as the message's binary buffer
  assert.deepEqual([...new Int32Array(buffer)], [1, 2]);
  assert.match(el.textContent, /2 selected/);
  // Python echoes the selection: nothing is sent again
  const echo = pack({ indices: [new Int32Array([1, 2]), [2]] });
  const before = model.sent.length;
  model.set("_selection", { header: { index: echo.index, count: 2 }, data: echo.data });
  assert.equal(model.sent.length, before);
  // a reply for neighbours of the focused point is shown; the example text arrives as a page
  const plot = el.querySelector(".hw-pj-plot");
  const ev = (type, x, y) => new window.MouseEvent(type, { clientX: x, clientY: y });
  // the view fits x in [0, 3], y in [0, 1] into 620 x 460 with a 14 px margin: scale 592 / 3, point 1 (1, 1) is at
  // (310 - 0.5 * scale, 230 - 0.5 * scale); jsdom puts the plot at (0, 0)
  const scale = 592 / 3;
  plot.dispatchEvent(ev("pointerdown", 310 - 0.5 * scale + 2, 230 - 0.5 * scale - 1));
  plot.dispatchEvent(ev("pointerup", 310 - 0.5 * scale + 2, 230 - 0.5 * scale - 1));
  const asked = model.sent.filter((m) => m.type === "neighbours");
  assert.equal(asked.length, 1);
  assert.equal(asked[0].index, 1);
  {
    const index = asked[0].index;
    model.emit("msg:custom", { type: "neighbours", index, indices: [0, 3], distances: [1, 2] });
    assert.match(el.textContent, /2 nearest to/);
    const pageReq = model.sent.find((m) => m.type === "examples");
    assert.ok(pageReq);
    model.emit("msg:custom", { type: "examples", page: 0, header: { texts: ["<b>zero</b>", "one", "two", "three"] } }, [new DataView(new ArrayBuffer(0))]);
    assert.match(el.textContent, /<b>zero<\/b>/);
    assert.equal(el.querySelector("b"), null);
  }
  cleanup();
  assert.equal(model.listenerCount(), 0);
});

test("the view asks Python for the points of a new epoch once, and again when that epoch is recorded again", () => {
  const model = new FakeModel({ ...state(), epochs: [0], epoch: -1, _points: { header: { ...state()._points.header, key: "b|0|pca" }, data: state()._points.data } });
  const el = document.createElement("div");
  document.body.appendChild(el);
  const cleanup = view.render({ model, el });
  try {
    assert.equal(model.sent.filter((m) => m.type === "points").length, 0); // epoch 0 is there
    model.set("epochs", [0, 1]); // training recorded epoch 1; the view follows the latest
    model.set("epochs", [0, 1]);
    const asks = model.sent.filter((m) => m.type === "points");
    assert.equal(asks.length, 1);
    assert.deepEqual([asks[0].layer, asks[0].epoch, asks[0].method], ["b", -1, "pca"]);
    const pts = pack({ xy: [new Float32Array([5, 5, 6, 6, 7, 5, 8, 6]), [4, 2]] });
    model.set("_points", { header: { index: pts.index, key: "b|1|pca", n: 4, version: 2 }, data: pts.data });
    model.emit("msg:custom", { type: "stale", keys: ["b|1|pca"] }); // epoch 1 recorded again
    assert.equal(model.sent.filter((m) => m.type === "points").length, 2);
  } finally {
    cleanup();
  }
});

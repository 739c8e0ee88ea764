import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeModel, dataView, fixture, installDom } from "./helpers.js";

const dom = installDom();
const { default: view } = await import("../activation_monitor.js");

function snapshot() {
  return { header: fixture.snapshot.header, data: dataView(fixture.snapshot.data) };
}

function mount(state = {}) {
  const model = new FakeModel({
    layers: ["conv1", "fc <b>"], selected_layers: ["conv1"], paused: false, title: "My <i>run</i>",
    _history: snapshot(), ...state,
  });
  const el = document.createElement("div");
  document.body.appendChild(el);
  const cleanup = view.render({ model, el });
  return { model, el, cleanup };
}

const flush = () => new Promise((r) => setTimeout(r, 40));

test("renders counters, one chip per layer and a card for each selected layer", async () => {
  const { el, cleanup } = mount();
  await flush();
  const root = el.querySelector(".hw-am");
  assert.equal(root.dataset.step, String(fixture.snapshot.header.step));
  assert.match(el.querySelector(".hw-am-counter").textContent, /^step 30 · epoch 3$/);
  assert.deepEqual([...el.querySelectorAll(".hw-chip")].map((c) => c.textContent), ["conv1", "fc <b>"]);
  assert.deepEqual([...el.querySelectorAll(".hw-am-layer:not([hidden])")].map((c) => c.dataset.layer), ["conv1"]);
  const detail = el.querySelector('.hw-am-layer[data-layer="conv1"] .hw-detail');
  assert.equal(detail.dataset.ready, "true");
  assert.match(detail.textContent, /feature maps at step 30/);
  assert.equal(el.querySelectorAll(".hw-chart[data-scalar='loss']").length, 1);
  cleanup();
});

test("user text is text: layer names and titles never become elements", async () => {
  const { el, cleanup } = mount({ selected_layers: ["fc <b>"] });
  await flush();
  assert.equal(el.querySelector(".hw-am-title").textContent, "My <i>run</i>");
  assert.equal(el.querySelectorAll("b, i").length, 0);
  assert.equal(el.querySelector('.hw-am-layer[data-layer="fc <b>"] .hw-am-layer-name').textContent, "fc <b>");
  cleanup();
});

test("clicking a chip selects the layer in the model; Pause sets `paused`", async () => {
  const { model, el, cleanup } = mount();
  el.querySelector('.hw-chip[data-layer="fc <b>"]').click();
  assert.deepEqual(model.get("selected_layers"), ["conv1", "fc <b>"]);
  assert.equal(model.saves, 1);
  await flush();
  assert.equal(el.querySelector('.hw-chip[data-layer="fc <b>"]').getAttribute("aria-pressed"), "true");
  el.querySelector(".hw-am-pause").click();
  assert.equal(model.get("paused"), true);
  await flush();
  assert.equal(el.querySelector(".hw-am-pause").textContent, "Resume");
  cleanup();
});

test("live frames update the view; a gap makes it ask Python for a resend", async () => {
  const { model, el, cleanup } = mount({ _history: undefined });
  const [f0, , f2] = fixture.frames;
  model.emit("msg:custom", { type: "frame", ...f0.header }, [dataView(f0.data)]);
  await flush();
  assert.equal(el.querySelector(".hw-am").dataset.step, String(f0.header.step));
  assert.equal(model.sent.length, 0);
  model.emit("msg:custom", { type: "frame", ...f2.header }, [dataView(f2.data)]);
  await flush();
  assert.deepEqual(model.sent, [{ type: "resync" }]);
  assert.equal(el.querySelector(".hw-am-frames").textContent, "1 update skipped while the kernel was busy");
  assert.match(el.querySelector(".hw-am-frames").title, /2 received of 3 sent · 1 lost/);
  cleanup();
});

test("ridgeline, charts and feature maps draw on the canvas", async () => {
  dom.calls.length = 0;
  const { cleanup } = mount();
  await flush();
  const names = new Set(dom.calls.map((c) => c[0]));
  for (const op of ["stroke", "fill", "fillText", "putImageData", "drawImage"]) assert.ok(names.has(op), op);
  cleanup();
});

test("hovering a chart or the ridgeline reads out the numbers under the pointer", async () => {
  const { el, cleanup } = mount();
  await flush();
  const chart = el.querySelector(".hw-chart[data-scalar='loss']");
  chart.querySelector("canvas").dispatchEvent(new window.MouseEvent("mousemove", { clientX: 150, clientY: 40 }));
  assert.match(chart.querySelector(".hw-chart-readout").textContent, /^step \d+ · loss [\d.e-]+$/);
  const ridge = el.querySelector(".hw-ridge");
  ridge.querySelector("canvas").dispatchEvent(new window.MouseEvent("mousemove", { clientX: 200, clientY: 120 }));
  assert.match(ridge.querySelector(".hw-chart-readout").textContent, /^steps? [\d–]+ · \[.+\): [\d.]+% of values/);
  cleanup();
});

test("cleanup removes every listener and the DOM it added", async () => {
  const { model, el, cleanup } = mount();
  await flush();
  cleanup();
  assert.equal(model.listenerCount(), 0);
  assert.equal(el.childElementCount, 0);
});

test("a static page's model shows the static state and hides the controls", async () => {
  const { el, cleanup } = mount({ __hw_static: true });
  await flush();
  assert.equal(el.querySelector(".hw-am-status").textContent, "static page");
  assert.equal(el.querySelector(".hw-am-pause").hidden, true);
  cleanup();
});

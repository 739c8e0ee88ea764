import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeModel, installDom, pack } from "./helpers.js";

installDom();
const { default: view } = await import("../attribution_explorer.js");

function state(progress = 1) {
  const gallery = pack({
    images: [new Float32Array(2 * 16).fill(0.5), [2, 1, 4, 4]],
    probs: [new Float32Array([0.7, 0.2, 0.1, 0.1, 0.1, 0.8]), [2, 3]],
    labels: [new Int32Array([0, 2]), [2]],
  });
  const results = pack({ "maps:saliency": [new Float32Array(2 * 16).map((_, i) => i - 10), [2, 4, 4]] });
  return {
    methods: ["saliency", "lrp", "grad_cam"], selected_methods: ["saliency", "lrp", "grad_cam"],
    method_labels: { saliency: { label: "Saliency" }, lrp: { label: "LRP" }, grad_cam: { label: "Grad-CAM", needs_layer: true } },
    target: "predicted", colormap: "auto", layer: "conv2", layers: ["conv1", "conv2"], opacity: 0.5, title: "t", status: "", progress,
    _gallery: { header: { index: gallery.index, n: 2, class_names: ["<b>zero</b>", "one", "two"] }, data: gallery.data },
    _results: {
      header: {
        index: results.index, target: "predicted", layer: "conv2", cells: [
          { method: "saliency", label: "Saliency", ready: true, error: null, array: "maps:saliency", ms: [1.5, 2],
            metrics: { deletion: [0.1, 0.2], insertion: [0.9, 0.8] } },
          { method: "lrp", label: "LRP", ready: true, error: "AttributionError: LRP failed: no rule", ms: [], metrics: {} },
          { method: "grad_cam", label: "Grad-CAM", ready: false },
        ],
      },
      data: results.data,
    },
  };
}

function mount(progress) {
  const model = new FakeModel(state(progress));
  const el = document.createElement("div");
  document.body.appendChild(el);
  return { model, el, cleanup: view.render({ model, el }) };
}

test("a grid of inputs and methods: maps with metrics, errors in their cells, pending cells waiting", () => {
  const { el, cleanup } = mount();
  const ready = el.querySelectorAll('.hw-ae-cell[data-method="saliency"][data-ready="true"]');
  assert.equal(ready.length, 2);
  assert.deepEqual([...ready[0].querySelectorAll(".hw-ae-metric")].map((e) => e.textContent),
    ["deletion AUC 0.1", "insertion AUC 0.9", "time 1.5 ms"]);
  const errs = el.querySelectorAll('.hw-ae-cell[data-method="lrp"][data-error="true"]');
  assert.equal(errs.length, 2);
  assert.match(errs[0].textContent, /LRP failed: no rule/);
  assert.equal(el.querySelectorAll('.hw-ae-cell[data-method="grad_cam"]')[0].textContent, "waiting…");
  assert.match(el.textContent, /true class <b>zero<\/b>predicted <b>zero<\/b>p = 0\.7/); // class names stay text
  assert.equal(el.querySelectorAll("b").length, 0);
  cleanup();
});

test("controls write the model: methods, target, layer; Cancel sends a message while busy", () => {
  const { model, el, cleanup } = mount(0.4);
  const box = el.querySelector('input[data-method="lrp"]');
  box.checked = false;
  box.dispatchEvent(new window.Event("change"));
  assert.deepEqual(model.get("selected_methods"), ["saliency", "grad_cam"]);
  const target = el.querySelector(".hw-ae-target");
  assert.deepEqual([...target.options].map((o) => o.value), ["predicted", "true", "top2", "top3", "0", "1", "2"]);
  const cmap = el.querySelector(".hw-ae-cmap");
  cmap.value = "heat";
  cmap.dispatchEvent(new window.Event("change"));
  assert.equal(model.get("colormap"), "heat");
  target.value = "true";
  target.dispatchEvent(new window.Event("change"));
  assert.equal(model.get("target"), "true");
  assert.equal(el.querySelector(".hw-ae-cancel").hidden, false);
  el.querySelector(".hw-ae-cancel").click();
  assert.deepEqual(model.sent, [{ type: "cancel" }]);
  cleanup();
  assert.equal(model.listenerCount(), 0);
});

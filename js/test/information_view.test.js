import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeModel, installDom, pack } from "./helpers.js";

const dom = installDom();
const { default: view, decodeState } = await import("../information_plane.js");

function state() {
  const layers = ["l1", "<img src=x>"];
  const { index, data } = pack({
    epochs: [new Int32Array([0, 9, 99]), [3]],
    points: [new Float32Array([1, 0.1, 0.5, 0.05, 3, 0.5, 2, 0.4, 2.5, 0.9, 1.5, 0.8]), [3, 2, 2]],
    grad_epochs: [new Int32Array([0, 1, 2, 3]), [4]],
    grad_mean: [new Float32Array([1, 2, 0.5, 0.1, 1, 1, 1, 1]), [2, 4]],
    grad_std: [new Float32Array([0.5, 0.5, 1, 1, 1, 1, 1, 1]), [2, 4]],
  });
  return {
    header: {
      index, layers, epoch: 99, scheduled: 5, estimator: "binned", label: "binning (Shwartz-Ziv & Tishby)",
      estimators: [{ name: "binned", label: "binning" }, { name: "kde_upper", label: "KDE upper" }],
      bounds: { I_XT: 12, I_TY: 1 }, transition: { l1: 2, "<img src=x>": null }, transition_epoch: 2,
    },
    data,
  };
}

function mount() {
  const model = new FakeModel({ _state: state(), estimator: "binned", n_bins: 30, title: "plane", status: "" });
  const el = document.createElement("div");
  document.body.appendChild(el);
  return { model, el, cleanup: view.render({ model, el }) };
}

test("decodes the state Python packs", () => {
  const d = decodeState(state());
  assert.equal(d.L, 2);
  assert.deepEqual([...d.epochs], [0, 9, 99]);
  assert.equal(d.points[(2 * 2 + 1) * 2 + 1], Math.fround(0.8)); // epoch index 2, layer 1, I(T;Y)
});

test("shows counters, the estimator menu and one gradient chart per layer", () => {
  const { el, cleanup } = mount();
  assert.equal(el.querySelector(".hw-am-counter").textContent, "epoch 99 · 3 of 5 recorded");
  assert.deepEqual([...el.querySelectorAll("option")].map((o) => o.textContent), ["binning", "KDE upper"]);
  assert.deepEqual([...el.querySelectorAll(".hw-chart")].map((c) => c.dataset.layer), ["l1", "<img src=x>"]);
  assert.equal(el.querySelectorAll("img").length, 0); // a layer name is text, never markup
  assert.match(el.querySelector(".hw-chart .hw-chart-value").textContent, /^SNR 0\.1$/);
  cleanup();
});

test("choosing an estimator or a bin count writes the model; bins hide for other estimators", () => {
  const { model, el, cleanup } = mount();
  const select = el.querySelector("select");
  select.value = "kde_upper";
  select.dispatchEvent(new window.Event("change"));
  assert.equal(model.get("estimator"), "kde_upper");
  assert.equal(el.querySelector(".hw-ip-bins").hidden, true);
  model.set("estimator", "binned");
  const bins = el.querySelector(".hw-ip-bins input");
  bins.value = "12";
  bins.dispatchEvent(new window.Event("change"));
  assert.equal(model.get("n_bins"), 12);
  assert.equal(model.saves, 2);
  cleanup();
});

test("hovering the plane names the nearest point; the transition is marked", () => {
  dom.calls.length = 0;
  const { el, cleanup } = mount();
  const canvas = el.querySelector(".hw-ip-canvas");
  // epoch 99 of layer l1 is at I(X;T) = 2.5 bits, I(T;Y) = 0.9 bits
  const w = parseFloat(canvas.style.width); const hgt = parseFloat(canvas.style.height);
  const x = 52 + (2.5 / 12) * (w - 52 - 90); const y = 12 + (1 - 0.9) * (hgt - 12 - 36);
  canvas.dispatchEvent(new window.MouseEvent("mousemove", { clientX: x, clientY: y }));
  assert.equal(el.querySelector(".hw-panel .hw-chart-readout").textContent,
    "l1 · epoch 99 · I(X;T) 2.5 bits · I(T;Y) 0.9 bits");
  assert.ok(dom.calls.some((c) => c[0] === "fillText" && c[1] === "drift → diffusion"));
  cleanup();
});

test("cleanup removes listeners and DOM", () => {
  const { model, el, cleanup } = mount();
  cleanup();
  assert.equal(model.listenerCount(), 0);
  assert.equal(el.childElementCount, 0);
});

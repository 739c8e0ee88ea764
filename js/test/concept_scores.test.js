import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeModel, installDom } from "./helpers.js";

installDom();
const { default: view } = await import("../concept_scores.js");

const RECORD = { concept: "loop", layer: "conv1", target: 0, epoch: 1, score: 0.8, score_std: 0.1, random_score: 0.5,
  random_std: 0.1, p_value: 0.01, significant: true, cav_accuracy: 0.9 };

function mount(state) {
  const model = new FakeModel({ title: "TCAV", description: "", class_names: [], records: [],
    activity: { state: "", text: "" }, ...state });
  const el = document.createElement("div");
  document.body.append(el);
  const cleanup = view.render({ model, el });
  return { model, el, cleanup, busy: () => el.querySelector(".hw-cs-activity") };
}

test("ConceptScores is busy while TCAV runs, after results arrived too, and says when it failed", () => {
  const { model, el, cleanup, busy } = mount({ records: [RECORD] });
  assert.equal(busy().hidden, true);
  model.set("activity", { state: "running", text: "computing TCAV for epoch 2: step 3 of 8 (concept loop in conv1)…" });
  assert.equal(busy().hidden, false);
  assert.equal(busy().textContent, "computing TCAV for epoch 2: step 3 of 8 (concept loop in conv1)…");
  assert.equal(el.querySelector(".hw-cs").dataset.busy, "true");
  model.set("activity", { state: "failed", text: "the TCAV computation for epoch 2 failed: ConceptError: <b>x</b>" });
  assert.equal(busy().dataset.state, "error");
  assert.equal(busy().textContent, "the TCAV computation for epoch 2 failed: ConceptError: <b>x</b>");  // text, not HTML
  assert.equal(busy().querySelector("b"), null);
  assert.equal(el.querySelector(".hw-cs").dataset.busy, "false");
  model.set("activity", { state: "", text: "" });
  assert.equal(busy().hidden, true);
  cleanup();
  assert.equal(model.listenerCount(), 0);
});

test("a static page never says it is computing", () => {
  const { busy, cleanup } = mount({ __hw_static: true, activity: { state: "running", text: "computing TCAV" } });
  assert.equal(busy().hidden, true);
  cleanup();
});

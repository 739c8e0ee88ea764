import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeModel, installDom, pack } from "./helpers.js";

const { window } = installDom();
const { default: view, OpQueue } = await import("../concept_annotator.js");

class MemoryStorage {
  constructor() { this.map = new Map(); }
  getItem(k) { return this.map.has(k) ? this.map.get(k) : null; }
  setItem(k, v) { this.map.set(k, String(v)); }
  removeItem(k) { this.map.delete(k); }
}

test("the queue keeps operations until settled, survives a reload and resends late ones", () => {
  const storage = new MemoryStorage();
  const q = new OpQueue("file-a", storage);
  q.push({ op_id: "1", kind: "create", name: "x", members: [1] });
  q.push({ op_id: "2", kind: "add", concept: "c", members: [2] });
  assert.deepEqual(q.due(1000).map((o) => o.op_id), ["1", "2"]);
  assert.deepEqual(q.due(1500), []); // sent 500 ms ago: not yet
  q.settle("1");
  const reloaded = new OpQueue("file-a", storage); // a page reload: what was not acknowledged is still there
  assert.deepEqual(reloaded.items.map((i) => i.op.op_id), ["2"]);
  assert.deepEqual(q.due(3100).map((o) => o.op_id), ["2"]); // resent after 2 s
  assert.deepEqual(q.due(6000), []); // then after 4 s, 8 s... : backing off
  assert.deepEqual(q.due(7200).map((o) => o.op_id), ["2"]);
  q.settle("2");
  assert.equal(storage.getItem("hiddenwidgets-concepts:file-a"), null);
  assert.equal(new OpQueue("file-b", storage).length, 0);
});

function state(snapshot) {
  const labels = pack({ label: [new Int32Array([0, 1, 0, 1]), [4]] });
  return {
    title: "Concepts", path: "/tmp/c.json", store_key: `k${Math.random()}`, n: 4, example_kind: "text", example_meta: {},
    label_field: { kind: "category", names: ["zero", "one"] }, _labels: { header: { index: labels.index }, data: labels.data },
    _selection: {}, snapshot,
  };
}

test("the view sends operations, shows them unsaved until acknowledged, and never renders names as HTML", () => {
  const snap = { revision: 3, can_undo: true, can_redo: false,
    concepts: [{ id: "c1", name: "<img src=x onerror=alert(1)>", color: "#e15759", members: [0, 2] }] };
  const model = new FakeModel(state(snap));
  const el = document.createElement("div");
  document.body.appendChild(el);
  const cleanup = view.render({ model, el });
  try {
  assert.equal(el.querySelector("img"), null);
  assert.ok(el.querySelector(".hw-ca-name").textContent.includes("<img src=x"));
  assert.match(el.querySelector(".hw-ca-status").textContent, /all changes saved · revision 3/);
  // nothing selected: adding is refused in the view with a message, nothing sent
  el.querySelector('[data-action="add"]').dispatchEvent(new window.MouseEvent("click"));
  assert.equal(model.sent.filter((m) => m.type === "ops").length, 0);
  assert.match(el.querySelector(".hw-ca-error").textContent, /nothing is selected/);
  // select two gallery items (example page arrives first), then add them to the concept
  model.emit("msg:custom", { type: "examples", page: 0, header: { texts: ["a", "b", "<b>c</b>", "d"] } }, []);
  const items = el.querySelectorAll(".hw-ca-item");
  assert.equal(items.length, 4);
  assert.equal(el.querySelector("b"), null);
  items[1].dispatchEvent(new window.MouseEvent("click", { bubbles: true }));
  items[3].dispatchEvent(new window.MouseEvent("click", { bubbles: true }));
  el.querySelector('[data-action="add"]').dispatchEvent(new window.MouseEvent("click"));
  const sent = model.sent.filter((m) => m.type === "ops");
  assert.equal(sent.length, 1);
  const op = sent[0].ops[0];
  assert.deepEqual([op.kind, op.concept, op.members], ["add", "c1", [1, 3]]);
  assert.match(el.querySelector(".hw-ca-status").textContent, /1 change not saved yet/);
  // Python acknowledges after writing; the new snapshot arrives
  model.emit("msg:custom", { type: "ack", op_id: op.op_id, revision: 4 });
  model.set("snapshot", { ...snap, revision: 4, concepts: [{ ...snap.concepts[0], members: [0, 1, 2, 3] }] });
  assert.match(el.querySelector(".hw-ca-status").textContent, /all changes saved · revision 4/);
  assert.match(el.querySelector(".hw-ca-concept .hw-ca-count").textContent, /4 \(2 selected\)/);
  // a refused change (duplicate name) is reported and dropped
  const input = el.querySelector(".hw-ca-new input");
  input.value = "<IMG src=x onerror=alert(1)>";
  el.querySelector(".hw-ca-new button").dispatchEvent(new window.MouseEvent("click"));
  const create = model.sent.filter((m) => m.type === "ops").at(-1).ops[0];
  assert.equal(create.kind, "create");
  model.emit("msg:custom", { type: "nack", op_id: create.op_id, error: "a concept named '<img src=x onerror=alert(1)>' exists" });
  assert.match(el.querySelector(".hw-ca-error").textContent, /exists/);
  assert.match(el.querySelector(".hw-ca-status").textContent, /all changes saved/);
  // keyboard: Ctrl+Z sends an undo
  el.querySelector(".hw-ca").dispatchEvent(new window.KeyboardEvent("keydown", { key: "z", ctrlKey: true, bubbles: true }));
  assert.equal(model.sent.filter((m) => m.type === "ops").at(-1).ops[0].kind, "undo");
  } finally {
    cleanup();
  }
  assert.equal(model.listenerCount(), 0);
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeModel, installDom } from "./helpers.js";

installDom();
const { default: lens } = await import("../logit_lens.js");
const { default: attention } = await import("../attention_view.js");
const { default: flow } = await import("../token_flow.js");
const { showToken } = await import("../lib/tokens.js");

const HOSTILE = ["<script>x</script>", "Ġthe", "&amp;", "<b>c</b>"];

function pack(arrays) {  // like transport.encode: float32 / uint8, each part 4-byte aligned
  const index = {}; const parts = []; let offset = 0;
  for (const [key, [arr, shape]] of Object.entries(arrays)) {
    index[key] = [arr instanceof Uint8Array ? "uint8" : "float32", offset, shape];
    const bytes = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
    const padded = new Uint8Array(Math.ceil(bytes.length / 4) * 4); padded.set(bytes);
    parts.push(padded); offset += padded.length;
  }
  const buf = new Uint8Array(offset); let at = 0;
  for (const p of parts) { buf.set(p, at); at += p.length; }
  return { index, data: new DataView(buf.buffer) };
}

const common = { title: "t", status: "", text: "", editable: true, steps: [], shown_step: -1, thinned: 0 };

test("showToken shows byte-level spaces and newlines", () => {
  assert.equal(showToken("Ġthe"), "␣the");
  assert.equal(showToken("aĊb"), "a⏎b");
});

test("LogitLens: hover readout is text, edits are debounced into one update, cleanup removes listeners", async () => {
  const L = 2; const T = 4; const k = 2;
  const f = (n) => new Float32Array(n).map((_, i) => i / n);
  const p = pack({ entropy: [f(L * T), [L, T]], cross_entropy: [f(L * T), [L, T]], kl_to_final: [f(L * T), [L, T]],
    top_probs: [f(L * T * k), [L, T, k]], top1_prob: [f(L * T), [L, T]] });
  const top = [0, 1].map(() => HOSTILE.map(() => ["<i>a</i>", "b"]));
  const model = new FakeModel({ ...common, statistic: "entropy", _state: { header: { index: p.index, layers: ["embeddings", "block 1"],
    tokens: HOSTILE, targets: ["Ġthe", "&amp;", "<b>c</b>", ""], top, target_kind: "next", lens: "logit", k, step: -1 }, data: p.data } });
  const el = document.createElement("div"); document.body.append(el);
  const cleanup = lens.render({ model, el });
  const canvas = el.querySelector("canvas.hw-tx-canvas");
  canvas.getBoundingClientRect = () => ({ left: 0, top: 0 });
  canvas.dispatchEvent(new window.MouseEvent("mousemove", { clientX: 78 + 5, clientY: 20 + 5 }));
  const readout = el.querySelector(".hw-tx-readout").textContent;
  assert.match(readout, /position 0 "<script>x<\/script>" → "␣the"/);
  assert.match(readout, /top 2: <i>a<\/i> /);
  assert.equal(el.querySelectorAll("script, b, i").length, 0);
  const input = el.querySelector("input.hw-tx-text");
  for (const text of ["a", "ab", "abc"]) { input.value = text; input.dispatchEvent(new window.Event("input")); }
  assert.equal(model.saves, 0);
  await new Promise((r) => setTimeout(r, 650));
  assert.equal(model.get("text"), "abc");
  assert.equal(model.saves, 1);
  cleanup();
  assert.equal(model.listenerCount(), 0);
  assert.equal(el.children.length, 0);
});

test("AttentionView: thumbnails per head, click selects a head, pattern hover names both tokens", () => {
  const L = 1; const H = 2; const s = 4; const n = HOSTILE.length;
  const p = pack({ entropy: [new Float32Array([0.5, 0.1]), [L, H]], previous: [new Float32Array(2), [L, H]],
    first: [new Float32Array(2), [L, H]], k90: [new Float32Array([2, 1]), [L, H]], thumbs: [new Uint8Array(L * H * s * s).fill(200), [L, H, s, s]] });
  const pat = new Float32Array(n * n); for (let q = 0; q < n; q++) pat[q * n] = 1;
  const pp = pack({ pattern: [pat, [n, n]], outside: [new Float32Array(n), [n]], profile: [new Float32Array(2 * n - 1), [2 * n - 1]] });
  const model = new FakeModel({ ...common, head: [0, 0], page: 0,
    _state: { header: { index: p.index, layers: ["block 1"], heads: H, tokens: HOSTILE, labels: [["broad", "focused"]], order: [[1, 0]],
      thumb: s, page_size: 128, step: -1, source: "" }, data: p.data },
    _pattern: { header: { index: pp.index, layer: 0, head: 0, q0: 0, k0: 0, pages: 1, page: 0, n, offset0: -(n - 1), step: -1 }, data: pp.data } });
  const el = document.createElement("div"); document.body.append(el);
  const cleanup = attention.render({ model, el });
  const thumbs = el.querySelectorAll(".hw-av-thumb");
  assert.equal(thumbs.length, 2);
  assert.match(thumbs[0].textContent, /^h1 0\.1/);  // sorted by entropy: head 1 first
  thumbs[0].click();
  assert.deepEqual(model.get("head"), [0, 1]);
  const canvas = el.querySelector("canvas.hw-tx-canvas");
  canvas.getBoundingClientRect = () => ({ left: 0, top: 0 });
  canvas.dispatchEvent(new window.MouseEvent("mousemove", { clientX: 72, clientY: 72 + 22 }));
  assert.match(el.querySelector(".hw-av .hw-tx-readout").textContent, /^"␣the" \(1\) attends to "<script>x<\/script>" \(0\): 1/);
  cleanup();
  assert.equal(model.listenerCount(), 0);
});

test("TokenFlow: one chip per token, as text", () => {
  const L = 2; const T = HOSTILE.length;
  const p = pack({ norm: [new Float32Array(L * T).fill(1), [L, T]], cos_in: [new Float32Array(L * T), [L, T]], cos_out: [new Float32Array(L * T), [L, T]] });
  const model = new FakeModel({ ...common, selected: [], _state: { header: { index: p.index, layers: ["embeddings", "block 1"], tokens: HOSTILE, step: -1 }, data: p.data } });
  const el = document.createElement("div"); document.body.append(el);
  const cleanup = flow.render({ model, el });
  assert.deepEqual([...el.querySelectorAll(".hw-chip")].map((c) => c.textContent), HOSTILE.map((t, i) => `${i} ${showToken(t)}`));
  cleanup();
  assert.equal(model.listenerCount(), 0);
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeArrays, base64ToBytes } from "../lib/codec.js";

function packed(pad) {
  const f = new Float32Array([1.5, -2, Number.NaN]);
  const i = new Int32Array([7, -8]);
  const buf = new ArrayBuffer(pad + 20);
  new Uint8Array(buf, pad).set(new Uint8Array(f.buffer));
  new Uint8Array(buf, pad + 12).set(new Uint8Array(i.buffer));
  return new DataView(buf, pad, 20);
}
const index = { f: ["float32", 0, [3]], i: ["int32", 12, [2, 1]] };

test("decodes float32 and int32 arrays at their offsets", () => {
  const out = decodeArrays(index, packed(0));
  assert.deepEqual([...out.f].slice(0, 2), [1.5, -2]);
  assert.ok(Number.isNaN(out.f[2]));
  assert.deepEqual([...out.i], [7, -8]);
});

test("copies when the DataView is not 4-byte aligned (anywidget hands over views into larger messages)", () => {
  const out = decodeArrays(index, packed(3));
  assert.deepEqual([...out.i], [7, -8]);
  assert.equal(out.f[0], 1.5);
});

test("rejects unknown dtypes and arrays that overrun the buffer", () => {
  assert.throws(() => decodeArrays({ x: ["float64", 0, [1]] }, packed(0)), /unsupported dtype float64/);
  assert.throws(() => decodeArrays({ x: ["float32", 16, [2]] }, packed(0)), /overruns/);
});

test("base64ToBytes round-trips", () => {
  assert.deepEqual([...base64ToBytes(Buffer.from([0, 255, 7]).toString("base64"))], [0, 255, 7]);
});

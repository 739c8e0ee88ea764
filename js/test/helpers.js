// Shared test helpers: the Python-made frames fixture, a fake anywidget model, a DOM with a recording canvas.
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";

export const fixture = JSON.parse(readFileSync(new URL("./fixtures/frames.json", import.meta.url), "utf8"));

/** base64 -> DataView over a buffer with `pad` leading bytes (to test unaligned offsets). */
export function dataView(b64, pad = 0) {
  const bin = Buffer.from(b64, "base64");
  const buf = new ArrayBuffer(bin.length + pad);
  new Uint8Array(buf, pad).set(bin);
  return new DataView(buf, pad, bin.length);
}

export class FakeModel {
  constructor(state) {
    this.state = { ...state };
    this.listeners = new Map();
    this.sent = [];
    this.buffers = [];
    this.saves = 0;
  }
  get(k) { return this.state[k]; }
  set(k, v) { this.state[k] = v; this.emit(`change:${k}`); }
  save_changes() { this.saves += 1; }
  // anywidget's model.send(content, callbacks, buffers): record the buffers where the kernel would find them
  send(msg, callbacks, buffers) { this.sent.push(msg); this.buffers.push(buffers || []); }
  on(ev, cb) { if (!this.listeners.has(ev)) this.listeners.set(ev, new Set()); this.listeners.get(ev).add(cb); }
  off(ev, cb) { this.listeners.get(ev)?.delete(cb); }
  emit(ev, ...args) { for (const cb of this.listeners.get(ev) || []) cb(...args); }
  listenerCount() { let n = 0; for (const s of this.listeners.values()) n += s.size; return n; }
}

/** Install a jsdom window as the global DOM, with a 2-D context that records calls. */
export function installDom() {
  const dom = new JSDOM("<!doctype html><html><body></body></html>", { pretendToBeVisual: true });
  const { window } = dom;
  const calls = [];
  const ctx = new Proxy({}, {
    get(target, prop) {
      if (prop in target) return target[prop];
      if (prop === "measureText") return (text) => ({ width: String(text).length * 6 });
      if (prop === "putImageData" || prop === "drawImage" || prop === "fillText" || prop === "stroke" || prop === "fill"
        || typeof prop === "string") {
        return (...args) => { calls.push([prop, ...args]); };
      }
      return undefined;
    },
    set(target, prop, value) { target[prop] = value; return true; },
  });
  window.HTMLCanvasElement.prototype.getContext = function () { return ctx; };
  class ImageDataStub { constructor(w, h) { this.width = w; this.height = h; this.data = new Uint8ClampedArray(w * h * 4); } }
  for (const key of ["document", "HTMLElement", "HTMLCanvasElement", "getComputedStyle", "requestAnimationFrame",
    "cancelAnimationFrame"]) {
    globalThis[key] = window[key];
  }
  globalThis.window = window;
  globalThis.ImageData = ImageDataStub;
  return { window, calls, close: () => window.close() };
}

/** Pack typed arrays like hiddenwidgets.transport.encode: one buffer, index[key] = [dtype, offset, shape]. */
export function pack(arrays) {
  const index = {};
  let offset = 0;
  const parts = [];
  for (const [key, [arr, shape]] of Object.entries(arrays)) {
    index[key] = [arr instanceof Int32Array ? "int32" : "float32", offset, shape];
    parts.push(arr);
    offset += arr.byteLength;
  }
  const buf = new Uint8Array(offset);
  let at = 0;
  for (const p of parts) { buf.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), at); at += p.byteLength; }
  return { index, data: new DataView(buf.buffer) };
}

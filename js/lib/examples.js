// @ts-check
// Examples (image thumbnails, texts, table rows) that a view shows on demand: fetched from the kernel in pages of
// 256 (hiddenwidgets/widgets/projector.py: Examples), or read from a static page's `_static.pages`.
import { decodeArrays } from "./codec.js";
import { drawPixels, setupCanvas } from "./chart.js";

export const PAGE = 256;

function decodePage(header, data) {
  if (header.texts) return { texts: header.texts };
  return data && header.index && Object.keys(header.index).length ? decodeArrays(header.index, data) : {};
}

export class ExamplePages {
  /** @param {any} model @param {boolean} isStatic */
  constructor(model, isStatic) {
    this.model = model;
    this.isStatic = isStatic;
    this.pages = new Map();
    this.pending = new Set();
  }
  /** The page holding example `i`, or null while it is being fetched (asks the kernel once). */
  get(i) {
    const number = Math.floor(i / PAGE);
    if (this.pages.has(number)) return this.pages.get(number);
    const s = ((this.model.get("_static") || {}).pages || {})[String(number)];
    if (s) { this.pages.set(number, decodePage(s.header, s.data)); return this.pages.get(number); }
    if (!this.isStatic && !this.pending.has(number) && this.model.get("example_kind") !== "none") {
      this.pending.add(number);
      this.model.send({ type: "examples", page: number });
    }
    return null;
  }
  /** Take an {type: "examples"} reply; returns whether it was one. */
  receive(msg, buffers) {
    if (!msg || msg.type !== "examples") return false;
    this.pending.delete(msg.page);
    this.pages.set(msg.page, decodePage(msg.header || {}, buffers && buffers[0]));
    return true;
  }
}

/** A canvas showing one uint8 thumbnail (H x W x C, C = 1 or 3), scaled to `size` CSS pixels on its long side. */
export function thumbCanvas(pixels, shape, size) {
  const [hh, ww, c] = shape;
  const canvas = document.createElement("canvas");
  const scale = size / Math.max(hh, ww);
  const ctx = setupCanvas(canvas, Math.round(ww * scale), Math.round(hh * scale));
  if (!ctx || typeof ImageData === "undefined") return canvas;
  const img = new ImageData(ww, hh);
  for (let p = 0; p < hh * ww; p++) {
    const r = pixels[p * c]; const g = c === 3 ? pixels[p * c + 1] : r; const b = c === 3 ? pixels[p * c + 2] : r;
    img.data[p * 4] = r; img.data[p * 4 + 1] = g; img.data[p * 4 + 2] = b; img.data[p * 4 + 3] = 255;
  }
  drawPixels(ctx, img, Math.round(ww * scale), Math.round(hh * scale));
  return canvas;
}

/** The image of example `i` from its page. */
export function imageOf(page, i, shape) {
  const len = shape[0] * shape[1] * shape[2];
  const j = i % PAGE;
  return page.images.subarray(j * len, (j + 1) * len);
}

// @ts-check
// Images that views redraw in place (live optimisation frames, data set examples with a box around a unit's
// receptive field), a histogram with marked values, and a meter of frames per second. Pixels arrive as uint8
// (H, W, C) arrays, C = 1 or 3 (hiddenwidgets/transport.py: encode); nothing here reads user text.
import { drawPixels, fmt, setupCanvas, theme } from "./chart.js";

/**
 * The `i`-th image of a (B, H, W, C) uint8 array and its shape [H, W, C].
 * @param {Uint8Array} pixels @param {number[]} shape the array's shape (B, H, W, C) @param {number} i
 * @returns {[Uint8Array, number[]]}
 */
export function nth(pixels, shape, i) {
  const rest = shape.slice(1);
  const len = rest.reduce((a, b) => a * b, 1);
  return [pixels.subarray(i * len, (i + 1) * len), rest];
}

/** An ImageData (or null without a canvas) from uint8 pixels (H, W, C), C 1 (grey) or 3. */
export function imageData(pixels, shape) {
  const [hh, ww, c] = shape;
  if (typeof ImageData === "undefined") return null;
  const img = new ImageData(ww, hh);
  for (let p = 0; p < hh * ww; p++) {
    const r = pixels[p * c];
    img.data[p * 4] = r;
    img.data[p * 4 + 1] = c === 3 ? pixels[p * c + 1] : r;
    img.data[p * 4 + 2] = c === 3 ? pixels[p * c + 2] : r;
    img.data[p * 4 + 3] = 255;
  }
  return img;
}

/**
 * Draw uint8 pixels (H, W, C) into `canvas`, `size` CSS pixels on the long side, pixels kept sharp; `box`
 * [y0, x0, y1, x1] (in the pixels of an image `full` = [H0, W0] the pixels were reduced from) is outlined.
 * @param {HTMLCanvasElement} canvas @param {Uint8Array} pixels @param {number[]} shape @param {number} size
 * @param {number[] | null} [box] @param {number[] | null} [full]
 */
export function drawImage(canvas, pixels, shape, size, box = null, full = null) {
  const [hh, ww] = shape;
  const scale = size / Math.max(hh, ww);
  const w = Math.round(ww * scale);
  const ht = Math.round(hh * scale);
  if (canvas.width === 0 || canvas.dataset.size !== `${w}x${ht}`) {
    setupCanvas(canvas, w, ht);
    canvas.dataset.size = `${w}x${ht}`;
  }
  const ctx = canvas.getContext("2d");
  const img = imageData(pixels, shape);
  if (!ctx || !img) return;
  const dpr = canvas.width / w || 1;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  drawPixels(ctx, img, w, ht);
  if (box) {
    const [fh, fw] = full || [hh, ww];
    const sy = ht / fh;
    const sx = w / fw;
    ctx.strokeStyle = "#ffd43b";
    ctx.lineWidth = 1.5;
    ctx.strokeRect(box[1] * sx + 0.75, box[0] * sy + 0.75, (box[3] - box[1]) * sx - 1.5, (box[2] - box[0]) * sy - 1.5);
  }
}

/**
 * A histogram of `counts` over bins with `edges` (counts.length + 1), with vertical marks at values (e.g. the
 * optimised image's objective). Marks outside the range are drawn at the edge with an arrow.
 * @param {HTMLCanvasElement} canvas @param {ArrayLike<number>} counts @param {ArrayLike<number>} edges
 * @param {{value: number, label: string, color: string}[]} marks @param {number} width @param {number} height
 */
export function drawHistogram(canvas, counts, edges, marks, width, height) {
  const ctx = setupCanvas(canvas, width, height);
  if (!ctx) return;
  const t = theme(canvas);
  const pad = { left: 34, right: 8, top: 16, bottom: 18 };
  const pw = width - pad.left - pad.right;
  const ph = height - pad.top - pad.bottom;
  const n = counts.length;
  const lo0 = edges[0];
  const hi0 = edges[n];
  const lo = Math.min(lo0, ...marks.map((m) => m.value).filter(Number.isFinite));
  const hi = Math.max(hi0, ...marks.map((m) => m.value).filter(Number.isFinite));
  const span = hi > lo ? hi - lo : 1;
  const x = (v) => pad.left + ((v - lo) / span) * pw;
  let top = 0;
  for (let i = 0; i < n; i++) top = Math.max(top, counts[i]);
  top = top || 1;
  ctx.font = t.font;
  ctx.fillStyle = t.dark ? "#6f8fcf" : "#8da4d8";
  for (let i = 0; i < n; i++) {
    const x0 = x(edges[i]);
    const x1 = x(edges[i + 1]);
    const bh = (counts[i] / top) * ph;
    ctx.fillRect(x0, pad.top + ph - bh, Math.max(1, x1 - x0 - 0.5), bh);
  }
  ctx.fillStyle = t.grid;
  ctx.fillRect(pad.left, pad.top + ph, pw, 1);
  ctx.fillStyle = t.muted;
  ctx.textAlign = "right";
  ctx.fillText(String(top), pad.left - 4, pad.top + 8);
  ctx.fillText("0", pad.left - 4, pad.top + ph);
  ctx.textAlign = "left";
  ctx.fillText(fmt(lo), pad.left, height - 4);
  ctx.textAlign = "right";
  ctx.fillText(fmt(hi), width - pad.right, height - 4);
  marks.forEach((m, j) => {
    if (!Number.isFinite(m.value)) return;
    const mx = x(m.value);
    ctx.fillStyle = m.color;
    ctx.fillRect(mx - 1, pad.top - 2, 2, ph + 2);
    ctx.fillStyle = t.text; // the label in the text colour (legible in any theme), the mark in its own
    ctx.textAlign = mx > pad.left + pw / 2 ? "right" : "left";
    ctx.fillText(m.label, mx + (ctx.textAlign === "right" ? -4 : 4), pad.top + 8 + 12 * j);
  });
}

/** Frames per second over the last `window` ms, and the arrival times themselves (for tests and benchmarks). */
export class FrameMeter {
  constructor(window = 2000) {
    this.window = window;
    /** @type {number[]} */
    this.times = [];
    this.count = 0;
  }
  add(now = performance.now()) {
    this.count += 1;
    this.times.push(now);
    if (this.times.length > 600) this.times.splice(0, this.times.length - 600);
  }
  rate(now = performance.now()) {
    const recent = this.times.filter((t) => now - t <= this.window);
    if (recent.length < 2) return 0;
    return (recent.length - 1) / Math.max((recent[recent.length - 1] - recent[0]) / 1000, 1e-3);
  }
}

// @ts-check
// A scatter plot of many points on a 2-D canvas without WebGL: points are rasterised straight into one
// ImageData (a Uint32Array view) and put on the canvas in one call, which draws 50,000 points in a few
// milliseconds even where Chromium has no GPU. A uniform grid over the data finds the point under the pointer;
// lasso and box selection test every point once.

import { CATEGORICAL } from "./palette.js";

/** Category colours: the colour-blind-safe palette of lib/palette.js (index i % length; shapes tell repeats apart). */
export const PALETTE = CATEGORICAL;

/** @param {string} hex @returns {[number, number, number]} */
export function hexRgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

/** Pack r, g, b (0-255) into one little-endian RGBA pixel (alpha 255). */
export function pack(r, g, b) {
  return ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

/**
 * Mix a packed pixel with `to` (packed; white by default): t = 0 keeps it, t = 1 gives `to` (for points outside
 * the selection, faded towards the page's background).
 */
export function fade(pixel, t, to = 0xffffffff) {
  const r = pixel & 255; const g = (pixel >> 8) & 255; const b = (pixel >> 16) & 255;
  const r1 = to & 255; const g1 = (to >> 8) & 255; const b1 = (to >> 16) & 255;
  return pack(Math.round(r + (r1 - r) * t), Math.round(g + (g1 - g) * t), Math.round(b + (b1 - b) * t));
}

/** Pixel masks of the marker shapes (lib/palette.js SHAPES order: square, ring, cross, diamond) for a size. */
function shapeMask(shape, size) {
  const m = new Uint8Array(size * size);
  const c = (size - 1) / 2;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const dx = Math.abs(x - c); const dy = Math.abs(y - c);
      const edge = x === 0 || y === 0 || x === size - 1 || y === size - 1;
      m[y * size + x] = shape === 1 ? +edge : shape === 2 ? +(Math.abs(dx - dy) < 0.75) : shape === 3 ? +(dx + dy <= c + 0.25) : 1;
    }
  }
  return m;
}

/** Bounds of interleaved xy: [xmin, xmax, ymin, ymax] (non-finite points ignored; a unit box when empty). */
export function bounds(xy) {
  let x0 = Infinity; let x1 = -Infinity; let y0 = Infinity; let y1 = -Infinity;
  for (let i = 0; i < xy.length; i += 2) {
    const x = xy[i]; const y = xy[i + 1];
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
  }
  if (x0 > x1) return [0, 1, 0, 1];
  if (x0 === x1) { x0 -= 0.5; x1 += 0.5; }
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  return [x0, x1, y0, y1];
}

/**
 * Data <-> screen (CSS pixels) mapping: a uniform scale about a centre, y pointing up.
 */
export class View {
  /** @param {number} width @param {number} height */
  constructor(width, height) {
    this.width = width;
    this.height = height;
    this.cx = 0.5; this.cy = 0.5; this.scale = 1;
  }
  /** Fit the data bounds with a margin. @param {number[]} b */
  fit(b, margin = 14) {
    this.cx = (b[0] + b[1]) / 2;
    this.cy = (b[2] + b[3]) / 2;
    this.scale = Math.min((this.width - 2 * margin) / (b[1] - b[0]), (this.height - 2 * margin) / (b[3] - b[2]));
  }
  sx(x) { return (x - this.cx) * this.scale + this.width / 2; }
  sy(y) { return this.height / 2 - (y - this.cy) * this.scale; }
  dx(px) { return (px - this.width / 2) / this.scale + this.cx; }
  dy(py) { return (this.height / 2 - py) / this.scale + this.cy; }
  /** Zoom by `factor` keeping the data point under (px, py) in place. */
  zoom(factor, px, py) {
    const x = this.dx(px); const y = this.dy(py);
    this.scale *= factor;
    this.cx = x - (px - this.width / 2) / this.scale;
    this.cy = y + (py - this.height / 2) / this.scale;
  }
  /** Move the picture by (ddx, ddy) screen pixels. */
  pan(ddx, ddy) {
    this.cx -= ddx / this.scale;
    this.cy += ddy / this.scale;
  }
}

/**
 * Rasterise points into `pixels` (a Uint32Array over an ImageData of w x h device pixels).
 * @param {Uint32Array} pixels @param {number} w @param {number} h @param {number} dpr
 * @param {Float32Array} xy interleaved data coordinates
 * @param {Uint32Array} colours packed colour per point
 * @param {View} view
 * @param {{ size?: number, background?: number, selected?: Uint8Array | null, fadeTo?: number,
 *   shapes?: Uint8Array | null }} [opts]
 *   selected: 1 for points in the selection; when given, the others are faded (towards the background) and drawn
 *   first; shapes: a marker shape per point (0 square, 1 ring, 2 cross, 3 diamond)
 */
export function rasterise(pixels, w, h, dpr, xy, colours, view, opts = {}) {
  const size = Math.max(1, Math.round((opts.size || 3) * dpr));
  const half = size >> 1;
  pixels.fill(opts.background ?? 0xffffffff);
  const n = xy.length >> 1;
  const sel = opts.selected || null;
  const fadeT = opts.fadeTo ?? 0.7;
  const bg = opts.background ?? 0xffffffff;
  const shapes = opts.shapes || null;
  const masks = shapes ? [0, 1, 2, 3].map((k) => shapeMask(k, size)) : null;
  const ax = view.scale * dpr;
  const bx = (view.width / 2 - view.cx * view.scale) * dpr;
  const by = (view.height / 2 + view.cy * view.scale) * dpr;
  let drawn = 0;
  const pass = (/** @type {number} */ want) => {
    for (let i = 0; i < n; i++) {
      if (sel && sel[i] !== want) continue;
      const x = xy[2 * i]; const y = xy[2 * i + 1];
      const px = Math.round(x * ax + bx) - half;
      const py = Math.round(by - y * ax) - half;
      if (px >= w || py >= h || px + size <= 0 || py + size <= 0 || px !== px || py !== py) continue;
      const c = sel && !want ? fade(colours[i], fadeT, bg) : colours[i];
      const x0 = px < 0 ? 0 : px; const x1 = px + size > w ? w : px + size;
      const y0 = py < 0 ? 0 : py; const y1 = py + size > h ? h : py + size;
      const mask = masks && shapes[i] ? masks[shapes[i] & 3] : null;
      for (let yy = y0; yy < y1; yy++) {
        const row = yy * w;
        if (mask) {
          const mrow = (yy - py) * size - px;
          for (let xx = x0; xx < x1; xx++) if (mask[mrow + xx]) pixels[row + xx] = c;
        } else {
          for (let xx = x0; xx < x1; xx++) pixels[row + xx] = c;
        }
      }
      drawn++;
    }
  };
  if (sel) { pass(0); pass(1); } else pass(-1);
  return drawn;
}

/** A uniform grid over the data for "which point is under the pointer". */
export class PointGrid {
  /** @param {Float32Array} xy @param {number} [cells] cells per side */
  constructor(xy, cells = 128) {
    const b = bounds(xy);
    this.b = b;
    this.cells = cells;
    const n = xy.length >> 1;
    const cellOf = new Int32Array(n);
    const counts = new Int32Array(cells * cells + 1);
    for (let i = 0; i < n; i++) {
      const c = this.cell(xy[2 * i], xy[2 * i + 1]);
      cellOf[i] = c;
      if (c >= 0) counts[c + 1]++;
    }
    for (let c = 0; c < cells * cells; c++) counts[c + 1] += counts[c];
    this.start = counts;
    this.items = new Int32Array(counts[cells * cells]);
    const fill = counts.slice(0, cells * cells);
    for (let i = 0; i < n; i++) if (cellOf[i] >= 0) this.items[fill[cellOf[i]]++] = i;
    this.xy = xy;
  }
  col(x) { return Math.min(this.cells - 1, Math.max(0, Math.floor(((x - this.b[0]) / (this.b[1] - this.b[0])) * this.cells))); }
  row(y) { return Math.min(this.cells - 1, Math.max(0, Math.floor(((y - this.b[2]) / (this.b[3] - this.b[2])) * this.cells))); }
  cell(x, y) {
    if (!Number.isFinite(x) || !Number.isFinite(y)) return -1;
    return this.row(y) * this.cells + this.col(x);
  }
  /** Index of the nearest point within `radius` (data units) of (x, y), or -1. */
  nearest(x, y, radius) {
    const c0 = this.col(x - radius); const c1 = this.col(x + radius);
    const r0 = this.row(y - radius); const r1 = this.row(y + radius);
    let best = -1; let bestD = radius * radius;
    for (let r = r0; r <= r1; r++) {
      for (let c = c0; c <= c1; c++) {
        const cell = r * this.cells + c;
        for (let k = this.start[cell]; k < this.start[cell + 1]; k++) {
          const i = this.items[k];
          const ddx = this.xy[2 * i] - x; const ddy = this.xy[2 * i + 1] - y;
          const d = ddx * ddx + ddy * ddy;
          if (d <= bestD) { bestD = d; best = i; }
        }
      }
    }
    return best;
  }
}

/** Whether (x, y) is inside the polygon (flat [x0, y0, x1, y1, ...]); even-odd rule. */
export function inside(poly, x, y) {
  let inPoly = false;
  const m = poly.length >> 1;
  for (let i = 0, j = m - 1; i < m; j = i++) {
    const xi = poly[2 * i]; const yi = poly[2 * i + 1];
    const xj = poly[2 * j]; const yj = poly[2 * j + 1];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inPoly = !inPoly;
  }
  return inPoly;
}

/**
 * Indices of the points whose screen position falls inside a lasso polygon (screen pixels).
 * @param {Float32Array} xy @param {View} view @param {number[]} poly
 */
export function lassoSelect(xy, view, poly) {
  if (poly.length < 6) return new Int32Array(0);
  let x0 = Infinity; let x1 = -Infinity; let y0 = Infinity; let y1 = -Infinity;
  for (let i = 0; i < poly.length; i += 2) {
    x0 = Math.min(x0, poly[i]); x1 = Math.max(x1, poly[i]);
    y0 = Math.min(y0, poly[i + 1]); y1 = Math.max(y1, poly[i + 1]);
  }
  const out = [];
  for (let i = 0; i < xy.length >> 1; i++) {
    const sx = view.sx(xy[2 * i]); const sy = view.sy(xy[2 * i + 1]);
    if (sx < x0 || sx > x1 || sy < y0 || sy > y1) continue;
    if (inside(poly, sx, sy)) out.push(i);
  }
  return Int32Array.from(out);
}

/** Indices of the points inside a screen rectangle with corners (ax, ay), (bx, by). */
export function boxSelect(xy, view, ax, ay, bx, by) {
  const x0 = Math.min(ax, bx); const x1 = Math.max(ax, bx);
  const y0 = Math.min(ay, by); const y1 = Math.max(ay, by);
  const out = [];
  for (let i = 0; i < xy.length >> 1; i++) {
    const sx = view.sx(xy[2 * i]); const sy = view.sy(xy[2 * i + 1]);
    if (sx >= x0 && sx <= x1 && sy >= y0 && sy <= y1) out.push(i);
  }
  return Int32Array.from(out);
}

/** Combine a new selection with the current one: "replace", "add" (shift) or "remove" (alt). */
export function combine(current, picked, mode) {
  if (mode === "replace") return Int32Array.from(picked).sort();
  const set = new Set(current);
  for (const i of picked) { if (mode === "add") set.add(i); else set.delete(i); }
  return Int32Array.from(set).sort();
}

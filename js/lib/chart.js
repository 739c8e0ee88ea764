// @ts-check
// Small canvas charts shared by the views: line charts with bands and direct labels, a ridgeline of
// histograms over time, and image grids / heatmaps. Text that names user things (layers, scalars) goes into
// the DOM with textContent; the canvas only draws numbers.
import { color, lut } from "./colormap.js";

/** @param {string} tag @param {string} [cls] @param {string} [text] */
export function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Size a canvas for the device pixel ratio; returns its 2-D context (null where canvas is unavailable). */
export function setupCanvas(canvas, width, height) {
  const dpr = (typeof window !== "undefined" && window.devicePixelRatio) || 1;
  canvas.width = Math.max(1, Math.round(width * dpr));
  canvas.height = Math.max(1, Math.round(height * dpr));
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  if (ctx) ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

/** Compact number: 3 significant digits, exponent for very small or large magnitudes. */
export function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2).replace("e+", "e");
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(3)));
}

/** @param {number} v */
export function pct(v) { return Number.isFinite(v) ? `${(100 * v).toFixed(v < 0.1 ? 1 : 0)}%` : "–"; }

/** Integer powers of ten (as exponents) within [lo, hi] of a log10 axis; at least the two ends. */
export function powerTicks(lo, hi) {
  const ticks = [];
  for (let k = Math.ceil(lo); k <= Math.floor(hi); k++) ticks.push(k);
  return ticks.length >= 2 ? ticks : niceTicks(lo, hi, 3);
}

/** Around `count` round tick values covering [lo, hi]. */
export function niceTicks(lo, hi, count = 4) {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi === lo) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  return ticks;
}

/** Colours that follow the JupyterLab theme where there is one. */
export function theme(el) {
  const cs = typeof getComputedStyle === "function" ? getComputedStyle(el) : null;
  const v = (name, fallback) => (cs && cs.getPropertyValue(name).trim()) || fallback;
  return {
    text: v("--jp-ui-font-color1", "#1f2328"),
    muted: v("--jp-ui-font-color2", "#656d76"),
    grid: v("--jp-border-color2", "#e3e6ea"),
    bg: v("--jp-layout-color0", "#ffffff"),
    accent: "#3b6fd8",
    warn: "#c2410c",
    font: "11px system-ui, -apple-system, 'Segoe UI', sans-serif",
  };
}

const PAD = { left: 46, right: 64, top: 6, bottom: 18 };

/**
 * A line chart over steps. Lines carry their own label, drawn at the line's end (no legend to hunt for);
 * optional bands (lo/hi arrays) are shaded; hovering shows the nearest point's numbers.
 */
export class LineChart {
  /** @param {string} title @param {{height?: number, readout?: (i: number) => string}} [opts] */
  constructor(title, opts = {}) {
    this.el = h("div", "hw-chart");
    const head = h("div", "hw-chart-head");
    this.titleEl = h("span", "hw-chart-title", title);
    this.valueEl = h("span", "hw-chart-value");
    head.append(this.titleEl, this.valueEl);
    this.canvas = /** @type {HTMLCanvasElement} */ (h("canvas"));
    this.readoutEl = h("div", "hw-chart-readout");
    this.el.append(head, this.canvas, this.readoutEl);
    this.height = opts.height || 110;
    this.width = 280;
    this.data = null;
    this.hover = -1;
    this.readout = opts.readout;
    this.dispose = trackHover(this.canvas, (x) => {
      if (!this.data || !this.data.xs.length) return;
      this.hover = nearestIndex(this.data.xs, this.xInv(x));
      this.draw();
    }, () => { this.hover = -1; this.draw(); });
  }

  /**
   * @param {{xs: ArrayLike<number>, lines: {ys: ArrayLike<number>, label: string, color: string, dash?: number[],
   *   lo?: ArrayLike<number>, hi?: ArrayLike<number>}[], value?: string, yMin?: number, yMax?: number,
   *   logX?: boolean, logY?: boolean, marks?: {x: number, label: string}[], xLabels?: string[]}} data
   */
  update(data, width) {
    this.data = data;
    if (width) this.width = width;
    this.valueEl.textContent = data.value || "";
    this.draw();
  }

  xInv(px) {
    const { x0, x1, logX } = this.scale;
    const pad = this.pad || PAD;
    const w = this.width - pad.left - pad.right;
    const v = x0 + ((px - pad.left) / w) * (x1 - x0 || 1);
    return logX ? 10 ** v : v;
  }

  draw() {
    const ctx = setupCanvas(this.canvas, this.width, this.height);
    const d = this.data;
    if (!ctx || !d) return;
    const t = theme(this.el);
    const n = d.xs.length;
    ctx.font = t.font;
    const labelW = Math.max(24, ...d.lines.map((line) => ctx.measureText(line.label).width || 0));
    const pad = { ...PAD, right: Math.min(labelW + 10, this.width / 3) };
    this.pad = pad;
    const w = this.width - pad.left - pad.right;
    const hgt = this.height - PAD.top - PAD.bottom;
    const fx = d.logX ? (v) => (v > 0 ? Math.log10(v) : NaN) : (v) => v;
    const fy = d.logY ? (v) => (v > 0 ? Math.log10(v) : NaN) : (v) => v;
    let y0 = Infinity;
    let y1 = -Infinity;
    for (const line of d.lines) {
      for (const arr of [line.ys, line.lo, line.hi]) {
        if (!arr) continue;
        for (let i = 0; i < n; i++) {
          const v = fy(arr[i]);
          if (Number.isFinite(v)) { if (v < y0) y0 = v; if (v > y1) y1 = v; }
        }
      }
    }
    if (d.yMin !== undefined) y0 = Math.min(y0, d.yMin);
    if (d.yMax !== undefined) y1 = Math.max(y1, d.yMax);
    if (!Number.isFinite(y0)) { y0 = 0; y1 = 1; }
    if (y1 === y0) { y1 += Math.abs(y0) * 0.1 || 1; y0 -= Math.abs(y0) * 0.1 || 0; }
    let x0 = n ? fx(d.xs[0]) : 0;
    const x1 = n ? fx(d.xs[n - 1]) : 1;
    if (!Number.isFinite(x0)) x0 = n > 1 ? fx(d.xs[1]) - 0.3 : 0; // log axis starting at 0: start a bit left
    this.scale = { x0, x1, logX: !!d.logX };
    const X = (v) => pad.left + ((fx(v) - x0) / (x1 - x0 || 1)) * w;
    const Y = (v) => pad.top + (1 - (fy(v) - y0) / (y1 - y0)) * hgt;
    const tickLabel = (log) => (log ? (t) => fmt(10 ** t) : fmt);
    ctx.font = t.font;
    ctx.strokeStyle = t.grid;
    ctx.fillStyle = t.muted;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const yTicks = d.logY ? powerTicks(y0, y1) : niceTicks(y0, y1, 3);
    for (const tick of yTicks) {
      const y = Math.round(pad.top + (1 - (tick - y0) / (y1 - y0)) * hgt) + 0.5;
      ctx.beginPath(); ctx.moveTo(pad.left, y); ctx.lineTo(pad.left + w, y); ctx.stroke();
      ctx.fillText(tickLabel(d.logY)(tick), pad.left - 4, y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    if (d.xLabels) { // categorical axis (e.g. layers): one tick per x, labelled with its name, thinned to fit
      const every = Math.max(1, Math.ceil((d.xLabels.length * 48) / w));
      d.xLabels.forEach((label, i) => {
        if (i % every === 0) ctx.fillText(label, X(d.xs[i]), pad.top + hgt + 4);
      });
    } else {
      for (const tick of d.logX ? powerTicks(x0, x1) : niceTicks(x0, x1, 4)) {
        if (tick < x0 || tick > x1) continue;
        ctx.fillText(tickLabel(d.logX)(tick), pad.left + ((tick - x0) / (x1 - x0 || 1)) * w, pad.top + hgt + 4);
      }
    }
    for (const mark of d.marks || []) {
      const x = Math.round(X(mark.x)) + 0.5;
      if (!Number.isFinite(x)) continue;
      ctx.strokeStyle = t.warn;
      ctx.setLineDash([4, 3]);
      ctx.beginPath(); ctx.moveTo(x, pad.top); ctx.lineTo(x, pad.top + hgt); ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = t.warn;
      ctx.textAlign = "left";
      ctx.textBaseline = "bottom"; // at the foot of the line, clear of the direct labels at the right end
      ctx.fillText(mark.label, x + 3, pad.top + hgt - 2);
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      ctx.strokeStyle = t.grid;
      ctx.fillStyle = t.muted;
    }
    if (!n) {
      ctx.fillText("waiting for data…", pad.left + w / 2, pad.top + hgt / 2);
      return;
    }
    for (const line of d.lines) {
      if (line.lo && line.hi) {
        ctx.fillStyle = withAlpha(line.color, 0.18);
        ctx.beginPath();
        let started = false;
        for (let i = 0; i < n; i++) {
          if (!Number.isFinite(line.hi[i])) continue;
          const x = X(d.xs[i]); const y = Y(line.hi[i]);
          if (started) { ctx.lineTo(x, y); } else { ctx.moveTo(x, y); started = true; }
        }
        for (let i = n - 1; i >= 0; i--) if (Number.isFinite(line.lo[i])) ctx.lineTo(X(d.xs[i]), Y(line.lo[i]));
        ctx.closePath();
        if (started) ctx.fill();
      }
      ctx.strokeStyle = line.color;
      ctx.lineWidth = 1.5;
      ctx.setLineDash(line.dash || []);
      ctx.beginPath();
      let pen = false;
      for (let i = 0; i < n; i++) {
        const v = line.ys[i];
        const x = X(d.xs[i]); const y = Y(v);
        if (!Number.isFinite(v) || !Number.isFinite(x) || !Number.isFinite(y)) { pen = false; continue; }
        if (pen) { ctx.lineTo(x, y); } else { ctx.moveTo(x, y); pen = true; }
      }
      if (n === 1 && Number.isFinite(line.ys[0])) ctx.arc(X(d.xs[0]), Y(line.ys[0]), 2, 0, 2 * Math.PI);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    // direct labels at the right end, nudged apart
    const ends = d.lines.map((line) => {
      let i = n - 1;
      while (i >= 0 && !Number.isFinite(Y(line.ys[i]))) i--;
      return { line, y: i >= 0 ? Y(line.ys[i]) : pad.top + hgt / 2 };
    }).sort((a, b) => a.y - b.y);
    for (let k = 1; k < ends.length; k++) if (ends[k].y - ends[k - 1].y < 12) ends[k].y = ends[k - 1].y + 12;
    const overflow = ends.length ? ends[ends.length - 1].y - (pad.top + hgt) : 0;
    if (overflow > 0) for (const e of ends) e.y -= overflow;
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    for (const { line, y } of ends) {
      ctx.fillStyle = line.color;
      ctx.fillText(line.label, pad.left + w + 4, y);
    }
    if (this.hover >= 0 && this.hover < n) {
      const x = Math.round(X(d.xs[this.hover])) + 0.5;
      ctx.strokeStyle = t.muted;
      ctx.beginPath(); ctx.moveTo(x, pad.top); ctx.lineTo(x, pad.top + hgt); ctx.stroke();
      const parts = [`step ${fmt(d.xs[this.hover])}`];
      for (const line of d.lines) parts.push(`${line.label} ${fmt(line.ys[this.hover])}`);
      this.readoutEl.textContent = this.readout ? this.readout(this.hover) : parts.join(" · ");
    } else {
      this.readoutEl.textContent = "";
    }
  }
}

/**
 * Call `move(x, y)` (canvas coordinates) while the pointer is over `canvas`, `leave()` when it leaves.
 * Returns the function that removes both listeners.
 * @param {HTMLCanvasElement} canvas @param {(x: number, y: number) => void} move @param {() => void} leave
 */
export function trackHover(canvas, move, leave) {
  const onMove = (/** @type {MouseEvent} */ e) => {
    const r = canvas.getBoundingClientRect();
    move(e.clientX - r.left, e.clientY - r.top);
  };
  canvas.addEventListener("mousemove", onMove);
  canvas.addEventListener("mouseleave", leave);
  return () => {
    canvas.removeEventListener("mousemove", onMove);
    canvas.removeEventListener("mouseleave", leave);
  };
}

/** @param {ArrayLike<number>} xs @param {number} x */
export function nearestIndex(xs, x) {
  let lo = 0;
  let hi = xs.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] <= x) lo = mid; else hi = mid;
  }
  return Math.abs(xs[hi] - x) < Math.abs(xs[lo] - x) ? hi : lo;
}

/** @param {string} c @param {number} a */
function withAlpha(c, a) {
  if (c.startsWith("#")) {
    const v = parseInt(c.slice(1), 16);
    return `rgba(${(v >> 16) & 255},${(v >> 8) & 255},${v & 255},${a})`;
  }
  return c.replace(/rgba?\(([^)]+?)(,\s*[\d.]+)?\)/, (_, inner) => `rgba(${inner.split(",").slice(0, 3).join(",")},${a})`);
}

/**
 * Histograms over time, each a ridge offset downwards (TensorBoard's "offset" view): oldest at the top,
 * newest in front at the bottom, coloured from dark to light by time.
 */
export class Ridgeline {
  constructor() {
    this.el = h("div", "hw-ridge");
    this.canvas = /** @type {HTMLCanvasElement} */ (h("canvas"));
    this.readoutEl = h("div", "hw-chart-readout");
    this.el.append(this.canvas, this.readoutEl);
    this.width = 420;
    this.height = 230;
    this.maxRidges = 40;
    this.series = null;
    this.outsideField = -1;
    this.rows = [];
    this.hover = -1;
    this.dispose = trackHover(this.canvas, (x, y) => {
      this.hover = this.rowAt(y);
      this.hoverX = x;
      this.draw();
    }, () => { this.hover = -1; this.draw(); });
  }

  /**
   * @param {import("./store.js").SeriesMirror} series @param {number} width
   * @param {number} [outsideField] index of the per-point fraction of values outside the grid
   */
  update(series, width, outsideField = -1) {
    this.series = series;
    this.outsideField = outsideField;
    if (width) this.width = width;
    this.draw();
  }

  /** Indices of the points drawn: all of them, or an even selection that always includes the newest. */
  pickRows(count) {
    if (count <= this.maxRidges) return Array.from({ length: count }, (_, i) => i);
    const rows = [];
    for (let k = 0; k < this.maxRidges; k++) rows.push(Math.round((k * (count - 1)) / (this.maxRidges - 1)));
    return rows;
  }

  layout() {
    const top = 8;
    const bottom = this.height - 20;
    const n = Math.max(this.rows.length, 1);
    const spacing = n > 1 ? (bottom - top - 40) / (n - 1) : 0;
    return { top, bottom, spacing, peak: Math.max(40, spacing * 4) };
  }

  rowAt(y) {
    const { top, spacing, peak } = this.layout();
    if (!this.rows.length) return -1;
    const k = spacing ? Math.round((y - top - peak) / spacing) : 0;
    return Math.max(0, Math.min(this.rows.length - 1, k));
  }

  draw() {
    const ctx = setupCanvas(this.canvas, this.width, this.height);
    const s = this.series;
    if (!ctx) return;
    const t = theme(this.el);
    ctx.font = t.font;
    if (!s || !s.count || !s.grid) {
      ctx.fillStyle = t.muted;
      ctx.fillText("waiting for the first sampled step…", 60, this.height / 2);
      this.readoutEl.textContent = "";
      return;
    }
    this.rows = this.pickRows(s.count);
    const [lo, width, bins] = s.grid;
    // x range: bins holding mass in any drawn row, with one bin of margin
    // ridge height scale: the tallest bin, not counting the bin that holds exact zeros (after a ReLU it can
    // hold half the values and flatten every other bin; it is drawn clipped instead, and the zero fraction
    // has its own chart)
    const zeroBin = lo <= 0 && lo + bins * width > 0 ? Math.floor(-lo / width) : -1;
    let first = bins;
    let last = -1;
    let peak = 0;
    let peakAll = 0;
    for (const i of this.rows) {
      const hist = s.histogram(i);
      for (let b = 0; b < bins; b++) {
        if (hist[b] > 0) {
          if (b < first) first = b;
          if (b > last) last = b;
          if (b !== zeroBin && hist[b] > peak) peak = hist[b];
          if (hist[b] > peakAll) peakAll = hist[b];
        }
      }
    }
    if (peak === 0) peak = peakAll;
    if (last < 0) { first = 0; last = bins - 1; }
    first = Math.max(0, first - 1);
    last = Math.min(bins - 1, last + 1);
    const left = 56;
    const right = this.width - 10;
    const xv0 = lo + first * width;
    const xv1 = lo + (last + 1) * width;
    const X = (v) => left + ((v - xv0) / (xv1 - xv0)) * (right - left);
    const L = this.layout();
    const n = this.rows.length;
    for (let k = 0; k < n; k++) {
      const i = this.rows[k];
      const base = L.top + L.peak + k * L.spacing;
      const hist = s.histogram(i);
      const c = color("viridis", 0.1 + 0.8 * (n > 1 ? k / (n - 1) : 1));
      ctx.beginPath();
      ctx.moveTo(X(lo + first * width), base);
      for (let b = first; b <= last; b++) {
        const y = base - (peak > 0 ? Math.min(hist[b] / peak, 1.25) * L.peak : 0);
        ctx.lineTo(X(lo + (b + 0.5) * width), y);
      }
      ctx.lineTo(X(lo + (last + 1) * width), base);
      ctx.closePath();
      ctx.fillStyle = k === this.hover ? withAlpha(c, 0.55) : t.bg;
      ctx.globalAlpha = 0.92;
      ctx.fill();
      ctx.globalAlpha = 1;
      ctx.strokeStyle = c;
      ctx.lineWidth = k === this.hover ? 2 : 1;
      ctx.stroke();
    }
    ctx.fillStyle = t.muted;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const labelEvery = Math.max(1, Math.ceil(n / 6));
    for (let k = 0; k < n; k += labelEvery) ctx.fillText(`${fmt(s.step(this.rows[k]))}`, left - 6, L.top + L.peak + k * L.spacing);
    if ((n - 1) % labelEvery) ctx.fillText(`${fmt(s.step(this.rows[n - 1]))}`, left - 6, L.top + L.peak + (n - 1) * L.spacing);
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const tick of niceTicks(xv0, xv1, 5)) if (tick >= xv0 && tick <= xv1) ctx.fillText(fmt(tick), X(tick), L.bottom + 4);
    ctx.save();
    ctx.translate(10, L.top + L.peak + ((n - 1) * L.spacing) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText("step", 0, 0);
    ctx.restore();
    if (this.hover >= 0 && this.hover < n) {
      const i = this.rows[this.hover];
      const v = xv0 + ((Math.max(left, Math.min(right, this.hoverX || left)) - left) / (right - left)) * (xv1 - xv0);
      const b = Math.max(0, Math.min(bins - 1, Math.floor((v - lo) / width)));
      const hist = s.histogram(i);
      const lo0 = s.steps[2 * i];
      const span = lo0 === s.step(i) ? `step ${fmt(lo0)}` : `steps ${fmt(lo0)}–${fmt(s.step(i))}`;
      const outside = this.outsideField >= 0 ? s.value(i, this.outsideField) : 0;
      const note = outside > 0 ? ` · ${pct(outside)} outside the range then` : "";
      this.readoutEl.textContent = `${span} · [${fmt(lo + b * width)}, ${fmt(lo + (b + 1) * width)}): ${pct(hist[b])} of values${note}`;
    } else {
      this.readoutEl.textContent = `${s.count} points${s.stride > 1 ? ` (each merges ${s.stride} samples)` : ""}; hover for values`;
    }
  }
}

/**
 * Draw maps ([C, h, w]) as a grid of tiles, or a matrix ([rows, cols]) as one heatmap, on one colour scale:
 * viridis from 0 for non-negative data, the diverging map centred on 0 for signed data.
 * Returns the scale used, for a colour bar.
 */
export function drawMaps(canvas, values, shape, width, maxHeight = 260) {
  const maps = shape.length === 3 ? shape[0] : 1;
  const mh = shape.length === 3 ? shape[1] : shape[0];
  const mw = shape.length === 3 ? shape[2] : shape[1];
  let vmin = Infinity;
  let vmax = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isFinite(v)) { if (v < vmin) vmin = v; if (v > vmax) vmax = v; }
  }
  if (!Number.isFinite(vmin)) { vmin = 0; vmax = 1; }
  const signed = vmin < 0;
  const name = signed ? "diverging" : "viridis";
  const m = Math.max(Math.abs(vmin), Math.abs(vmax)) || 1;
  const lo = signed ? -m : 0;
  const hi = signed ? m : (vmax > 0 ? vmax : 1);
  const table = lut(name);
  const gap = maps > 1 ? 1 : 0;
  let cols = maps > 1 ? Math.ceil(Math.sqrt((maps * mh) / mw * (width / maxHeight))) : 1;
  cols = Math.max(1, Math.min(maps, cols));
  const rows = Math.ceil(maps / cols);
  const gw = cols * (mw + gap) - gap;
  const gh = rows * (mh + gap) - gap;
  const scale = Math.max(0.25, Math.min(width / gw, maxHeight / gh));
  const outW = Math.max(1, Math.floor(gw * scale));
  const outH = Math.max(1, Math.floor(gh * scale));
  const ctx = setupCanvas(canvas, outW, outH);
  const result = { lo, hi, name, cols, rows, outW, outH, maps };
  if (!ctx) return result;
  const img = typeof ImageData !== "undefined" ? new ImageData(gw, gh) : null;
  if (!img) return result;
  const px = img.data;
  // gaps between tiles stay transparent (alpha 0), so the page shows through
  for (let c = 0; c < maps; c++) {
    const ox = (c % cols) * (mw + gap);
    const oy = Math.floor(c / cols) * (mh + gap);
    for (let y = 0; y < mh; y++) {
      for (let x = 0; x < mw; x++) {
        const v = values[c * mh * mw + y * mw + x];
        const o = ((oy + y) * gw + ox + x) * 4;
        if (!Number.isFinite(v)) { px[o] = 255; px[o + 1] = 0; px[o + 2] = 255; px[o + 3] = 255; continue; } // NaN/inf: magenta
        const k = Math.max(0, Math.min(255, Math.round(((v - lo) / (hi - lo)) * 255))) * 4;
        px[o] = table[k]; px[o + 1] = table[k + 1]; px[o + 2] = table[k + 2]; px[o + 3] = 255;
      }
    }
  }
  const off = document.createElement("canvas");
  off.width = gw;
  off.height = gh;
  const octx = off.getContext("2d");
  if (!octx) return result;
  octx.putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, 0, 0, outW, outH);
  return result;
}

/** A horizontal colour bar with its end values, built from DOM nodes (text via textContent). */
export function colorBar(name, lo, hi) {
  const bar = h("div", "hw-colorbar");
  const strip = /** @type {HTMLCanvasElement} */ (h("canvas", "hw-colorbar-strip"));
  const ctx = setupCanvas(strip, 120, 8);
  if (ctx) for (let x = 0; x < 120; x++) { ctx.fillStyle = color(/** @type {any} */ (name), x / 119); ctx.fillRect(x, 0, 1, 8); }
  bar.append(h("span", "", fmt(lo)), strip, h("span", "", fmt(hi)));
  return bar;
}

/**
 * The frame every view starts from: a root with the shared styles (plus `css`), and a header holding the title
 * and a muted note. The caller appends the rest to `root` and `root` to its element.
 * @param {string} cls the view's own class @param {string} css @param {string} [extraCss]
 */
export function viewFrame(cls, css, extraCss = "") {
  const root = h("div", `hw-am ${cls}`);
  const style = h("style");
  style.textContent = css + extraCss;
  const head = h("div", "hw-am-header");
  const title = h("span", "hw-am-title");
  const note = h("span", "hw-am-frames");
  head.append(title, note);
  root.append(style, head);
  return { root, head, title, note };
}

/** Draw `img` (an ImageData of its own size) onto `ctx` scaled to width x height, pixels kept sharp. */
export function drawPixels(ctx, img, width, height) {
  const off = document.createElement("canvas");
  off.width = img.width;
  off.height = img.height;
  const octx = off.getContext("2d");
  if (!octx) return;
  octx.putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, 0, 0, width, height);
}

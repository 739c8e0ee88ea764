// @ts-check
// Small canvas charts shared by the views: line charts with bands and direct labels, a ridgeline of
// histograms over time, and image grids / heatmaps. Every chart is drawn at the width its view gives it (from
// the container, lib/frame.js) with the theme's colours; axis text is placed through lib/frame.js's Labels, so
// no two labels overlap and their boxes can be checked. Text that names user things (layers, scalars) goes into
// the DOM with textContent, or onto a canvas with fillText (never as HTML).
import { color, lut } from "./colormap.js";
import { Labels, readTheme } from "./frame.js";

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

/** Compact number: 3 significant digits, exponent for very small or large magnitudes; always a leading 0. */
export function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2).replace("e+", "e").replace(/\.?0+e/, "e");
  if (Number.isInteger(v)) return String(v);
  const s = String(Number(v.toPrecision(3)));
  return s.replace(/^(-?)\./, "$10.");
}

/** @param {number} v */
export function pct(v) { return Number.isFinite(v) ? `${(100 * v).toFixed(v < 0.1 ? 1 : 0)}%` : "–"; }

/** Integer powers of ten (as exponents) within [lo, hi] of a log10 axis; at least two ticks. */
export function powerTicks(lo, hi) {
  const ticks = [];
  for (let k = Math.ceil(lo - 1e-9); k <= Math.floor(hi + 1e-9); k++) ticks.push(k);
  if (ticks.length >= 2) return ticks;
  // less than a decade: 1, 2, 5 x 10^k that fall inside, as exponents (never 10^-2.5 = 0.00316)
  const out = [];
  for (let k = Math.floor(lo) - 1; k <= Math.ceil(hi); k++) {
    for (const m of [1, 2, 5]) { const e = Math.log10(m * 10 ** k); if (e >= lo - 1e-9 && e <= hi + 1e-9) out.push(e); }
  }
  return out.length >= 2 ? out : [lo, hi];
}

/**
 * Around `count` round tick values covering [lo, hi] (1, 2, 2.5 or 5 x 10^k apart; 1, 2 or 5 x 10^k and
 * never fractional when `integer`, e.g. for steps and epochs).
 */
export function niceTicks(lo, hi, count = 4, integer = false) {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi === lo) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const steps = integer ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10];
  let step = steps.map((m) => m * mag).find((s) => s >= raw) || raw;
  if (integer) step = Math.max(1, Math.round(step));
  const ticks = [];
  for (let t = Math.ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) {
    const v = Math.abs(t) < step * 1e-9 ? 0 : Number(t.toPrecision(12));
    ticks.push(v);
  }
  return ticks;
}

/**
 * Ticks for an axis `length` pixels long whose labels (from `label`) do not touch: the most ticks, up to
 * `most`, whose widest label plus a gap fits the spacing. `size(text)` measures a label along the axis.
 * @param {number} lo @param {number} hi @param {number} length @param {(v: number) => string} label
 * @param {(text: string) => number} size @param {{ most?: number, integer?: boolean, gap?: number }} [opts]
 */
export function fitTicks(lo, hi, length, label, size, opts = {}) {
  const gap = opts.gap ?? 10;
  for (let count = opts.most ?? 8; count >= 1; count--) {
    const ticks = niceTicks(lo, hi, count, opts.integer).filter((t) => t >= lo - 1e-9 * Math.abs(hi - lo) && t <= hi + 1e-9 * Math.abs(hi - lo));
    if (ticks.length <= 1) return ticks;
    const px = (length / (hi - lo || 1)) * (ticks[1] - ticks[0]);
    const widest = Math.max(...ticks.map((t) => size(label(t))));
    if (widest + gap <= px) return ticks;
  }
  return [lo, hi].filter(Number.isFinite);
}

/** Colours that follow the JupyterLab theme where there is one (see lib/frame.js). */
export function theme(el) { return readTheme(el); }

/** Plain text of an axis title with its unit, e.g. axisTitle("gradient norm", "log") -> "gradient norm (log)". */
export function axisTitle(name, unit) { return unit ? `${name} (${unit})` : name; }

/**
 * A line chart over steps. Lines carry their own label, drawn at the line's end (no legend to hunt for);
 * optional bands (lo/hi arrays) are shaded; hovering shows the nearest point's numbers. Axis titles come from
 * the options or the data (xTitle, yTitle); `yFormat: "percent"` writes y ticks as percentages of [0, 1];
 * `xInteger` keeps x ticks on whole numbers (steps, epochs); `clipSpikes` caps the y axis above isolated spikes
 * (more than 5x the 95th percentile) and marks each clipped point with a triangle at the top, value on hover.
 */
export class LineChart {
  /**
   * @param {string} title
   * @param {{height?: number, readout?: (i: number) => string, xTitle?: string, yTitle?: string,
   *   yFormat?: "percent", xInteger?: boolean, clipSpikes?: boolean}} [opts]
   */
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
    this.opts = opts;
    this.width = 280;
    this.data = null;
    this.hover = -1;
    this.readout = opts.readout;
    this.scale = { x0: 0, x1: 1, logX: false };
    this.pad = { left: 40, right: 40, top: 8, bottom: 30 };
    this.clipped = /** @type {number[]} */ ([]);
    this.dispose = trackHover(this.canvas, (x) => {
      if (!this.data || !this.data.xs.length) return;
      this.hover = nearestIndex(this.data.xs, this.xInv(x));
      this.draw();
    }, () => { this.hover = -1; this.draw(); });
  }

  /**
   * @param {{xs: ArrayLike<number>, lines: {ys: ArrayLike<number>, label: string, color: string, dash?: number[],
   *   lo?: ArrayLike<number>, hi?: ArrayLike<number>}[], value?: string, yMin?: number, yMax?: number,
   *   logX?: boolean, logY?: boolean, marks?: {x: number, label: string}[], xLabels?: string[],
   *   xTitle?: string, yTitle?: string}} data
   * @param {number} [width]
   */
  update(data, width) {
    this.data = data;
    if (width) this.width = Math.max(120, Math.floor(width));
    this.el.style.width = `${this.width}px`; // its text wraps inside; a flex row lays it out by this width
    this.valueEl.textContent = data.value || "";
    this.draw();
  }

  xInv(px) {
    const { x0, x1, logX } = this.scale;
    const pad = this.pad;
    const w = this.width - pad.left - pad.right;
    const v = x0 + ((px - pad.left) / w) * (x1 - x0 || 1);
    return logX ? 10 ** v : v;
  }

  draw() {
    const d = this.data;
    if (!d) return;
    const o = this.opts;
    const t = readTheme(this.el);
    const probe = this.canvas.getContext("2d");
    if (!probe) return;
    probe.font = t.font;
    const measure = (s) => probe.measureText(s).width || s.length * 6;
    const n = d.xs.length;
    const xTitle = d.xTitle ?? o.xTitle ?? ""; const yTitle = d.yTitle ?? o.yTitle ?? "";
    const fx = d.logX ? (v) => (v > 0 ? Math.log10(v) : NaN) : (v) => v;
    const fy = d.logY ? (v) => (v > 0 ? Math.log10(v) : NaN) : (v) => v;
    let y0 = Infinity; let y1 = -Infinity;
    const finite = [];
    for (const line of d.lines) {
      for (const arr of [line.ys, line.lo, line.hi]) {
        if (!arr) continue;
        for (let i = 0; i < n; i++) {
          const v = fy(arr[i]);
          if (Number.isFinite(v)) { if (v < y0) y0 = v; if (v > y1) y1 = v; if (arr === line.ys) finite.push(v); }
        }
      }
    }
    // spikes: cap the axis where a few points dwarf the rest, and mark them (their values stay on hover)
    let cap = Infinity;
    if (o.clipSpikes && !d.logY && finite.length >= 8) {
      const sorted = finite.slice().sort((a, b) => a - b);
      const q = sorted[Math.floor(0.95 * (sorted.length - 1))];
      if (q > 0 && y1 > 5 * q) { cap = 2 * q; y1 = cap; }
    }
    if (d.yMin !== undefined) y0 = Math.min(y0, d.yMin);
    if (d.yMax !== undefined && Number.isFinite(y1)) y1 = Math.max(y1, d.yMax);
    else if (d.yMax !== undefined) y1 = d.yMax;
    if (!Number.isFinite(y0)) { y0 = 0; y1 = 1; }
    if (y1 === y0) { y1 += Math.abs(y0) * 0.1 || 1; y0 -= Math.abs(y0) * 0.1 || 0; }
    if (!d.logY && !Number.isFinite(cap)) { // extend to round numbers, so both ends carry a tick
      const nice = niceTicks(y0, y1, 4);
      if (nice.length >= 2) {
        const stepY = nice[1] - nice[0];
        y0 = Math.floor(y0 / stepY + 1e-9) * stepY; y1 = Math.ceil(y1 / stepY - 1e-9) * stepY;
      }
    }
    const yLabel = d.logY ? (v) => fmt(10 ** v) : o.yFormat === "percent" ? (v) => `${fmt(Math.round(v * 1000) / 10)}%` : fmt;
    const xLabel = d.logX ? (v) => fmt(10 ** v) : fmt;
    const top = 8;
    const lineH = Math.ceil(t.fontSize * 1.2);
    // the plot's height is fixed; y ticks first (their widths give the left margin)
    const hgt = Math.max(30, this.height - top - lineH - 6 - (xTitle ? lineH + 2 : 0));
    const yTicks = d.logY ? powerTicks(y0, y1) : fitTicks(y0, y1, hgt, yLabel, () => lineH, { most: Math.max(3, Math.floor(hgt / 22)), gap: 4 });
    const left = Math.ceil(Math.max(18, ...yTicks.map((v) => measure(yLabel(v)))) + 6 + (yTitle ? lineH + 2 : 0));
    const endLabels = d.lines.map((l) => l.label).filter(Boolean);
    const right = endLabels.length ? Math.ceil(Math.min(Math.max(...endLabels.map(measure)) + 20, this.width / 3)) : 12;
    const w = Math.max(20, this.width - left - right);
    let x0 = n ? fx(d.xs[0]) : 0;
    let x1 = n ? fx(d.xs[n - 1]) : 1;
    if (!Number.isFinite(x0)) x0 = n > 1 ? fx(d.xs[1]) - 0.3 : 0; // log axis starting at 0: start a bit left
    if (x1 === x0) { x1 = x0 + 1; }
    // categorical labels (layers): horizontal when they fit, else turned 45° and shortened, thinned to fit
    let rotate = false; let catEvery = 1; let catMax = 0;
    if (d.xLabels && d.xLabels.length) {
      const each = w / Math.max(1, d.xLabels.length - 1 || 1);
      const widest = Math.max(...d.xLabels.map(measure));
      if (widest + 8 > each) { // vertical, shortened to 110 px, thinned so they do not touch
        rotate = true;
        catMax = Math.min(110, widest);
        catEvery = Math.max(1, Math.ceil((lineH + 2) / (each || 1)));
      }
    }
    const xAxisH = rotate ? Math.ceil(catMax) + 12 : lineH + 4;
    const height = top + hgt + xAxisH + (xTitle ? lineH + 2 : 0) + 2;
    const ctx = setupCanvas(this.canvas, this.width, height);
    if (!ctx) return;
    this.pad = { left, right, top, bottom: height - top - hgt };
    this.scale = { x0, x1, logX: !!d.logX };
    const X = (v) => left + ((fx(v) - x0) / (x1 - x0 || 1)) * w;
    const Y = (v) => top + (1 - (Math.min(fy(v), y1) - y0) / (y1 - y0)) * hgt;
    ctx.font = t.font;
    const L = new Labels(ctx, t.fontSize);
    ctx.lineWidth = 1;
    ctx.strokeStyle = t.grid;
    ctx.fillStyle = t.muted;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const tick of yTicks) {
      if (tick < y0 - 1e-9 || tick > y1 + 1e-9) continue;
      const y = Math.round(top + (1 - (tick - y0) / (y1 - y0)) * hgt) + 0.5;
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + w, y); ctx.stroke();
      L.place(yLabel(tick), left - 4, Math.max(top + lineH / 2 - 2, Math.min(top + hgt, y)));
    }
    ctx.strokeStyle = t.axis;
    ctx.beginPath(); ctx.moveTo(left, top + hgt + 0.5); ctx.lineTo(left + w, top + hgt + 0.5); ctx.stroke();
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    if (d.xLabels && d.xLabels.length) {
      d.xLabels.forEach((label, i) => {
        if (i % catEvery) return;
        const x = X(d.xs[i]);
        if (rotate) {
          ctx.textAlign = "right"; ctx.textBaseline = "middle";
          L.place(L.fit(label, catMax), x, top + hgt + 8, { angle: -Math.PI / 2 });
        } else {
          L.place(label, Math.max(left + measure(label) / 2, Math.min(left + w + right - measure(label) / 2 - 1, x)), top + hgt + 4);
        }
      });
    } else {
      const ticks = d.logX ? powerTicks(x0, x1) : fitTicks(x0, x1, w, xLabel, measure, { integer: o.xInteger, most: 8 });
      for (const tick of ticks) {
        if (tick < x0 - 1e-9 || tick > x1 + 1e-9) continue;
        const x = left + ((tick - x0) / (x1 - x0 || 1)) * w;
        const s = xLabel(tick);
        L.place(s, Math.max(measure(s) / 2, Math.min(this.width - measure(s) / 2, x)), top + hgt + 4);
      }
    }
    ctx.fillStyle = t.muted;
    if (xTitle) { ctx.textAlign = "center"; ctx.textBaseline = "bottom"; L.place(L.fit(xTitle, w), left + w / 2, height - 1); }
    if (yTitle) {
      ctx.textAlign = "center"; ctx.textBaseline = "top";
      L.place(L.fit(yTitle, hgt + 10), 1, top + hgt / 2, { angle: -Math.PI / 2 });
    }
    const markLabels = [];
    for (const mark of d.marks || []) {
      const x = Math.round(X(mark.x)) + 0.5;
      if (!Number.isFinite(x)) continue;
      ctx.strokeStyle = t.warn;
      ctx.setLineDash([4, 3]);
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + hgt); ctx.stroke();
      ctx.setLineDash([]);
      markLabels.push({ x, label: mark.label });
    }
    // (mark labels go on top of the data, after the lines: see placeMarks)
    const placeMarks = () => {
      for (const { x, label } of markLabels) {
        ctx.fillStyle = t.warn;
        ctx.textBaseline = "bottom"; // at the foot of the line, inside the plot: left of it where it would run out
        const text = L.fit(label, w - 6);
        const fitsRight = x + 3 + measure(text) <= left + w;
        ctx.textAlign = fitsRight ? "left" : "right";
        L.place(text, fitsRight ? x + 3 : Math.max(left + measure(text), x - 3), top + hgt - 2, { halo: t.bg });
      }
    };
    ctx.fillStyle = t.muted;
    if (!n) {
      ctx.textAlign = "center"; ctx.textBaseline = "middle";
      L.place("waiting for data…", left + w / 2, top + hgt / 2);
      placeMarks();
      L.attach(this.canvas);
      this.readoutEl.textContent = "";
      return;
    }
    ctx.save();
    ctx.beginPath(); ctx.rect(left, top - 1, w, hgt + 2); ctx.clip();
    for (const line of d.lines) {
      if (line.lo && line.hi) {
        ctx.fillStyle = withAlpha(line.color, 0.18);
        ctx.beginPath();
        let started = false;
        for (let i = 0; i < n; i++) {
          if (!Number.isFinite(fy(line.hi[i]))) continue;
          const x = X(d.xs[i]); const y = Y(line.hi[i]);
          if (started) { ctx.lineTo(x, y); } else { ctx.moveTo(x, y); started = true; }
        }
        for (let i = n - 1; i >= 0; i--) if (Number.isFinite(fy(line.lo[i]))) ctx.lineTo(X(d.xs[i]), Y(line.lo[i]));
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
        if (!Number.isFinite(fy(v)) || !Number.isFinite(x) || !Number.isFinite(y)) { pen = false; continue; }
        if (pen) { ctx.lineTo(x, y); } else { ctx.moveTo(x, y); pen = true; }
      }
      if (n === 1 && Number.isFinite(fy(line.ys[0]))) ctx.arc(X(d.xs[0]), Y(line.ys[0]), 2, 0, 2 * Math.PI);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    ctx.restore();
    placeMarks();
    // clipped spikes: a triangle at the top of the plot over each
    this.clipped = [];
    if (Number.isFinite(cap)) {
      ctx.fillStyle = t.bad;
      for (const line of d.lines) {
        for (let i = 0; i < n; i++) {
          if (!(fy(line.ys[i]) > cap)) continue;
          this.clipped.push(i);
          const x = X(d.xs[i]);
          ctx.beginPath(); ctx.moveTo(x - 4, top + 6); ctx.lineTo(x + 4, top + 6); ctx.lineTo(x, top); ctx.closePath(); ctx.fill();
        }
      }
    }
    // direct labels at the right end, nudged apart by a line's height
    const ends = d.lines.map((line) => {
      let i = n - 1;
      while (i >= 0 && !Number.isFinite(Y(line.ys[i]))) i--;
      return { line, y: i >= 0 ? Y(line.ys[i]) : top + hgt / 2 };
    }).sort((a, b) => a.y - b.y);
    const step = lineH + 1;
    for (let k = 1; k < ends.length; k++) if (ends[k].y - ends[k - 1].y < step) ends[k].y = ends[k - 1].y + step;
    const overflow = ends.length ? ends[ends.length - 1].y - (top + hgt - lineH / 2) : 0;
    if (overflow > 0) for (const e of ends) e.y -= overflow;
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    for (const { line, y } of ends) {
      if (!line.label) continue;
      const yy = Math.max(top + lineH / 2, y);
      ctx.fillStyle = t.muted;
      if (!L.place(L.fit(line.label, right - 16), left + w + 14, yy)) continue;
      ctx.strokeStyle = line.color; ctx.lineWidth = 2; ctx.setLineDash(line.dash || []);
      ctx.beginPath(); ctx.moveTo(left + w + 3, yy); ctx.lineTo(left + w + 12, yy); ctx.stroke();
      ctx.setLineDash([]); ctx.lineWidth = 1;
    }
    L.attach(this.canvas);
    if (this.hover >= 0 && this.hover < n) {
      const x = Math.round(X(d.xs[this.hover])) + 0.5;
      ctx.strokeStyle = t.muted;
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + hgt); ctx.stroke();
      const parts = [`${xTitle || "step"} ${d.xLabels ? d.xLabels[this.hover] : fmt(d.xs[this.hover])}`];
      for (const line of d.lines) parts.push(`${line.label} ${o.yFormat === "percent" ? pct(line.ys[this.hover]) : fmt(line.ys[this.hover])}`);
      this.readoutEl.textContent = this.readout ? this.readout(this.hover) : parts.join(" · ");
    } else if (this.clipped.length) {
      let top1 = -Infinity;
      for (const line of d.lines) for (const i of this.clipped) top1 = Math.max(top1, line.ys[i]);
      this.readoutEl.textContent = `${this.clipped.length} spike${this.clipped.length > 1 ? "s" : ""} above ${fmt(cap)} clipped (▲, largest ${fmt(top1)}); hover for values`;
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

/**
 * Histograms over time, each a ridge whose base sits at its step on a vertical step axis (TensorBoard's
 * "offset" view, with honest time: ridges are as far apart as their steps): oldest at the top, newest in front
 * at the bottom, coloured from dark to light by time. Ridges are clipped to the plot, so they never draw
 * through the tick labels.
 */
export class Ridgeline {
  constructor() {
    this.el = h("div", "hw-ridge");
    this.canvas = /** @type {HTMLCanvasElement} */ (h("canvas"));
    this.readoutEl = h("div", "hw-chart-readout");
    this.el.append(this.canvas, this.readoutEl);
    this.width = 420;
    this.height = 250;
    this.maxRidges = 40;
    this.series = null;
    this.outsideField = -1;
    this.rows = [];
    this.bases = [];
    this.hover = -1;
    this.hoverX = 0;
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
    if (width) this.width = Math.max(160, Math.floor(width));
    this.el.style.width = `${this.width}px`;
    this.draw();
  }

  /** Indices of the points drawn: all of them, or an even selection that always includes the newest. */
  pickRows(count) {
    if (count <= this.maxRidges) return Array.from({ length: count }, (_, i) => i);
    const rows = [];
    for (let k = 0; k < this.maxRidges; k++) rows.push(Math.round((k * (count - 1)) / (this.maxRidges - 1)));
    return [...new Set(rows)];
  }

  /** The drawn ridge whose base is nearest to y. */
  rowAt(y) {
    if (!this.bases.length) return -1;
    let best = 0;
    for (let k = 1; k < this.bases.length; k++) if (Math.abs(this.bases[k] - y) < Math.abs(this.bases[best] - y)) best = k;
    return best;
  }

  draw() {
    const s = this.series;
    const t = readTheme(this.el);
    const ctx = setupCanvas(this.canvas, this.width, this.height);
    if (!ctx) return;
    ctx.font = t.font;
    const L = new Labels(ctx, t.fontSize);
    if (!s || !s.count || !s.grid) {
      ctx.fillStyle = t.muted; ctx.textAlign = "left"; ctx.textBaseline = "middle";
      L.place("waiting for the first sampled step…", 8, this.height / 2);
      L.attach(this.canvas);
      this.readoutEl.textContent = "";
      this.bases = [];
      return;
    }
    this.rows = this.pickRows(s.count);
    const [lo, width, bins] = s.grid;
    // x range: bins holding mass in any drawn row, with one bin of margin
    // ridge height scale: the tallest bin, not counting the bin that holds exact zeros (after a ReLU it can
    // hold half the values and flatten every other bin; it is drawn clipped instead, and the zero fraction
    // has its own chart)
    const zeroBin = lo <= 0 && lo + bins * width > 0 ? Math.floor(-lo / width) : -1;
    let first = bins; let last = -1; let peak = 0; let peakAll = 0;
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
    const n = this.rows.length;
    const steps = this.rows.map((i) => s.step(i));
    const s0 = steps[0]; const s1 = steps[n - 1];
    const lineH = Math.ceil(t.fontSize * 1.2);
    const stepLabel = (v) => fmt(v);
    const measure = (x) => ctx.measureText(x).width || x.length * 6;
    const ridgeH = Math.max(24, Math.min(56, (this.height - 60) * 0.3)); // a ridge's tallest bin
    const top = 4 + 1.25 * ridgeH; // the oldest ridge's base: its peak (up to 1.25x, see below) fits above
    const bottom = this.height - 2 * lineH - 10; // the newest ridge's base
    const span = bottom - top;
    const Yb = (step) => (s1 > s0 ? top + ((step - s0) / (s1 - s0)) * span : bottom);
    const yTicks = s1 > s0 ? fitTicks(s0, s1, span, stepLabel, () => lineH, { integer: true, most: 6, gap: 6 }) : [s0];
    const left = Math.ceil(Math.max(...yTicks.map((v) => measure(stepLabel(v))), 16) + 8 + lineH + 2);
    const right = this.width - 10;
    const xv0 = lo + first * width;
    const xv1 = lo + (last + 1) * width;
    const X = (v) => left + ((v - xv0) / (xv1 - xv0)) * (right - left);
    // axes: step ticks at their place, value ticks, titles
    ctx.fillStyle = t.muted; ctx.strokeStyle = t.grid; ctx.lineWidth = 1;
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (const tick of yTicks) {
      if (tick < s0 || tick > s1) continue;
      const y = Math.round(Yb(tick)) + 0.5;
      ctx.beginPath(); ctx.moveTo(left - 3, y); ctx.lineTo(left, y); ctx.stroke();
      L.place(stepLabel(tick), left - 5, y);
    }
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    const xTicks = fitTicks(xv0, xv1, right - left, fmt, measure, { most: 6 });
    for (const tick of xTicks) if (tick >= xv0 && tick <= xv1) L.place(fmt(tick), Math.max(left + 8, Math.min(right - 8, X(tick))), bottom + 4);
    ctx.textBaseline = "bottom";
    L.place("activation value", left + (right - left) / 2, this.height - 1);
    ctx.textBaseline = "top";
    L.place(L.fit("training step", span + ridgeH), 1, top + span / 2, { angle: -Math.PI / 2 });
    L.attach(this.canvas);
    // ridges, oldest first, clipped to the plot
    ctx.save();
    ctx.beginPath(); ctx.rect(left, 0, right - left + 1, bottom + 1); ctx.clip();
    this.bases = [];
    const c0 = t.dark ? 0.35 : 0.05; const c1 = t.dark ? 1 : 0.85;
    for (let k = 0; k < n; k++) {
      const i = this.rows[k];
      const base = Yb(steps[k]);
      this.bases.push(base);
      const hist = s.histogram(i);
      const c = color("viridis", c0 + (c1 - c0) * (n > 1 ? k / (n - 1) : 1));
      ctx.beginPath();
      ctx.moveTo(X(lo + first * width), base);
      for (let b = first; b <= last; b++) {
        const y = base - (peak > 0 ? Math.min(hist[b] / peak, 1.25) * ridgeH : 0);
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
    ctx.restore();
    ctx.strokeStyle = t.axis;
    ctx.beginPath(); ctx.moveTo(left, bottom + 0.5); ctx.lineTo(right, bottom + 0.5); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(left - 0.5, 0); ctx.lineTo(left - 0.5, bottom); ctx.stroke();
    if (this.hover >= 0 && this.hover < n) {
      const i = this.rows[this.hover];
      const v = xv0 + ((Math.max(left, Math.min(right, this.hoverX || left)) - left) / (right - left)) * (xv1 - xv0);
      const b = Math.max(0, Math.min(bins - 1, Math.floor((v - lo) / width)));
      const hist = s.histogram(i);
      const lo0 = s.steps[2 * i];
      const when = lo0 === s.step(i) ? `step ${fmt(lo0)}` : `steps ${fmt(lo0)}–${fmt(s.step(i))}`;
      const outside = this.outsideField >= 0 ? s.value(i, this.outsideField) : 0;
      const note = outside > 0 ? ` · ${pct(outside)} outside the range then` : "";
      this.readoutEl.textContent = `${when} · [${fmt(lo + b * width)}, ${fmt(lo + (b + 1) * width)}): ${pct(hist[b])} of values${note}`;
    } else {
      const merged = s.stride > 1 ? `; each merges ${s.stride} sampled steps` : "";
      const shown = n < s.count ? `${n} of ${s.count} histograms drawn` : `${n} histogram${n === 1 ? "" : "s"}`;
      this.readoutEl.textContent = `${shown}, steps ${fmt(s0)}–${fmt(s1)}, placed at their step${merged}; hover for values`;
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

/**
 * A horizontal colour key with its end values (and the middle one for a diverging map), built from DOM nodes
 * (text via textContent). `title` says what the colour encodes, with its unit; `note` how it is scaled.
 * @param {string} name @param {number} lo @param {number} hi @param {{ title?: string, note?: string }} [opts]
 */
export function colorBar(name, lo, hi, opts = {}) {
  const bar = h("div", "hw-colorbar");
  bar.setAttribute("role", "img");
  bar.setAttribute("aria-label", `${opts.title || "colour"}: ${name} from ${fmt(lo)} to ${fmt(hi)}${opts.note ? `, ${opts.note}` : ""}`);
  const strip = /** @type {HTMLCanvasElement} */ (h("canvas", "hw-colorbar-strip"));
  const ctx = setupCanvas(strip, 120, 10);
  if (ctx) for (let x = 0; x < 120; x++) { ctx.fillStyle = color(/** @type {any} */ (name), x / 119); ctx.fillRect(x, 0, 1, 10); }
  if (opts.title) bar.append(h("span", "hw-colorbar-title", opts.title));
  const scale = h("span", "hw-colorbar-scale");
  scale.append(h("span", "hw-colorbar-tick", fmt(lo)), strip, h("span", "hw-colorbar-tick", fmt(hi)));
  bar.append(scale);
  if (opts.note) bar.append(h("span", "hw-note hw-colorbar-note", opts.note));
  return bar;
}

/**
 * The frame every view starts from: a root with the shared styles (plus `css`), and a header holding the title
 * and a muted note. The caller appends the rest to `root` and `root` to its element, and mounts the visual
 * system on it (lib/frame.js mountView) for its width and theme.
 * @param {string} cls the view's own class @param {string} css @param {string} [extraCss] @param {string} [name]
 */
export function viewFrame(cls, css, extraCss = "", name = "") {
  const root = h("div", `hw-am ${cls}`);
  if (name) root.dataset.hwView = name;
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

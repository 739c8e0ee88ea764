// @ts-check
// A labelled heatmap on a canvas (rows x columns of values), sized to the width it is given, with a hover
// readout and a colour key. The colour scale spans the data's own range (not a fixed 0-1, where 0.69-0.99 would
// all look alike) and the key says so; signed data get the diverging map centred on 0. Row and column names are
// drawn with fillText, never inserted as HTML; names too long are shortened with "…" (in full on hover).
import { colorBar, fmt, setupCanvas, trackHover } from "./chart.js";
import { lut } from "./colormap.js";
import { inkOn } from "./contrast.js";
import { Labels, readTheme } from "./frame.js";

/** The colour scale for values: [lo, hi, map name, how it is scaled (words)]. */
export function heatScale(values, fixed) {
  let lo = Infinity; let hi = -Infinity;
  for (const row of values) for (const v of row) if (v !== null && Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!Number.isFinite(lo)) return { lo: 0, hi: 1, name: "viridis", note: "no values" };
  if (fixed && fixed.lo !== undefined && fixed.hi !== undefined) return { lo: fixed.lo, hi: fixed.hi, name: "viridis", note: `fixed scale ${fmt(fixed.lo)}–${fmt(fixed.hi)}` };
  if (lo < 0 && hi > 0) { const m = Math.max(-lo, hi); return { lo: -m, hi: m, name: "diverging", note: "centred on 0" }; }
  if (hi === lo) return { lo: lo - 0.5, hi: hi + 0.5, name: "viridis", note: "all values equal" };
  return { lo, hi, name: "viridis", note: `scaled to the data's range ${fmt(lo)}–${fmt(hi)}` };
}

export class Heatmap {
  /** @param {(row: number, col: number) => string} readout */
  constructor(readout) {
    this.canvas = /** @type {HTMLCanvasElement} */ (document.createElement("canvas"));
    this.readoutEl = document.createElement("div");
    this.readoutEl.className = "hw-chart-readout";
    this.keyEl = document.createElement("div");
    this.el = document.createElement("div");
    this.el.className = "hw-heatmap";
    this.el.append(this.canvas, this.keyEl, this.readoutEl);
    this.readout = readout;
    this.data = null;
    this.width = 520;
    this.geom = null;
    this.hover = [-1, -1];
    this.dispose = trackHover(this.canvas, (x, y) => {
      const g = this.geom;
      if (!g) return;
      const c = Math.floor((x - g.left) / g.cw); const r = Math.floor((y - g.top) / g.ch);
      this.hover = r >= 0 && r < g.rows && c >= 0 && c < g.cols ? [r, c] : [-1, -1];
      this.draw();
    }, () => { this.hover = [-1, -1]; this.draw(); });
  }

  /**
   * @param {{ values: (number | null)[][], rows: string[], cols: string[], lo?: number, hi?: number,
   *   rowTitle?: string, colTitle?: string, cellText?: boolean, valueTitle?: string }} data
   *   lo/hi: a fixed scale (otherwise the data's range); valueTitle: what the colour encodes, with its unit
   * @param {number} [width] the width available
   */
  update(data, width) {
    this.data = data;
    if (width) this.width = Math.max(140, Math.floor(width));
    this.draw();
  }

  draw() {
    const d = this.data;
    if (!d) return;
    const rows = d.rows.length; const cols = d.cols.length;
    const probe = this.canvas.getContext("2d");
    if (!probe) return;
    const t = readTheme(this.el);
    probe.font = t.font;
    const lineH = Math.ceil(t.fontSize * 1.2);
    const measure = (s) => probe.measureText(s).width || s.length * 6;
    const titleW = d.rowTitle ? lineH + 4 : 0;
    // row names: at most a third of the width
    const rowW = Math.ceil(Math.min(this.width / 3, Math.max(20, ...d.rows.map(measure))) + 6);
    const left = titleW + rowW;
    const avail = this.width - left - 8;
    const cell = Math.max(6, Math.min(44, Math.floor(avail / Math.max(1, cols)), Math.floor(520 / Math.max(rows, 1))));
    const widest = Math.max(10, ...d.cols.map(measure));
    // column names: horizontal if they fit a cell, else vertical (shortened to 100 px) and thinned to fit
    const rotate = widest + 4 > cell;
    const colMax = rotate ? Math.min(100, widest) : widest;
    const colEvery = rotate ? Math.max(1, Math.ceil((lineH + 1) / cell)) : 1;
    const top = 4;
    const axisH = rotate ? Math.ceil(colMax) + 12 : lineH + 6;
    const height = top + rows * cell + axisH + (d.colTitle ? lineH + 2 : 0) + 2;
    const width = Math.min(this.width, left + cols * cell + 8 + (rotate ? 0 : 0));
    const ctx = setupCanvas(this.canvas, width, height);
    if (!ctx) return;
    ctx.font = t.font;
    const L = new Labels(ctx, t.fontSize);
    this.geom = { left, top, cw: cell, ch: cell, rows, cols };
    const scale = heatScale(d.values, d.lo !== undefined && d.hi !== undefined ? { lo: d.lo, hi: d.hi } : null);
    const { lo, hi } = scale;
    const table = lut(/** @type {any} */ (scale.name));
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const v = d.values[r][c];
        let rgb = null;
        if (v === null || !Number.isFinite(v)) { ctx.fillStyle = t.missing; } else {
          const q = Math.round(Math.max(0, Math.min(1, (v - lo) / (hi - lo || 1))) * 255) * 4;
          rgb = [table[q], table[q + 1], table[q + 2]];
          ctx.fillStyle = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
        }
        ctx.fillRect(left + c * cell, top + r * cell, cell - 1, cell - 1);
        if (d.cellText && cell >= 30 && rgb) {
          ctx.fillStyle = inkOn(rgb); // black or white, whichever contrasts more (WCAG): >= 4.58:1 on any cell
          ctx.textAlign = "center"; ctx.textBaseline = "middle";
          ctx.fillText(v.toFixed(2), left + c * cell + cell / 2, top + r * cell + cell / 2);
        }
      }
    }
    ctx.fillStyle = t.text;
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    const rowEvery = Math.max(1, Math.ceil((lineH + 1) / cell));
    d.rows.forEach((name, r) => { if (r % rowEvery === 0) L.place(L.fit(name, rowW - 6), left - 4, top + r * cell + cell / 2); });
    d.cols.forEach((name, c) => {
      if (c % colEvery) return;
      const x = left + c * cell + cell / 2;
      if (rotate) {
        ctx.textAlign = "right"; ctx.textBaseline = "middle";
        L.place(L.fit(name, colMax), x, top + rows * cell + 8, { angle: -Math.PI / 2 });
      } else {
        ctx.textAlign = "center"; ctx.textBaseline = "top";
        L.place(name, x, top + rows * cell + 4);
      }
    });
    ctx.fillStyle = t.muted;
    if (d.colTitle) { ctx.textAlign = "center"; ctx.textBaseline = "bottom"; L.place(L.fit(d.colTitle, cols * cell + rowW), left + (cols * cell) / 2, height - 1); }
    if (d.rowTitle) {
      ctx.textAlign = "center"; ctx.textBaseline = "top";
      L.place(L.fit(d.rowTitle, rows * cell + 20), 1, top + (rows * cell) / 2, { angle: -Math.PI / 2 });
    }
    L.attach(this.canvas);
    const key = `${scale.name}|${lo}|${hi}|${d.valueTitle}`;
    if (this.keyEl.dataset.key !== key) {
      this.keyEl.replaceChildren(colorBar(scale.name, lo, hi, { title: d.valueTitle || "value", note: scale.note }));
      this.keyEl.dataset.key = key;
    }
    const [hr, hc] = this.hover;
    if (hr >= 0) {
      ctx.strokeStyle = t.hover; ctx.lineWidth = 2;
      ctx.strokeRect(left + hc * cell + 0.5, top + hr * cell + 0.5, cell - 2, cell - 2);
      this.readoutEl.textContent = this.readout(hr, hc);
    } else {
      this.readoutEl.textContent = "hover a cell for its row, column and value";
    }
  }
}

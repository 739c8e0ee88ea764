// @ts-check
// A labelled heatmap on a canvas (rows x columns of values in [lo, hi], viridis), with a hover readout.
// Row and column names are drawn with fillText, never inserted as HTML.
import { fmt, setupCanvas, theme, trackHover } from "./chart.js";
import { lut } from "./colormap.js";

export class Heatmap {
  /** @param {(row: number, col: number) => string} readout */
  constructor(readout) {
    this.canvas = /** @type {HTMLCanvasElement} */ (document.createElement("canvas"));
    this.readoutEl = document.createElement("div");
    this.readoutEl.className = "hw-chart-readout";
    this.el = document.createElement("div");
    this.el.append(this.canvas, this.readoutEl);
    this.readout = readout;
    this.data = null;
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
   *   rowTitle?: string, colTitle?: string, cellText?: boolean }} data
   */
  update(data) {
    this.data = data;
    this.draw();
  }

  draw() {
    const d = this.data;
    if (!d) return;
    const rows = d.rows.length; const cols = d.cols.length;
    const probe = setupCanvas(this.canvas, 10, 10);
    if (!probe) return;
    const t = theme(this.el);
    probe.font = t.font;
    const rowW = Math.min(160, Math.max(30, ...d.rows.map((s) => probe.measureText(s).width || 0)) + 8);
    const cell = Math.max(10, Math.min(44, Math.floor(520 / Math.max(rows, cols))));
    const left = rowW + (d.rowTitle ? 16 : 0); const top = 8;
    const width = left + cols * cell + 70; const height = top + rows * cell + 64;
    const ctx = setupCanvas(this.canvas, width, height);
    if (!ctx) return;
    this.geom = { left, top, cw: cell, ch: cell, rows, cols };
    let lo = d.lo; let hi = d.hi;
    if (lo === undefined || hi === undefined) {
      lo = Infinity; hi = -Infinity;
      for (const row of d.values) for (const v of row) if (v !== null && Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
    }
    const table = lut("viridis");
    ctx.font = t.font;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const v = d.values[r][c];
        if (v === null || !Number.isFinite(v)) { ctx.fillStyle = "#ddd"; } else {
          const q = Math.round(Math.max(0, Math.min(1, (v - lo) / (hi - lo || 1))) * 255) * 4;
          ctx.fillStyle = `rgb(${table[q]},${table[q + 1]},${table[q + 2]})`;
        }
        ctx.fillRect(left + c * cell, top + r * cell, cell - 1, cell - 1);
        if (d.cellText && cell >= 28 && v !== null && Number.isFinite(v)) {
          ctx.fillStyle = (v - lo) / (hi - lo || 1) > 0.6 ? "#222" : "#fff";
          ctx.textAlign = "center"; ctx.textBaseline = "middle";
          ctx.fillText(v.toFixed(2), left + c * cell + cell / 2, top + r * cell + cell / 2);
        }
      }
    }
    ctx.fillStyle = t.text;
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    d.rows.forEach((name, r) => ctx.fillText(name, left - 4, top + r * cell + cell / 2));
    ctx.save();
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    d.cols.forEach((name, c) => {
      ctx.save();
      ctx.translate(left + c * cell + cell / 2, top + rows * cell + 4);
      ctx.rotate(-Math.PI / 4);
      ctx.fillText(name, 0, 0);
      ctx.restore();
    });
    ctx.restore();
    ctx.fillStyle = t.muted;
    if (d.colTitle) { ctx.textAlign = "center"; ctx.textBaseline = "bottom"; ctx.fillText(d.colTitle, left + (cols * cell) / 2, height - 2); }
    if (d.rowTitle) {
      ctx.save(); ctx.translate(10, top + (rows * cell) / 2); ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "center"; ctx.textBaseline = "middle"; ctx.fillText(d.rowTitle, 0, 0); ctx.restore();
    }
    // colour bar
    const bx = left + cols * cell + 14; const bh = Math.min(rows * cell, 160);
    for (let i = 0; i < bh; i++) {
      const q = Math.round((1 - i / (bh - 1 || 1)) * 255) * 4;
      ctx.fillStyle = `rgb(${table[q]},${table[q + 1]},${table[q + 2]})`;
      ctx.fillRect(bx, top + i, 10, 1);
    }
    ctx.fillStyle = t.muted; ctx.textAlign = "left"; ctx.textBaseline = "middle";
    ctx.fillText(fmt(hi), bx + 14, top + 4);
    ctx.fillText(fmt(lo), bx + 14, top + bh - 4);
    const [hr, hc] = this.hover;
    if (hr >= 0) {
      ctx.strokeStyle = "#111"; ctx.lineWidth = 2;
      ctx.strokeRect(left + hc * cell + 0.5, top + hr * cell + 0.5, cell - 2, cell - 2);
      this.readoutEl.textContent = this.readout(hr, hc);
    } else {
      this.readoutEl.textContent = "";
    }
  }
}

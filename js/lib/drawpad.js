// @ts-check
// A canvas to draw an input on with the mouse or a pen: strokes are painted at high resolution and read back as
// ink per cell of a rows x cols grid (the fraction of each cell covered, in [0, 1]), the way scanned digits are
// averaged down. `onInk(ink, final)` is called while drawing (at most every `interval` ms) and at the stroke's end.

export class DrawPad {
  /**
   * @param {number} rows @param {number} cols @param {number} size CSS pixels on the long side
   * @param {(ink: Float32Array, final: boolean) => void} onInk @param {number} [interval]
   */
  constructor(rows, cols, size, onInk, interval = 40) {
    this.rows = rows;
    this.cols = cols;
    this.onInk = onInk;
    this.interval = interval;
    const scale = size / Math.max(rows, cols);
    this.canvas = document.createElement("canvas");
    this.canvas.className = "hw-drawpad";
    this.res = 16; // painted pixels per grid cell
    this.canvas.width = cols * this.res;
    this.canvas.height = rows * this.res;
    this.canvas.style.width = `${Math.round(cols * scale)}px`;
    this.canvas.style.height = `${Math.round(rows * scale)}px`;
    this.canvas.style.touchAction = "none";
    this.ctx = this.canvas.getContext("2d", { willReadFrequently: true });
    this.down = false;
    this.last = null;
    this.sentAt = 0;
    this.clear();
    const pos = (e) => {
      const r = this.canvas.getBoundingClientRect();
      return [((e.clientX - r.left) / r.width) * this.canvas.width, ((e.clientY - r.top) / r.height) * this.canvas.height];
    };
    this.handlers = {
      pointerdown: (e) => { this.down = true; this.last = pos(e); this.canvas.setPointerCapture?.(e.pointerId); this.stroke(pos(e)); },
      pointermove: (e) => { if (this.down) this.stroke(pos(e)); },
      pointerup: () => { if (this.down) { this.down = false; this.last = null; this.onInk(this.ink(), true); } },
    };
    for (const [ev, fn] of Object.entries(this.handlers)) this.canvas.addEventListener(ev, fn);
  }

  clear() {
    if (!this.ctx) return;
    this.ctx.fillStyle = "#000";
    this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
  }

  /** @param {number[]} p */
  stroke(p) {
    const ctx = this.ctx;
    if (!ctx) return;
    ctx.strokeStyle = "#fff";
    ctx.lineCap = "round";
    ctx.lineWidth = this.res * 1.1;
    ctx.beginPath();
    const [x0, y0] = this.last || p;
    ctx.moveTo(x0, y0);
    ctx.lineTo(p[0], p[1]);
    ctx.stroke();
    this.last = p;
    const now = performance.now();
    if (now - this.sentAt >= this.interval) { this.sentAt = now; this.onInk(this.ink(), false); }
  }

  /** Ink per grid cell, row-major, in [0, 1]. */
  ink() {
    const out = new Float32Array(this.rows * this.cols);
    if (!this.ctx) return out;
    const px = this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height).data;
    const w = this.canvas.width;
    for (let r = 0; r < this.rows; r++) {
      for (let c = 0; c < this.cols; c++) {
        let s = 0;
        for (let y = r * this.res; y < (r + 1) * this.res; y++) {
          for (let x = c * this.res; x < (c + 1) * this.res; x++) s += px[(y * w + x) * 4];
        }
        out[r * this.cols + c] = s / (255 * this.res * this.res);
      }
    }
    return out;
  }

  dispose() {
    for (const [ev, fn] of Object.entries(this.handlers)) this.canvas.removeEventListener(ev, fn);
  }
}

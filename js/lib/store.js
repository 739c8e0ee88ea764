// @ts-check
// The browser's copy of a monitor's history. Python sends, per series, the points from index i0 onward
// (hiddenwidgets/transport.py: History.build); applying them keeps this copy equal to Python's. Frames are
// numbered: a jump in `seq` is counted as a gap and answered by asking Python for a full resend.
import { decodeArrays } from "./codec.js";

export class SeriesMirror {
  /** @param {any} head */
  constructor(head) {
    this.name = head.name;
    this.kind = head.kind;
    this.rev = head.rev;
    this.count = 0;
    this.width = 0; // values per point in `values`
    this.bins = 0;
    this.steps = new Int32Array(0);
    this.values = new Float32Array(0);
    this.hist = new Float32Array(0);
    this.grid = null;
    this.shape = [];
    this.source = "";
    this.stride = 1;
    this.samples = 0;
  }

  /**
   * Write points [i0, i0 + n) from a frame. Returns false when they cannot be placed (a frame was lost).
   * @param {any} head @param {Record<string, Float32Array | Int32Array | Uint8Array>} arrays
   */
  apply(head, arrays) {
    if (head.i0 > this.count || (head.rev !== this.rev && head.i0 !== 0)) return false;
    const steps = arrays[head.arrays.steps];
    const values = arrays[head.arrays.stats || head.arrays.values];
    const hist = head.arrays.hist ? arrays[head.arrays.hist] : null;
    const n = steps.length / 2;
    this.width = n ? values.length / n : this.width;
    if (hist) this.bins = n ? hist.length / n : (head.grid ? head.grid[2] : this.bins);
    const need = head.i0 + n;
    this.steps = grow(this.steps, need * 2, Int32Array);
    this.values = grow(this.values, need * this.width, Float32Array);
    this.steps.set(steps, head.i0 * 2);
    this.values.set(values, head.i0 * this.width);
    if (hist) {
      this.hist = grow(this.hist, need * this.bins, Float32Array);
      this.hist.set(hist, head.i0 * this.bins);
    }
    this.count = need;
    this.rev = head.rev;
    this.grid = head.grid ?? this.grid;
    this.shape = head.shape ?? this.shape;
    this.source = head.source ?? this.source;
    this.stride = head.stride;
    this.samples = head.samples;
    return true;
  }

  /** @param {number} i point index */
  step(i) { return this.steps[2 * i + 1]; }
  /** @param {number} i @param {number} field */
  value(i, field) { return this.values[i * this.width + field]; }
  /** @param {number} i */
  histogram(i) { return this.hist.subarray(i * this.bins, (i + 1) * this.bins); }
}

/**
 * @template {Int32Array | Float32Array} T
 * @param {T} arr @param {number} length @param {{new(n: number): T}} Ctor
 * @returns {T}
 */
function grow(arr, length, Ctor) {
  if (arr.length >= length) return arr;
  const next = new Ctor(Math.max(length, arr.length * 2));
  next.set(arr);
  return next;
}

export class HistoryStore {
  constructor() {
    /** @type {Map<string, SeriesMirror>} */
    this.series = new Map();
    /** @type {Map<string, {step: number, note: string, shape: number[], kind: string, values: Float32Array}>} */
    this.details = new Map();
    this.seq = -1;
    this.received = 0;
    this.gaps = 0;
    this.step = 0;
    this.epoch = null;
    this.layers = [];
    this.statFields = [];
    this.scalarFields = [];
    this.events = [];
    /** @type {Record<string, {state?: string, message?: string, calls?: number, units?: string, source?: string,
      saturated?: number[], saturation?: string}>} */
    this.layerInfo = {};
    this.needResync = false;
    this.lastFrameAt = 0;
    this.base = null; // the last frame sent before this view received its first live frame
  }

  /** The widget's synced snapshot ({header, data}); ignored if frames already went past it. */
  loadSnapshot(snapshot) {
    if (!snapshot || !snapshot.header) return false;
    if (snapshot.header.seq < this.seq) return false;
    this.series.clear();
    this.ingest(snapshot.header, snapshot.data);
    this.seq = snapshot.header.seq;
    this.needResync = false;
    return true;
  }

  /** A live frame. Returns true when the view should ask Python for a full resend. */
  applyFrame(header, data, now = Date.now()) {
    if (this.seq >= 0 && header.seq <= this.seq) return false; // already covered by a newer snapshot
    if (this.received === 0) {
      // the first live frame: frames between the snapshot and now were sent before this view listened, so
      // they are not lost, but this copy misses their points unless they are sent again
      this.base = header.seq - 1;
      if (header.seq !== this.seq + 1) this.needResync = true;
    } else if (header.seq !== this.seq + 1) {
      this.gaps += header.seq - this.seq - 1;
      this.needResync = true;
    }
    if (header.resync) {
      this.series.clear();
      this.needResync = false;
    }
    this.received += 1;
    this.seq = header.seq;
    this.lastFrameAt = now;
    if (!this.ingest(header, data)) this.needResync = true;
    return this.needResync;
  }

  /** Frames Python has sent, as far as this view can tell (sequence numbers start at 0). */
  get sentKnown() { return this.seq + 1; }

  /** Frames sent since this view started listening: what it should have received. */
  get expected() { return this.base === null ? 0 : this.seq - this.base; }

  ingest(header, data) {
    const arrays = decodeArrays(header.index, data);
    let ok = true;
    this.step = header.step;
    this.epoch = header.epoch;
    this.layers = header.layers;
    this.statFields = header.stat_fields;
    this.scalarFields = header.scalar_fields;
    this.events = header.events || [];
    if (header.layer_info) this.layerInfo = header.layer_info;
    for (const head of header.series) {
      const key = `${head.kind}:${head.name}`;
      let s = this.series.get(key);
      if (!s || (head.i0 === 0 && head.rev !== s.rev)) {
        s = new SeriesMirror(head);
        this.series.set(key, s);
      }
      ok = s.apply(head, arrays) && ok;
    }
    for (const d of header.details) {
      this.details.set(d.layer, { step: d.step, note: d.note, shape: d.shape, kind: d.kind || "",
        values: /** @type {Float32Array} */ (arrays[d.array]) });
    }
    return ok;
  }

  /** @param {string} name */
  layer(name) { return this.series.get(`layer:${name}`); }

  scalars() { return [...this.series.values()].filter((s) => s.kind === "scalar"); }

  /** @param {string} field */
  statIndex(field) { return this.statFields.indexOf(field); }
}

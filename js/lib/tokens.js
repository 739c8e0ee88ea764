// @ts-check
// What the transformer views share: token text as a person reads it, the width of the view's container, a
// debounced callback, a pager, and the {header, data} state decoded into typed arrays. Token text only ever goes
// into the DOM with textContent, or onto a canvas with fillText.
import { decodeArrays } from "./codec.js";
import { h } from "./chart.js";

/** A token as read: GPT-2's byte-level space (Ġ) and newline (Ċ) shown as ␣ and ⏎, WordPiece's ## kept. */
export function showToken(s) {
  return String(s).replace(/^Ġ/, "␣").replace(/Ġ/g, " ").replace(/Ċ/g, "⏎").replace(/\n/g, "⏎");
}

/** Shorten `s` to fit `max` pixels in `ctx`'s font (with an ellipsis). */
export function fitText(ctx, s, max) {
  if (ctx.measureText(s).width <= max) return s;
  let lo = 0; let hi = s.length;
  while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (ctx.measureText(`${s.slice(0, mid)}…`).width <= max) lo = mid; else hi = mid - 1; }
  return lo > 0 ? `${s.slice(0, lo)}…` : "";
}

/** Call `cb(width)` now and whenever `el`'s width changes; returns the function that stops watching. */
export function watchWidth(el, cb) {
  let last = -1;
  const fire = () => { const w = Math.floor(el.clientWidth || 640); if (w !== last) { last = w; cb(w); } };
  if (typeof ResizeObserver === "undefined") { fire(); return () => {}; }
  const ro = new ResizeObserver(fire);
  ro.observe(el);
  fire();
  return () => ro.disconnect();
}

/** `fn` called `ms` after the last of a burst of calls; `.cancel()` drops a pending call. */
export function debounce(fn, ms) {
  /** @type {any} */ let timer = null;
  const call = (/** @type {any[]} */ ...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
  call.cancel = () => clearTimeout(timer);
  return call;
}

/** Prev / next buttons and "a–b of n"; `onPage(page)` when clicked. */
export class Pager {
  constructor(label, onPage) {
    this.el = h("span", "hw-tx-pager");
    this.prev = h("button", "hw-btn", "‹");
    this.next = h("button", "hw-btn", "›");
    this.text = h("span", "hw-tx-pager-text");
    this.label = label;
    this.page = 0; this.pages = 1;
    this.prev.addEventListener("click", () => { if (this.page > 0) onPage(this.page - 1); });
    this.next.addEventListener("click", () => { if (this.page < this.pages - 1) onPage(this.page + 1); });
    this.el.append(this.prev, this.text, this.next);
  }

  /** @param {number} page @param {number} size @param {number} total */
  set(page, size, total) {
    this.pages = Math.max(1, Math.ceil(total / size));
    this.page = Math.min(page, this.pages - 1);
    const a = this.page * size; const b = Math.min(total, a + size);
    this.text.textContent = `${this.label} ${a + 1}–${b} of ${total}`;
    this.el.style.display = this.pages > 1 ? "" : "none";
    /** @type {HTMLButtonElement} */ (this.prev).disabled = this.page === 0;
    /** @type {HTMLButtonElement} */ (this.next).disabled = this.page >= this.pages - 1;
  }
}

/** {header, data} from Python → {header, arrays} (null when empty). */
export function decodeState(state) {
  if (!state || !state.header) return null;
  return { header: state.header, arrays: decodeArrays(state.header.index || {}, state.data || new ArrayBuffer(0)) };
}

/** A step slider over the recorded training steps; `onStep(step)` with -1 for "latest". */
export class StepSlider {
  constructor(onStep) {
    this.el = h("label", "hw-tx-steps");
    this.input = /** @type {HTMLInputElement} */ (h("input"));
    this.input.type = "range"; this.input.min = "0";
    this.text = h("span", "hw-tx-steps-text");
    this.el.append(h("span", "", "training step "), this.input, this.text);
    this.steps = [];
    this.input.addEventListener("input", () => {
      const i = Number(this.input.value);
      onStep(i >= this.steps.length - 1 ? -1 : this.steps[i]);
    });
  }

  /** @param {number[]} steps @param {number} shown @param {number} thinned */
  set(steps, shown, thinned) {
    this.steps = steps;
    this.el.style.display = steps.length > 1 ? "" : "none";
    this.input.max = String(Math.max(0, steps.length - 1));
    const i = shown < 0 ? steps.length - 1 : steps.indexOf(shown);
    this.input.value = String(Math.max(0, i));
    const step = shown < 0 ? steps[steps.length - 1] : shown;
    this.text.textContent = `${step ?? "–"}${shown < 0 ? " (latest)" : ""} · ${steps.length} recorded` +
      (thinned ? ` (${thinned} older ones thinned)` : "");
  }
}

export const TX_CSS = `
.hw-tx-controls { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; margin: 4px 0 8px; font-size: 12px; }
.hw-tx-text { font: inherit; font-family: var(--jp-code-font-family, ui-monospace, monospace); font-size: 12px;
  min-width: 260px; flex: 1; padding: 2px 6px; border: 1px solid var(--jp-border-color1, #c8ced5);
  background: var(--jp-layout-color1, #fff); color: inherit; border-radius: 4px; }
.hw-tx-pager { display: inline-flex; gap: 4px; align-items: center; font-size: 12px; }
.hw-tx-pager-text, .hw-tx-steps-text { font-variant-numeric: tabular-nums; color: var(--hw-muted); }
.hw-tx-steps { display: inline-flex; gap: 6px; align-items: center; font-size: 12px; }
.hw-tx-readout { font-size: 12px; min-height: 18px; font-variant-numeric: tabular-nums; white-space: pre-wrap; }
.hw-tx-status { font-size: 12px; color: var(--hw-muted); margin-bottom: 4px; }
.hw-tx-canvas { display: block; cursor: crosshair; }
`;

// @ts-check
// The visual system every view draws through: a root element sized by its container and themed by JupyterLab,
// redrawn when either changes, and a record of where canvas text was drawn (so label overlaps can be checked
// and avoided).
//
//   const frame = mountView(root, "projector", (width, theme) => { ...draw everything at this width... });
//   frame.schedule();   // ask for a redraw at the next animation frame
//   frame.dispose();    // remove the observers
//
// Width comes from the root's own box (a ResizeObserver on it), never from a fixed number; the theme from
// JupyterLab's CSS variables (--jp-*), re-read when the body's data-jp-theme-* attributes change (a live theme
// switch) or when the system's prefers-color-scheme changes (static pages, which define the same variables for
// light and dark in their own style sheet).

/**
 * @typedef {{ dark: boolean, text: string, muted: string, grid: string, axis: string, bg: string, bg2: string,
 *   accent: string, warn: string, bad: string, missing: string, hover: string, font: string, fontSize: number,
 *   mutedPull: number }} Theme
 */

import { mutedPull, parseColour, over, readableMuted } from "./contrast.js";

/** Muted text is pulled at least this far from --jp-ui-font-color2 towards the body text (lib/style.js). */
export const MUTED_PULL = 0.3;

const FONT_FAMILY = "system-ui, -apple-system, 'Segoe UI', sans-serif";

/** Whether the page is dark: JupyterLab's body attribute where there is one, else the system's preference. */
export function isDark() {
  if (typeof document === "undefined") return false;
  const light = document.body && document.body.dataset ? document.body.dataset.jpThemeLight : undefined;
  if (light === "true") return false;
  if (light === "false") return true;
  const mm = typeof window !== "undefined" && typeof window.matchMedia === "function"
    ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  return !!(mm && mm.matches);
}

/**
 * The opaque colour [r, g, b] behind `el`: its own and its ancestors' backgrounds painted over one another, on
 * `page` (the page's colour) where none is opaque.
 * @param {Element} el @param {number[]} page
 */
export function backgroundBehind(el, page) {
  const layers = [];
  for (let e = /** @type {Element | null} */ (el); e; e = e.parentElement) {
    const c = parseColour(getComputedStyle(e).backgroundColor);
    if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
  }
  let colour = page;
  for (let i = layers.length - 1; i >= 0; i--) colour = over(layers[i], colour);
  return colour;
}

/**
 * The colours to draw with, from the theme's CSS variables as they apply to `el` (fallbacks for light/dark).
 * `muted` is the theme's secondary text colour (--jp-ui-font-color2) pulled MUTED_PULL towards the body text,
 * and further where that still reads below WCAG AA (4.5:1) on what it is drawn on: the background behind `el`,
 * and that background under the neutral tint of chips and badges (--hw-neutral-tint). JupyterLab's own
 * font-color2 gives 4.6:1 on white, 4.4:1 on a chip, 3.0-4.5:1 on --jp-layout-color2/3. `mutedPull` is the
 * fraction used; mountView hands it to the view's CSS (--hw-muted-pull), whose --hw-muted mixes the same two
 * theme colours, alpha kept, so that muted text on a lighter box (a card, a tile) stays as readable.
 */
export function readTheme(el) {
  const dark = isDark();
  const cs = typeof getComputedStyle === "function" && el ? getComputedStyle(el) : null;
  const v = (name, light, darkValue) => (cs && cs.getPropertyValue(name).trim()) || (dark ? darkValue : light);
  const text = v("--jp-ui-font-color1", "#1f2328", "#e6e6e6");
  const bg = v("--jp-layout-color0", "#ffffff", "#111111");
  const secondary = v("--jp-ui-font-color2", "#59636e", "#b4b4b4");
  const page = parseColour(bg);
  let behind = page ? page.slice(0, 3) : dark ? [17, 17, 17] : [255, 255, 255];
  let grounds = [behind];
  if (cs && el) {
    behind = backgroundBehind(el, behind);
    const tint = parseColour(cs.getPropertyValue("--hw-neutral-tint").trim());
    grounds = tint ? [behind, over(tint, behind)] : [behind];
  }
  const pull = mutedPull(secondary, text, grounds, 4.5, MUTED_PULL);
  const muted = readableMuted(secondary, text, grounds, 4.5, pull);
  return {
    dark,
    text,
    muted,
    mutedPull: pull,
    grid: dark ? "rgba(255,255,255,0.12)" : "rgba(0,0,0,0.09)",
    axis: v("--jp-border-color1", "#8c959f", "#7a7a7a"),
    bg,
    bg2: v("--jp-layout-color2", "#eef1f4", "#2a2a2a"),
    accent: dark ? "#6f9cf0" : "#2f5fc4",
    warn: dark ? "#f0a04b" : "#a15c00",
    bad: dark ? "#ff8a65" : "#c2410c",
    missing: dark ? "#3a3a3a" : "#d9d9d9",
    hover: dark ? "#ffffff" : "#111111",
    font: `11px ${FONT_FAMILY}`,
    fontSize: 11,
  };
}

/** @type {Set<() => void>} */
const themeListeners = new Set();
let themeWatch = /** @type {null | (() => void)} */ (null);

/** Call `cb` whenever the theme may have changed; returns the function that stops it. */
export function onThemeChange(cb) {
  themeListeners.add(cb);
  if (!themeWatch) {
    const fire = () => { for (const f of [...themeListeners]) f(); };
    const offs = [];
    if (typeof MutationObserver !== "undefined" && typeof document !== "undefined" && document.body) {
      const mo = new MutationObserver(fire);
      mo.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "data-jp-theme-name", "class"] });
      offs.push(() => mo.disconnect());
    }
    const mm = typeof window !== "undefined" && typeof window.matchMedia === "function"
      ? window.matchMedia("(prefers-color-scheme: dark)") : null;
    if (mm && typeof mm.addEventListener === "function") {
      mm.addEventListener("change", fire);
      offs.push(() => mm.removeEventListener("change", fire));
    }
    themeWatch = () => { for (const off of offs) off(); };
  }
  return () => {
    themeListeners.delete(cb);
    if (!themeListeners.size && themeWatch) { themeWatch(); themeWatch = null; }
  };
}

/** The width available to a view: its root's content box (a fallback where layout is unavailable). */
export function widthOf(el, fallback = 900) {
  const w = el && el.clientWidth;
  return Math.max(160, Math.floor(w || fallback));
}

/**
 * Mount the visual system on a view's root: marks it with data-hw-view, exposes the label boxes drawn on its
 * canvases, and calls `draw(width, theme)` at the next animation frame after a resize, a theme change or
 * `schedule()`.
 * @param {HTMLElement} root @param {string} name @param {(width: number, theme: Theme) => void} draw
 */
export function mountView(root, name, draw) {
  root.dataset.hwView = name;
  exposeLabelBoxes(root);
  let raf = 0;
  let lastWidth = -1;
  const run = () => {
    raf = 0;
    lastWidth = widthOf(root);
    const theme = readTheme(root);
    // the view's CSS mixes its muted text (--hw-muted, lib/style.js) as far as readTheme found it must be
    if (root.style && typeof root.style.setProperty === "function") {
      root.style.setProperty("--hw-muted-pull", `${Math.round(theme.mutedPull * 100)}%`);
    }
    draw(lastWidth, theme);
  };
  const schedule = () => {
    if (raf) return;
    if (typeof requestAnimationFrame === "function") raf = requestAnimationFrame(run);
    else run();
  };
  const ro = typeof ResizeObserver !== "undefined" ? new ResizeObserver(() => {
    const w = widthOf(root);
    if (w !== lastWidth) { lastWidth = w; schedule(); }
  }) : null;
  if (ro) ro.observe(root);
  // a theme switch swaps style sheets: the layout can be in between for a moment (wider or narrower than it
  // settles), so draw again once it has settled
  const timers = new Set();
  const offTheme = onThemeChange(() => {
    schedule();
    for (const ms of [250, 1000]) {
      const id = setTimeout(() => { timers.delete(id); schedule(); }, ms);
      timers.add(id);
    }
  });
  return {
    schedule,
    /** draw now (tests and first paint) */
    now: () => { if (raf && typeof cancelAnimationFrame === "function") cancelAnimationFrame(raf); run(); },
    dispose: () => {
      if (raf && typeof cancelAnimationFrame === "function") cancelAnimationFrame(raf);
      raf = 0;
      if (ro) ro.disconnect();
      for (const id of timers) clearTimeout(id);
      offTheme();
    },
  };
}

// -- labels on canvases ----------------------------------------------------------------------------------------

/**
 * @typedef {{ text: string, x: number, y: number, w: number, h: number }} Box  CSS pixels
 */

/** Define root.__hwLabelBoxes: every canvas label under root, in viewport CSS pixels (for overlap checks). */
export function exposeLabelBoxes(root) {
  if (Object.getOwnPropertyDescriptor(root, "__hwLabelBoxes")) return;
  Object.defineProperty(root, "__hwLabelBoxes", {
    configurable: true,
    get() {
      const out = [];
      for (const canvas of root.querySelectorAll("canvas")) {
        const boxes = /** @type {any} */ (canvas).__hwLabels;
        if (!boxes || !boxes.length) continue;
        const r = canvas.getBoundingClientRect();
        if (!r.width || !r.height) continue; // hidden
        for (const b of boxes) out.push({ text: b.text, x: r.left + b.x, y: r.top + b.y, w: b.w, h: b.h });
      }
      return out;
    },
  });
}

/** Whether two boxes overlap (touching edges do not count). @param {Box} a @param {Box} b */
export function overlaps(a, b, gap = 0) {
  return a.x < b.x + b.w + gap && b.x < a.x + a.w + gap && a.y < b.y + b.h + gap && b.y < a.y + a.h + gap;
}

/**
 * Text on a canvas with its box recorded: `place` refuses (returns null) text that would overlap text placed
 * before it, so the first placed wins (place the important labels first). `attach` hands the boxes to the canvas.
 */
export class Labels {
  /** @param {CanvasRenderingContext2D} ctx @param {number} [size] font size in CSS pixels */
  constructor(ctx, size = 11) {
    this.ctx = ctx;
    this.size = size;
    /** @type {Box[]} */
    this.boxes = [];
  }

  /** Width of `text` in the current font. @param {string} text */
  width(text) { return this.ctx.measureText(text).width || text.length * this.size * 0.55; }

  /** `text` shortened with an ellipsis to at most `max` pixels. @param {string} text @param {number} max */
  fit(text, max) {
    if (this.width(text) <= max) return text;
    let lo = 0; let hi = text.length;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (this.width(`${text.slice(0, mid)}…`) <= max) lo = mid; else hi = mid - 1; }
    return lo ? `${text.slice(0, lo)}…` : "…";
  }

  /**
   * The box `text` would take at (x, y) with the context's current textAlign / textBaseline, rotated by
   * `angle` radians about (x, y) (0 or -π/2 exactly; other angles get their bounding box).
   */
  box(text, x, y, angle = 0) {
    const w = this.width(text); const hgt = this.size * 1.2;
    const align = this.ctx.textAlign; const base = this.ctx.textBaseline;
    const dx = align === "center" ? -w / 2 : align === "right" || align === "end" ? -w : 0;
    const dy = base === "middle" ? -hgt / 2 : base === "bottom" || base === "alphabetic" || base === "ideographic"
      ? -hgt * (base === "bottom" ? 1 : 0.8) : 0;
    if (!angle) return { text, x: x + dx, y: y + dy, w, h: hgt };
    const corners = [[dx, dy], [dx + w, dy], [dx, dy + hgt], [dx + w, dy + hgt]].map(([px, py]) => [
      x + px * Math.cos(angle) - py * Math.sin(angle), y + px * Math.sin(angle) + py * Math.cos(angle)]);
    const xs = corners.map((c) => c[0]); const ys = corners.map((c) => c[1]);
    return { text, x: Math.min(...xs), y: Math.min(...ys), w: Math.max(...xs) - Math.min(...xs), h: Math.max(...ys) - Math.min(...ys) };
  }

  /** Whether `b` would overlap a placed label. @param {Box} b */
  collides(b, gap = 1) { return this.boxes.some((o) => overlaps(o, b, gap)); }

  /**
   * Draw `text` unless it would overlap a label placed before (then return null).
   * `halo`: a colour (the background's) drawn around the letters first, for text over data (points, lines).
   * @param {string} text @param {number} x @param {number} y
   * @param {{ angle?: number, force?: boolean, halo?: string }} [opts]
   */
  place(text, x, y, opts = {}) {
    const angle = opts.angle || 0;
    const b = this.box(text, x, y, angle);
    if (!opts.force && this.collides(b)) return null;
    const c = this.ctx;
    c.save();
    if (angle) { c.translate(x, y); c.rotate(angle); x = 0; y = 0; }
    if (opts.halo && typeof c.strokeText === "function") {
      c.strokeStyle = opts.halo; c.lineWidth = 3; c.lineJoin = "round"; c.setLineDash([]);
      c.strokeText(text, x, y);
    }
    c.fillText(text, x, y);
    c.restore();
    this.boxes.push(b);
    return b;
  }

  /** Record a region no label may cover (e.g. a legend drawn by hand). @param {Box} b */
  reserve(b) { this.boxes.push({ ...b, text: "" }); }

  /** Give the boxes (without reserved regions) to the canvas for root.__hwLabelBoxes. @param {HTMLCanvasElement} canvas */
  attach(canvas) { /** @type {any} */ (canvas).__hwLabels = this.boxes.filter((b) => b.text); }
}

// @ts-check
// Text contrast by WCAG 2.x (https://www.w3.org/TR/WCAG21/#dfn-contrast-ratio): relative luminance of sRGB
// colours, their contrast ratio, black or white text for a coloured cell, and a muted text colour pulled towards
// the body text until it reads on the background it is drawn on. The one implementation the views use.

/** WCAG AA for body text. */
export const AA = 4.5;

/** sRGB channel in [0, 1] to linear light (IEC 61966-2-1, the threshold WCAG 2.x writes as 0.04045). */
export const toLinear = (c) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);

/** Relative luminance of an sRGB colour given as [r, g, b] in 0-255. @param {ArrayLike<number>} rgb */
export function luminance(rgb) {
  return 0.2126 * toLinear(rgb[0] / 255) + 0.7152 * toLinear(rgb[1] / 255) + 0.0722 * toLinear(rgb[2] / 255);
}

/** Contrast ratio (1-21) of two opaque colours [r, g, b] in 0-255. */
export function contrastRatio(a, b) {
  const la = luminance(a); const lb = luminance(b);
  return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
}

/**
 * Black or white, whichever contrasts more with the colour `rgb` (0-255) it is written on. Black wins exactly when
 * the cell's luminance is above 0.179; either way the ratio is at least 4.58:1, on any colour.
 * @param {ArrayLike<number>} rgb @returns {"#000000" | "#ffffff"}
 */
export function inkOn(rgb) {
  const l = luminance(rgb);
  return (l + 0.05) / 0.05 >= 1.05 / (l + 0.05) ? "#000000" : "#ffffff";
}

/**
 * [r, g, b, a] (0-255, alpha 0-1) of a CSS colour written as #rgb, #rrggbb, rgb() or rgba(); null otherwise.
 * @param {string | null | undefined} css
 */
export function parseColour(css) {
  if (typeof css !== "string") return null;
  const s = css.trim();
  const hex = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(s);
  if (hex) {
    const x = hex[1].length === 3 ? hex[1].replace(/./g, "$&$&") : hex[1];
    return [parseInt(x.slice(0, 2), 16), parseInt(x.slice(2, 4), 16), parseInt(x.slice(4, 6), 16), 1];
  }
  const fn = /^rgba?\(([^)]+)\)$/i.exec(s);
  if (!fn) return null;
  const parts = fn[1].split(/[\s,/]+/).filter(Boolean);
  if (parts.length < 3) return null;
  const num = (p, scale) => (p.endsWith("%") ? (parseFloat(p) / 100) * scale : parseFloat(p));
  const out = [num(parts[0], 255), num(parts[1], 255), num(parts[2], 255), parts.length > 3 ? num(parts[3], 1) : 1];
  return out.every(Number.isFinite) ? out : null;
}

/** `fg` (with its alpha) painted over the opaque `bg`: an opaque [r, g, b]. */
export function over(fg, bg) {
  const a = fg.length > 3 ? fg[3] : 1;
  return [0, 1, 2].map((i) => a * fg[i] + (1 - a) * bg[i]);
}

/** #rrggbb of [r, g, b] in 0-255. */
export function hex(rgb) {
  return `#${[0, 1, 2].map((i) => Math.round(Math.max(0, Math.min(255, rgb[i]))).toString(16).padStart(2, "0")).join("")}`;
}

/**
 * How far (a fraction, in 5% steps, at least `from`) a muted text colour must be pulled towards the body text to
 * read at `min`:1 on every background in `backgrounds` (opaque [r, g, b]): the first is the one the text is drawn
 * on, the others tints laid over it, where the same colour must read too. 1 (the body text) if nothing less does.
 * Colours are CSS strings (alpha allowed: painted over the first background).
 * @param {string} muted @param {string} text @param {number[][]} backgrounds @param {number} [min] @param {number} [from]
 */
export function mutedPull(muted, text, backgrounds, min = AA, from = 0) {
  const m = parseColour(muted); const t = parseColour(text);
  if (!m || !t || !backgrounds.length) return from;
  for (let k = Math.ceil(from * 20 - 1e-9); k <= 20; k++) {
    const c = mixed(m, t, k / 20, backgrounds[0]);
    if (backgrounds.every((bg) => contrastRatio(c, bg) >= min)) return k / 20;
  }
  return 1;
}

/** `muted` pulled the fraction `f` towards `text` ([r, g, b, a] each), painted over `bg`: opaque [r, g, b]. */
function mixed(muted, text, f, bg) {
  return over([0, 1, 2, 3].map((i) => (1 - f) * muted[i] + f * text[i]), bg);
}

/**
 * The muted colour of `mutedPull` as #rrggbb, opaque against the first background (for text drawn on a canvas).
 * @param {string} muted @param {string} text @param {number[][]} backgrounds @param {number} [min] @param {number} [from]
 */
export function readableMuted(muted, text, backgrounds, min = AA, from = 0) {
  const m = parseColour(muted); const t = parseColour(text);
  if (!m || !t || !backgrounds.length) return muted;
  return hex(mixed(m, t, mutedPull(muted, text, backgrounds, min, from), backgrounds[0]));
}

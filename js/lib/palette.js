// @ts-check
// The categorical palette of every view. Twelve colours taken from Okabe & Ito's colour-universal-design set
// (Okabe & Ito 2008, "Color Universal Design") and Paul Tol's "bright", "light", "muted" and "dark" schemes
// (Tol 2021, "Colour schemes", SRON/EPS/TN/09-002), chosen and ordered by hand-written max-min search (greedy,
// then swaps) to keep every pair apart for normal vision and under simulated deuteranopia and protanopia
// (Machado et al. 2009): the smallest CIEDE2000 difference among the 12 is 9.7 (js/test/palette.test.js), among
// the first 10 it is 10.6. Lightness L* stays within 42-85, so each colour shows on white and on a dark page.
// Beyond 12 classes colours repeat: views add a shape (SHAPES) or the class's name so classes stay apart.

export const CATEGORICAL = [
  "#e69f00", // orange (Okabe-Ito)
  "#0072b2", // blue (Okabe-Ito)
  "#99ddff", // light cyan (Tol light)
  "#666633", // olive (Tol dark)
  "#ee6677", // red (Tol bright)
  "#ffaabb", // pink (Tol light)
  "#aa3377", // purple (Tol bright)
  "#77aadd", // light blue (Tol light)
  "#cc79a7", // reddish purple (Okabe-Ito)
  "#ddcc77", // sand (Tol muted)
  "#009e73", // bluish green (Okabe-Ito)
  "#d55e00", // vermillion (Okabe-Ito)
];

/** Marker shapes, one per round of the palette (class k gets SHAPES[floor(k / 12) % SHAPES.length]). */
export const SHAPES = ["square", "ring", "cross", "diamond"];

/** Colour of class `k`. @param {number} k */
export function categorical(k) { return CATEGORICAL[((k % CATEGORICAL.length) + CATEGORICAL.length) % CATEGORICAL.length]; }

/** Shape of class `k`: the same colour comes back with another shape. @param {number} k */
export function shapeOf(k) { return SHAPES[Math.floor(Math.max(0, k) / CATEGORICAL.length) % SHAPES.length]; }

/** A glyph of the shape for legends (text, so it reads in any theme). @param {string} shape */
export function shapeGlyph(shape) { return { square: "■", ring: "○", cross: "✕", diamond: "◆" }[shape] || "■"; }

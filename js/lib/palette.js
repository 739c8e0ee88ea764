// @ts-check
// The categorical palette of every view: twelve colours from Okabe & Ito's colour-universal-design set (Okabe &
// Ito 2008, "Color Universal Design") and Paul Tol's schemes (Tol 2021, "Colour schemes", SRON/EPS/TN/09-002:
// vibrant, light, muted, medium-contrast, bright and discrete rainbow), chosen among those published colours
// (L* 36-88, greys left out) by a max-min search (greedy, then swaps) to keep every pair apart for normal vision
// and under simulated deuteranopia and protanopia (Machado et al. 2009, severity 1): the smallest CIEDE2000
// difference among the 12 is 11.3 normal, 11.9 deuteranopia, 11.4 protanopia (js/test/palette.test.js checks
// >= 10). Ordered so the first k stay furthest apart (blue and vermillion first).
// Beyond 12 classes colours repeat: views add a shape (SHAPES) or the class's name so classes stay apart.

export const CATEGORICAL = [
  "#0077bb", // blue (Tol vibrant)
  "#d55e00", // vermillion (Okabe-Ito)
  "#99ddff", // light cyan (Tol light)
  "#cae0ab", // pale green (Tol discrete rainbow 17)
  "#994455", // dark red (Tol medium-contrast)
  "#f6c141", // yellow (Tol discrete rainbow 20)
  "#cc6677", // rose (Tol muted)
  "#77aadd", // light blue (Tol light)
  "#ee8866", // light orange (Tol light)
  "#ee99aa", // light red (Tol medium-contrast)
  "#cc79a7", // reddish purple (Okabe-Ito)
  "#aa3377", // purple (Tol bright)
];

/** Marker shapes, one per round of the palette (class k gets SHAPES[floor(k / 12) % SHAPES.length]). */
export const SHAPES = ["square", "ring", "cross", "diamond"];

/** Colour of class `k`. @param {number} k */
export function categorical(k) { return CATEGORICAL[((k % CATEGORICAL.length) + CATEGORICAL.length) % CATEGORICAL.length]; }

/** Shape of class `k`: the same colour comes back with another shape. @param {number} k */
export function shapeOf(k) { return SHAPES[Math.floor(Math.max(0, k) / CATEGORICAL.length) % SHAPES.length]; }

/** A glyph of the shape for legends (text, so it reads in any theme). @param {string} shape */
export function shapeGlyph(shape) { return { square: "■", ring: "○", cross: "✕", diamond: "◆" }[shape] || "■"; }

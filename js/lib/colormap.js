// @ts-check
// Perceptually uniform colour maps as 256-entry lookup tables, built by linear interpolation between anchors.
// viridis: the sequential map of matplotlib (van der Walt & Smith), anchors at its 10 even steps.
// coolwarm-like diverging map (Moreland 2009): blue - neutral grey - red, equal lightness on both sides.
// heat: black - red - yellow - white, lightness rising throughout (for maps of magnitudes).

/** @type {Record<string, string[]>} */
const ANCHORS = {
  viridis: ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"],
  heat: ["#000000", "#3b0f0f", "#7a1a12", "#b8320e", "#e05d10", "#f59a2a", "#fbd25b", "#fff7bc", "#ffffff"],
  diverging: ["#3b4cc0", "#6788ee", "#9abbff", "#c9d7f0", "#dddddd", "#f2cbb7", "#f7a889", "#e26952", "#b40426"],
};

/** @type {Map<string, Uint8ClampedArray>} */
const cache = new Map();

/** @param {string} hex */
function rgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

/**
 * A 256 x RGBA lookup table.
 * @param {"viridis" | "diverging" | "heat"} name
 */
export function lut(name) {
  let table = cache.get(name);
  if (table) return table;
  const anchors = ANCHORS[name];
  if (!anchors) throw new Error(`unknown colour map ${name}; known: ${Object.keys(ANCHORS).join(", ")}`);
  const stops = anchors.map(rgb);
  table = new Uint8ClampedArray(256 * 4);
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * (stops.length - 1);
    const k = Math.min(Math.floor(t), stops.length - 2);
    const f = t - k;
    for (let c = 0; c < 3; c++) table[i * 4 + c] = Math.round(stops[k][c] * (1 - f) + stops[k + 1][c] * f);
    table[i * 4 + 3] = 255;
  }
  cache.set(name, table);
  return table;
}

/**
 * CSS colour for t in [0, 1].
 * @param {"viridis" | "diverging" | "heat"} name @param {number} t @param {number} [alpha]
 */
export function color(name, t, alpha = 1) {
  const table = lut(name);
  const i = Math.max(0, Math.min(255, Math.round(t * 255))) * 4;
  return `rgba(${table[i]},${table[i + 1]},${table[i + 2]},${alpha})`;
}

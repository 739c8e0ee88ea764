// @ts-check
// What deserves a user's attention in a layer's statistics, with the threshold stated in the text. The numbers
// are Python's (nonfinite count, dead fraction, gradient norm per sampled step; the share of saturated units in
// the layer's info, hiddenwidgets/pipeline/summaries.py); this only compares them with the thresholds below.
import { fmt, pct } from "./chart.js";

/** Thresholds, stated in every warning's text. */
export const THRESHOLDS = {
  /** share of a layer's units dead (never > 0 in the dead-unit window) at the latest step */
  dead: 0.25,
  /** share of a layer's units saturated (at a bound of a bounded activation) at the latest sampled step */
  saturated: 0.25,
  /** latest gradient norm over the median of the layer's gradient norms so far */
  exploding: 100,
  /** median of the gradient norms so far over the latest one */
  vanishing: 1000,
  /** sampled steps of gradient norms needed before the ratios above are judged */
  minSteps: 5,
};

/**
 * Warnings for one layer. `s.info`: what Python says of the layer (saturated: [step, share of units saturated],
 * saturation: the bounds and rule, in words; present only for layers whose type states their output range).
 * @param {{ count: number, value: (i: number, field: string) => number, has: (field: string) => boolean,
 *   step: (i: number) => number, info?: { saturated?: number[], saturation?: string } }} s
 * @returns {{ kind: string, level: string, text: string, detail: string }[]} level: "bad" or "warn"
 */
export function layerWarnings(s) {
  const out = [];
  if (!s.count) return out;
  const last = s.count - 1;
  if (s.has("nonfinite")) {
    let total = 0; let first = -1;
    for (let i = 0; i < s.count; i++) { const v = s.value(i, "nonfinite") || 0; total += v; if (v > 0 && first < 0) first = i; }
    if (total > 0) {
      out.push({ kind: "nonfinite", level: "bad", text: `NaN or inf: ${fmt(total)} values since step ${fmt(s.step(first))}`,
        detail: "any NaN or inf in the layer's output is flagged (threshold: 1 value)" });
    }
  }
  if (s.has("dead_frac")) {
    const dead = s.value(last, "dead_frac");
    if (Number.isFinite(dead) && dead >= THRESHOLDS.dead) {
      out.push({ kind: "dead", level: "warn", text: `${pct(dead)} of units dead (flagged at ${pct(THRESHOLDS.dead)} or more)`,
        detail: "a unit is dead when it was never above 0 over the recent sampled batches (the dead-unit window); "
          + `flagged when ${pct(THRESHOLDS.dead)} or more of the layer's units are dead at the latest step` });
    }
  }
  const sat = s.info && Array.isArray(s.info.saturated) ? s.info.saturated : null;
  if (sat && Number.isFinite(sat[1]) && sat[1] >= THRESHOLDS.saturated) {
    out.push({ kind: "saturated", level: "warn",
      text: `${pct(sat[1])} of units saturated at step ${fmt(sat[0])} (flagged at ${pct(THRESHOLDS.saturated)} or more)`,
      detail: `${s.info && s.info.saturation ? s.info.saturation : "units at a bound of the layer's output range"}; `
        + `flagged when ${pct(THRESHOLDS.saturated)} or more of the layer's units are saturated at the latest sampled step` });
  }
  if (s.has("grad_norm")) {
    const g = [];
    for (let i = 0; i < s.count; i++) { const v = s.value(i, "grad_norm"); if (Number.isFinite(v)) g.push(v); }
    if (g.length >= THRESHOLDS.minSteps) {
      const sorted = g.slice().sort((a, b) => a - b);
      const median = sorted[Math.floor((sorted.length - 1) / 2)];
      const latest = g[g.length - 1];
      if (median > 0 && latest > THRESHOLDS.exploding * median) {
        out.push({ kind: "exploding", level: "bad", text: `exploding gradient: norm ${fmt(latest)}, ${fmt(latest / median)}× its median (flagged above ${THRESHOLDS.exploding}×)`,
          detail: `latest gradient norm over the median of this layer's gradient norms so far (${fmt(median)}); flagged above ${THRESHOLDS.exploding}×` });
      } else if (median > 0 && latest * THRESHOLDS.vanishing < median) {
        out.push({ kind: "vanishing", level: "warn", text: `vanishing gradient: norm ${fmt(latest)}, below 1/${THRESHOLDS.vanishing} of its median`,
          detail: `latest gradient norm against the median of this layer's gradient norms so far (${fmt(median)}); flagged below 1/${THRESHOLDS.vanishing}` });
      }
    }
  }
  return out;
}

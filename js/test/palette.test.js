import { test } from "node:test";
import assert from "node:assert/strict";
import { deltaE2000, minDistance, simulate } from "../lib/cvd.js";
import { CATEGORICAL, shapeOf } from "../lib/palette.js";

test("CIEDE2000 matches Sharma, Wu & Dalal's published test pairs", () => {
  // pairs 1, 7 and 17 of the paper's Table 1 (L*a*b* -> dE00)
  assert.equal(deltaE2000([50, 2.6772, -79.7751], [50, 0, -82.7485]).toFixed(4), "2.0425");
  assert.equal(deltaE2000([50, 0, 0], [50, -1, 2]).toFixed(4), "2.3669");
  assert.equal(deltaE2000([22.7233, 20.0904, -46.694], [23.0331, 14.973, -42.5619]).toFixed(4), "2.0373");
});

test("the Machado simulation leaves grey alone and merges red and green for deuteranopia", () => {
  const grey = simulate([0.5, 0.5, 0.5], "deuteranopia");
  for (const c of grey) assert.ok(Math.abs(c - 0.5) < 0.01, String(grey));
  assert.ok(minDistance(["#ff0000", "#00ff00"], "none") > 50);
  assert.ok(minDistance(["#d62728", "#2ca02c"], "deuteranopia") < minDistance(["#d62728", "#2ca02c"], "none") / 2);
});

test("the categorical palette: 12 colours at least 10 CIEDE2000 apart, normal and colour-blind", () => {
  assert.ok(CATEGORICAL.length >= 12);
  for (const c of CATEGORICAL) assert.match(c, /^#[0-9a-f]{6}$/);
  for (const kind of ["none", "deuteranopia", "protanopia"]) {
    const d = minDistance(CATEGORICAL.slice(0, 12), kind);
    assert.ok(d >= 10, `${kind}: ${d.toFixed(2)}`);
  }
});

test("classes past the palette get another shape", () => {
  assert.equal(shapeOf(0), "square");
  assert.equal(shapeOf(11), "square");
  assert.equal(shapeOf(12), "ring");
  assert.equal(shapeOf(24), "cross");
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { AA, contrastRatio, inkOn, luminance, parseColour, readableMuted } from "../lib/contrast.js";
import { lut } from "../lib/colormap.js";

test("WCAG luminance and contrast ratios match the published values", () => {
  assert.equal(luminance([255, 255, 255]), 1);
  assert.equal(luminance([0, 0, 0]), 0);
  assert.equal(contrastRatio([0, 0, 0], [255, 255, 255]), 21);
  // #767676 on white is the well-known 4.54:1 (the lightest grey passing AA on white)
  assert.ok(Math.abs(contrastRatio([0x76, 0x76, 0x76], [255, 255, 255]) - 4.54) < 0.01);
});

test("black or white text, whichever contrasts more, reaches 4.5:1 on every viridis and diverging cell", () => {
  for (const name of ["viridis", "diverging", "heat"]) {
    const table = lut(name);
    for (let i = 0; i < 256; i++) {
      const cell = [table[4 * i], table[4 * i + 1], table[4 * i + 2]];
      const ink = inkOn(cell) === "#000000" ? [0, 0, 0] : [255, 255, 255];
      const other = ink[0] ? [0, 0, 0] : [255, 255, 255];
      assert.ok(contrastRatio(ink, cell) >= 4.5, `${name}[${i}]`);
      assert.ok(contrastRatio(ink, cell) >= contrastRatio(other, cell), `${name}[${i}] picks the larger`);
    }
  }
  // the logit lens's failing cells (mid-viridis, white text 3.1-3.6:1) get black text
  assert.equal(inkOn([0x23, 0xa3, 0x86]), "#000000");
});

test("a muted colour is pulled towards the text until it reads on every background it is drawn on", () => {
  assert.deepEqual(parseColour("rgba(0,0,0,.54)"), [0, 0, 0, 0.54]);
  assert.deepEqual(parseColour("#eee"), [238, 238, 238, 1]);
  // JupyterLab light: --jp-ui-font-color2 on white passes (4.6:1) but not on a chip's tint (#ededed, 4.42:1)
  const white = [255, 255, 255]; const chip = [237, 237, 237];
  const alone = parseColour(readableMuted("rgba(0,0,0,0.54)", "rgba(0,0,0,0.87)", [white]));
  assert.deepEqual(alone.slice(0, 3), [117, 117, 117]);  // unchanged where it already reads
  const both = parseColour(readableMuted("rgba(0,0,0,0.54)", "rgba(0,0,0,0.87)", [white, chip]));
  assert.ok(contrastRatio(both, chip) >= AA && contrastRatio(both, white) >= AA);
  assert.ok(both[0] < 117 && both[0] > 80, String(both));  // darker, but still muted (not the body text)
  // JupyterLab dark: font-color2 on --jp-layout-color2 (#424242) is 3.0:1; pulled lighter until 4.5:1
  const dark = parseColour(readableMuted("rgba(255,255,255,0.54)", "rgba(255,255,255,0.87)", [[0x42, 0x42, 0x42]]));
  assert.ok(contrastRatio(dark, [0x42, 0x42, 0x42]) >= AA);
});

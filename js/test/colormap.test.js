import { test } from "node:test";
import assert from "node:assert/strict";
import { lut, color } from "../lib/colormap.js";

// relative luminance (sRGB), a proxy for perceived lightness
function luminance(r, g, b) {
  const lin = (c) => { c /= 255; return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

test("viridis runs from its first to its last anchor with monotonically increasing lightness", () => {
  const t = lut("viridis");
  assert.deepEqual([...t.slice(0, 3)], [0x44, 0x01, 0x54]);
  assert.deepEqual([...t.slice(255 * 4, 255 * 4 + 3)], [0xfd, 0xe7, 0x25]);
  let prev = -1;
  for (let i = 0; i < 256; i++) {
    const l = luminance(t[i * 4], t[i * 4 + 1], t[i * 4 + 2]);
    assert.ok(l >= prev - 1e-3, `lightness drops at ${i}`); // 1e-3: one step of 8-bit rounding
    prev = l;
  }
});

test("heat rises in lightness from black to white", () => {
  const t = lut("heat");
  let prev = -1;
  for (let i = 0; i < 256; i++) {
    const l = luminance(t[i * 4], t[i * 4 + 1], t[i * 4 + 2]);
    assert.ok(l >= prev - 1e-3, `lightness drops at ${i}`);
    prev = l;
  }
});

test("the diverging map is lightest in the middle and equally dark at both ends", () => {
  const t = lut("diverging");
  const L = (i) => luminance(t[i * 4], t[i * 4 + 1], t[i * 4 + 2]);
  assert.ok(L(128) > L(0) && L(128) > L(255));
  assert.ok(Math.abs(L(0) - L(255)) < 0.06);
  assert.match(color("diverging", 0.5), /^rgba\(/);
  assert.throws(() => lut("jet"), /unknown colour map jet/);
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { HistoryStore } from "../lib/store.js";
import { decodeArrays } from "../lib/codec.js";
import { fixture, dataView } from "./helpers.js";

function expectEqualToPython(store) {
  for (const [key, exp] of Object.entries(fixture.expected)) {
    const s = store.series.get(key);
    assert.ok(s, `series ${key} missing`);
    assert.equal(s.count, exp.count, key);
    const want = decodeArrays(exp.index, dataView(exp.data));
    assert.deepEqual([...s.steps.subarray(0, s.count * 2)], [...want.steps], `${key} steps`);
    const values = want.stats || want.values;
    const got = s.values.subarray(0, values.length);
    for (let i = 0; i < values.length; i++) {
      assert.ok(Object.is(got[i], values[i]) || got[i] === values[i], `${key} value ${i}: ${got[i]} vs ${values[i]}`);
    }
    if (want.hist) assert.deepEqual([...s.hist.subarray(0, want.hist.length)], [...want.hist], `${key} hist`);
  }
}

test("replaying Python's frames rebuilds exactly Python's history (decimation and rebinning included)", () => {
  const store = new HistoryStore();
  for (const f of fixture.frames) assert.equal(store.applyFrame(f.header, dataView(f.data, 1)), false);
  assert.equal(store.received, fixture.frames.length);
  assert.equal(store.gaps, 0);
  // frames arrive every 3 steps; the last points of the run are in the snapshot, not yet in a frame
  store.loadSnapshot({ header: fixture.snapshot.header, data: dataView(fixture.snapshot.data) });
  expectEqualToPython(store);
  assert.equal(store.details.get("conv1").shape.join("x"), "4x3x3");
});

test("a lost frame is counted as a gap and asks for a resend", () => {
  const store = new HistoryStore();
  const [a, , c] = fixture.frames;
  store.applyFrame(a.header, dataView(a.data));
  const wantResync = store.applyFrame(c.header, dataView(c.data));
  assert.equal(wantResync, true);
  assert.equal(store.gaps, 1);
  assert.equal(store.received, 2);
  assert.equal(store.expected, 3);
});

test("a view opened mid-run counts no gaps for frames sent before it listened, but asks for a resend", () => {
  const store = new HistoryStore();
  store.loadSnapshot({ header: { ...fixture.snapshot.header, seq: -1 }, data: dataView(fixture.snapshot.data) });
  const f = fixture.frames[6];
  assert.equal(store.applyFrame({ ...f.header, seq: 500 }, dataView(f.data)), true);
  assert.equal(store.gaps, 0);
  const [first, second] = fixture.frames; // a resend is a frame whose series all start at 0, like the first
  assert.equal(store.applyFrame({ ...first.header, seq: 501, resync: true }, dataView(first.data)), false);
  assert.equal(store.expected, 2);
  assert.equal(store.received, 2);
  store.applyFrame({ ...second.header, seq: 503 }, dataView(second.data));
  assert.equal(store.gaps, 1);
});

test("a snapshot older than the frames already applied is ignored; a newer one replaces everything", () => {
  const store = new HistoryStore();
  const snap = { header: fixture.snapshot.header, data: dataView(fixture.snapshot.data) };
  assert.equal(store.loadSnapshot(snap), true);
  expectEqualToPython(store);
  const old = { header: { ...fixture.frames[0].header, seq: -5 }, data: dataView(fixture.frames[0].data) };
  assert.equal(store.loadSnapshot(old), false);
  expectEqualToPython(store);
});

test("frames already covered by the snapshot are skipped, later ones apply without a gap", () => {
  const store = new HistoryStore();
  store.loadSnapshot({ header: { ...fixture.frames[4].header, seq: 4, full: true }, data: dataView(fixture.frames[4].data) });
  assert.equal(store.applyFrame(fixture.frames[3].header, dataView(fixture.frames[3].data)), false);
  assert.equal(store.received, 0);
  store.applyFrame(fixture.frames[5].header, dataView(fixture.frames[5].data));
  assert.equal(store.gaps, 0);
  assert.equal(store.expected, 1);
});

// @ts-check
// The InterventionView: each input with its prediction before and after an edit of a layer; changed predictions
// first, outlined; bars for the probability of the class predicted before (grey: before, colour: after).
import { decodeArrays } from "./lib/codec.js";
import { fmt, h, viewFrame } from "./lib/chart.js";
import { ExamplePages, PAGE, imageOf, thumbCanvas } from "./lib/examples.js";
import { CSS } from "./lib/style.js";

const LOCAL_CSS = `
.hw-iv-grid { display: flex; flex-wrap: wrap; gap: 6px; }
.hw-iv-item { display: flex; flex-direction: column; align-items: center; gap: 2px; padding: 3px; width: 76px;
  border: 2px solid transparent; border-radius: 5px; font-size: 11px; font-variant-numeric: tabular-nums; }
.hw-iv-item[data-changed="true"] { border-color: var(--hw-bad); background: var(--hw-bad-tint); }
.hw-iv-bar { position: relative; width: 64px; height: 6px; background: var(--hw-neutral-tint); border-radius: 3px; }
.hw-iv-bar span { position: absolute; left: 0; top: 0; height: 6px; border-radius: 3px; }
.hw-iv-text { font-size: 11px; max-width: 70px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
`;

function render({ model, el }) {
  const isStatic = Boolean(model.get("__hw_static"));
  const { root, title, note } = viewFrame("hw-iv", CSS, LOCAL_CSS, "intervention_view");
  const tabs = h("div", "hw-am-chips");
  const summary = h("div", "hw-note");
  const grid = h("div", "hw-iv-grid");
  root.append(tabs, summary, grid);
  el.appendChild(root);
  const pages = new ExamplePages(model, isStatic);
  let shown = 0;
  const name = (c) => { const names = model.get("class_names") || []; return names[c] !== undefined ? String(names[c]) : String(c); };

  function draw() {
    const edits = model.get("edits") || [];
    const d = model.get("_data");
    const arrays = d && d.header ? decodeArrays(d.header.index, d.data) : {};
    title.textContent = model.get("title") || "Intervention";
    shown = Math.min(shown, Math.max(0, edits.length - 1));
    tabs.replaceChildren(...edits.map((e, k) => {
      const b = h("button", "hw-chip", `${e.name}: ${e.summary.changed} of ${e.summary.examples} change`);
      b.setAttribute("aria-pressed", String(k === shown));
      b.addEventListener("click", () => { shown = k; draw(); });
      return b;
    }));
    const e = edits[shown];
    if (!e) { grid.replaceChildren(); return; }
    note.textContent = `${e.mode === "project" ? "direction removed from" : `direction clamped to ${fmt(e.value)} in`} ${e.layer}`;
    summary.textContent = `${e.summary.changed} of ${e.summary.examples} predictions change; the probability of the class predicted before moves by ${fmt(e.summary.mean_predicted_prob_change)} on average. Outlined: changed.`;
    const before = arrays[`${shown}:before`]; const after = arrays[`${shown}:after`];
    const pBefore = arrays[`${shown}:p_before`]; const pWas = arrays[`${shown}:p_was`];
    const n = model.get("n") || 0;
    const order = [...Array(n).keys()].sort((a, b) => Number(after[b] !== before[b]) - Number(after[a] !== before[a]) || a - b);
    const kind = model.get("example_kind"); const meta = model.get("example_meta") || {};
    grid.replaceChildren(...order.map((i) => {
      const item = h("div", "hw-iv-item");
      item.dataset.index = String(i);
      item.dataset.changed = String(after[i] !== before[i]);
      const p = pages.get(i);
      if (kind === "image") item.append(p && p.images ? thumbCanvas(imageOf(p, i, meta.shape), meta.shape, 48) : h("span", "hw-note", "…"));
      else if (kind === "text") item.append(h("span", "hw-iv-text", p && p.texts ? String(p.texts[i % PAGE] ?? "") : "…"));
      item.append(h("span", "", after[i] !== before[i] ? `${name(before[i])} → ${name(after[i])}` : name(before[i])));
      const bar = h("div", "hw-iv-bar");
      const was = h("span"); was.style.width = `${Math.round(64 * pBefore[i])}px`; was.style.background = "#8c8c8c";
      const now = h("span"); now.style.width = `${Math.round(64 * pWas[i])}px`; now.style.background = "var(--hw-accent)"; now.style.height = "3px";
      bar.append(was, now);
      bar.title = `p(${name(before[i])}) ${fmt(pBefore[i])} before, ${fmt(pWas[i])} after`;
      item.append(bar);
      return item;
    }));
  }
  const onMsg = (msg, buffers) => { if (pages.receive(msg, buffers)) draw(); };
  const events = [["change:edits", draw], ["change:_data", draw], ["change:title", draw], ["msg:custom", onMsg]];
  for (const [ev, fn] of events) model.on(ev, fn);
  draw();
  return () => { for (const [ev, fn] of events) model.off(ev, fn); root.remove(); };
}

export default { render };

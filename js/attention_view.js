// @ts-check
// The AttentionView: one row of head thumbnails per layer, sorted by entropy (focused heads first), each labelled
// with its class; click a head for its query × key pattern (one page of at most page_size tokens at a time);
// hover a token to see where it attends to (its row) and what attends to it (its column).
import { LineChart, fmt, h, setupCanvas, theme, trackHover, viewFrame } from "./lib/chart.js";
import { lut } from "./lib/colormap.js";
import { CSS } from "./lib/style.js";
import { Pager, StepSlider, TX_CSS, decodeState, fitText, showToken, watchWidth } from "./lib/tokens.js";

const EXTRA = `
.hw-av-grid { display: grid; gap: 2px 6px; align-items: start; margin-bottom: 8px; }
.hw-av-layer { font-size: 11px; color: var(--hw-muted); align-self: center; }
.hw-av-row { display: flex; gap: 4px; flex-wrap: wrap; }
.hw-av-thumb { display: flex; flex-direction: column; align-items: center; cursor: pointer; border: 2px solid transparent;
  border-radius: 3px; padding: 1px; font-size: 10px; line-height: 1.2; background: none; color: inherit; font-family: inherit; }
.hw-av-thumb[aria-pressed="true"] { border-color: #3b6fd8; }
.hw-av-thumb canvas { image-rendering: pixelated; }
.hw-av-detail { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; }
`;
const CLASS_MARK = { "previous-token": "prev", "first-token": "first", focused: "focus", broad: "broad", mixed: "mixed" };

function render({ model, el }) {
  const { root, title, note } = viewFrame("hw-av", CSS, TX_CSS + EXTRA);
  const status = h("div", "hw-tx-status");
  const controls = h("div", "hw-tx-controls");
  const slider = new StepSlider((s) => { model.set("shown_step", s); model.save_changes(); });
  controls.append(slider.el);
  const grid = h("div", "hw-av-grid");
  const detailHead = h("div", "hw-tx-controls");
  const detailTitle = h("span", "hw-chart-title");
  const pager = new Pager("queries", (p) => { model.set("page", p); model.save_changes(); });
  detailHead.append(detailTitle, pager.el);
  const canvas = /** @type {HTMLCanvasElement} */ (h("canvas", "hw-tx-canvas"));
  const readout = h("div", "hw-tx-readout");
  const profile = new LineChart("mean weight by distance (query − key)", { height: 120 });
  const detail = h("div", "hw-av-detail");
  const left = h("div");
  left.append(canvas, readout);
  detail.append(left, profile.el);
  root.append(status, controls, grid, detailHead, detail);
  el.appendChild(root);

  /** @type {any} */ let data = null;
  /** @type {any} */ let pattern = null;
  let width = 640;
  let hoverTok = -1; let hoverCell = [-1, -1];
  const table = lut("viridis");
  /** @type {(() => void)[]} */ let thumbCleanups = [];

  function drawThumbs() {
    for (const f of thumbCleanups) f();
    thumbCleanups = [];
    grid.replaceChildren();
    if (!data) return;
    const { header, arrays } = data;
    const H = header.heads; const s = header.thumb;
    const size = Math.max(28, Math.min(64, Math.floor((width - 60) / H) - 10));
    grid.style.gridTemplateColumns = "auto 1fr";
    const [selL, selH] = model.get("head");
    header.layers.forEach((name, l) => {
      grid.append(h("span", "hw-av-layer", name));
      const row = h("div", "hw-av-row");
      for (const hd of header.order[l]) {
        const btn = h("button", "hw-av-thumb");
        btn.setAttribute("aria-pressed", String(l === selL && hd === selH));
        const ent = arrays.entropy[l * H + hd]; const label = header.labels[l][hd];
        btn.title = `layer ${name}, head ${hd}: ${label}; mean entropy ${fmt(ent)} nats; ` +
          `previous token ${fmt(arrays.previous[l * H + hd])}, first token ${fmt(arrays.first[l * H + hd])}, ` +
          `k90 ${fmt(arrays.k90[l * H + hd])} keys`;
        const c = /** @type {HTMLCanvasElement} */ (h("canvas"));
        c.width = s; c.height = s; c.style.width = `${size}px`; c.style.height = `${size}px`;
        const ctx = c.getContext("2d");
        if (ctx) {
          const img = new ImageData(s, s);
          const base = (l * H + hd) * s * s;
          for (let i = 0; i < s * s; i++) {
            const q = arrays.thumbs[base + i] * 4;
            img.data[i * 4] = table[q]; img.data[i * 4 + 1] = table[q + 1]; img.data[i * 4 + 2] = table[q + 2]; img.data[i * 4 + 3] = 255;
          }
          ctx.putImageData(img, 0, 0);
        }
        btn.append(c, h("span", "", `h${hd} ${fmt(ent)}`), h("span", "", CLASS_MARK[label] || label));
        const onClick = () => { model.set("head", [l, hd]); model.set("page", 0); model.save_changes(); };
        btn.addEventListener("click", onClick);
        thumbCleanups.push(() => btn.removeEventListener("click", onClick));
        row.append(btn);
      }
      grid.append(row);
    });
  }

  const LEFT = 70; const TOP = 70; const COS60 = 0.5; const SIN60 = Math.sqrt(3) / 2;
  let cell = 12;
  function drawPattern() {
    if (!data || !pattern) { readout.textContent = ""; return; }
    const { header: ph, arrays: pa } = pattern;
    const tokens = data.header.tokens;
    const nq = pa.outside.length; const nk = nq ? pa.pattern.length / nq : 0;
    pager.set(ph.page, data.header.page_size, ph.n);
    const label = data.header.labels[ph.layer][ph.head];
    const stateStep = data.header.step;
    detailTitle.textContent = `${data.header.layers[ph.layer]}, head ${ph.head} (${label})` +
      (ph.step >= 0 && ph.step !== stateStep ? ` · pattern from the weights of step ${ph.step}` : "");
    const offs = Array.from(pa.profile, (_, i) => ph.offset0 + i);
    profile.update({ xs: offs, lines: [{ ys: pa.profile, label: "weight", color: "#3b6fd8" }], yMin: 0 }, Math.min(360, Math.max(220, width / 3)));
    // key labels are drawn rotated by -60° from the top of each column, so a label reaches past its column to
    // the right by cos 60° of its width plus sin 60° of its height: the canvas leaves room for the widest
    const t = theme(root);
    const probe = canvas.getContext("2d");
    if (probe) probe.font = t.font;
    const keyLabel = (k) => (probe ? fitText(probe, showToken(tokens[ph.k0 + k]), TOP - 6) : "");
    const reach = (k) => (probe ? probe.measureText(keyLabel(k)).width : TOP - 6) * COS60 + t.fontSize * 1.2 * SIN60;
    let most = 0;
    for (let k = 0; k < nk; k++) most = Math.max(most, reach(k));
    cell = Math.max(4, Math.min(22, Math.floor((width - LEFT - 10 - most) / Math.max(nk, 1))));
    let right = 10;  // room past the last column: what the labels need, at least 10 px
    if (cell >= 8) for (let k = 0; k < nk; k++) right = Math.max(right, Math.ceil(reach(k) - (nk - k - 0.5) * cell) + 2);
    const W = LEFT + nk * cell + right; const Hh = TOP + nq * cell + 10;
    const ctx = setupCanvas(canvas, W, Hh);
    if (!ctx) return;
    ctx.font = t.font;
    for (let q = 0; q < nq; q++) {
      for (let k = 0; k < nk; k++) {
        const v = pa.pattern[q * nk + k];
        const i = Math.round(Math.max(0, Math.min(1, Math.sqrt(v))) * 255) * 4;  // sqrt: small weights stay visible
        ctx.fillStyle = `rgb(${table[i]},${table[i + 1]},${table[i + 2]})`;
        ctx.fillRect(LEFT + k * cell, TOP + q * cell, cell, cell);
      }
    }
    const hq = hoverTok - ph.q0; const hk = hoverTok - ph.k0;
    ctx.strokeStyle = "#e8590c"; ctx.lineWidth = 1.5;
    if (hq >= 0 && hq < nq) ctx.strokeRect(LEFT, TOP + hq * cell, nk * cell, cell);
    if (hk >= 0 && hk < nk) ctx.strokeRect(LEFT + hk * cell, TOP, cell, nq * cell);
    if (cell >= 8) {
      ctx.fillStyle = t.text; ctx.textBaseline = "middle"; ctx.textAlign = "right";
      for (let q = 0; q < nq; q++) ctx.fillText(fitText(ctx, showToken(tokens[ph.q0 + q]), LEFT - 6), LEFT - 4, TOP + q * cell + cell / 2);
      for (let k = 0; k < nk; k++) {
        ctx.save(); ctx.translate(LEFT + k * cell + cell / 2, TOP - 4); ctx.rotate(-Math.PI / 3);
        ctx.textAlign = "left"; ctx.fillText(keyLabel(k), 0, 0); ctx.restore();
      }
    }
    const [cq, ck] = hoverCell;
    if (cq >= 0) {
      const v = pa.pattern[cq * nk + ck];
      readout.textContent = `"${showToken(tokens[ph.q0 + cq])}" (${ph.q0 + cq}) attends to "${showToken(tokens[ph.k0 + ck])}" (${ph.k0 + ck}): ${fmt(v)}` +
        (pa.outside[cq] > 1e-6 ? ` · ${fmt(pa.outside[cq])} of its attention goes to keys outside this page` : "");
    } else readout.textContent = `rows: queries ${ph.q0}–${ph.q0 + nq - 1}; columns: keys ${ph.k0}–${ph.k0 + nk - 1}; colour: √weight`;
  }

  const stopHover = trackHover(canvas, (x, y) => {
    if (!pattern) return;
    const nq = pattern.arrays.outside.length; const nk = nq ? pattern.arrays.pattern.length / nq : 0;
    const k = Math.floor((x - LEFT) / cell); const q = Math.floor((y - TOP) / cell);
    if (q >= 0 && q < nq && k >= 0 && k < nk) { hoverCell = [q, k]; hoverTok = -1; }
    else if (x < LEFT && q >= 0 && q < nq) { hoverTok = pattern.header.q0 + q; hoverCell = [-1, -1]; }
    else if (y < TOP && k >= 0 && k < nk) { hoverTok = pattern.header.k0 + k; hoverCell = [-1, -1]; }
    else { hoverTok = -1; hoverCell = [-1, -1]; }
    drawPattern();
  }, () => { hoverTok = -1; hoverCell = [-1, -1]; drawPattern(); });

  const update = () => {
    data = decodeState(model.get("_state"));
    title.textContent = model.get("title") || "Attention";
    note.textContent = data && data.header.step >= 0 ? `step ${data.header.step}` : "";
    status.textContent = (model.get("status") || "") + (data && data.header.source ? ` · ${data.header.source}` : "");
    slider.set(model.get("steps") || [], model.get("shown_step"), model.get("thinned"));
    drawThumbs(); drawPattern();
  };
  const updatePattern = () => { pattern = decodeState(model.get("_pattern")); drawThumbs(); drawPattern(); };
  const stopWidth = watchWidth(root, (w) => { width = w; drawThumbs(); drawPattern(); });
  const events = ["change:_state", "change:status", "change:steps", "change:shown_step", "change:title"];
  for (const ev of events) model.on(ev, update);
  model.on("change:_pattern", updatePattern);
  pattern = decodeState(model.get("_pattern"));
  update();
  return () => {
    for (const ev of events) model.off(ev, update);
    model.off("change:_pattern", updatePattern);
    for (const f of thumbCleanups) f();
    stopHover(); stopWidth(); profile.dispose(); root.remove();
  };
}

export default { render };

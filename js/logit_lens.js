// @ts-check
// The LogitLens view: layers (rows, the last on top) × positions (columns) of one text; each cell shows the token
// that layer's residual decodes to, coloured by the chosen statistic; the top-k on hover. The text is editable
// (the kernel recomputes, debounced); long texts page; recorded training steps have a slider.
import { fmt, h, setupCanvas, theme, trackHover, viewFrame } from "./lib/chart.js";
import { lut } from "./lib/colormap.js";
import { inkOn } from "./lib/contrast.js";
import { CSS } from "./lib/style.js";
import { Pager, StepSlider, TX_CSS, debounce, decodeState, fitText, showToken, watchWidth } from "./lib/tokens.js";

const STATS = { entropy: "entropy (nats)", cross_entropy: "cross-entropy", kl_to_final: "KL to final", top1_prob: "top-1 probability" };
const CELL_W = 64; const CELL_H = 22; const LEFT = 78; const TOP = 20; const BOTTOM = 40;

function render({ model, el }) {
  const { root, title, note } = viewFrame("hw-ll", CSS, TX_CSS);
  const status = h("div", "hw-tx-status");
  const controls = h("div", "hw-tx-controls");
  const select = /** @type {HTMLSelectElement} */ (h("select"));
  for (const [k, label] of Object.entries(STATS)) { const o = /** @type {HTMLOptionElement} */ (h("option", "", label)); o.value = k; select.append(o); }
  const input = /** @type {HTMLInputElement} */ (h("input", "hw-tx-text"));
  input.type = "text";
  input.setAttribute("aria-label", "text");
  let page = 0;
  const pager = new Pager("positions", (p) => { page = p; draw(); });
  const slider = new StepSlider((s) => { model.set("shown_step", s); model.save_changes(); });
  controls.append(h("span", "", "colour:"), select, input, pager.el, slider.el);
  const canvas = /** @type {HTMLCanvasElement} */ (h("canvas", "hw-tx-canvas"));
  const readout = h("div", "hw-tx-readout");
  root.append(status, controls, canvas, readout);
  el.appendChild(root);

  /** @type {any} */ let data = null;
  let width = 640;
  let hover = [-1, -1];
  let perPage = 8;

  const send = debounce((text) => { model.set("text", text); model.save_changes(); }, 500);
  const onInput = () => send(input.value);
  input.addEventListener("input", onInput);
  const onSelect = () => { model.set("statistic", select.value); model.save_changes(); };
  select.addEventListener("change", onSelect);

  const range = (stat, values) => {
    if (stat === "top1_prob") return [0, 1];
    let hi = 0;
    for (const v of values) if (Number.isFinite(v) && v > hi) hi = v;
    return [0, hi || 1];
  };

  function draw() {
    if (!data) return;
    const { header, arrays } = data;
    const L = header.layers.length; const T = header.tokens.length;
    perPage = Math.max(4, Math.min(48, Math.floor((width - LEFT - 8) / CELL_W)));
    pager.set(page, perPage, T);
    page = pager.page;
    const p0 = page * perPage; const n = Math.min(perPage, T - p0);
    const stat = model.get("statistic");
    const values = arrays[stat];
    const [lo, hi] = range(stat, values);
    const table = lut("viridis");
    const W = LEFT + n * CELL_W + 8; const H = TOP + L * CELL_H + BOTTOM;
    const ctx = setupCanvas(canvas, W, H);
    if (!ctx) return;
    const t = theme(root);
    ctx.font = t.font; ctx.textBaseline = "middle"; ctx.textAlign = "center";
    for (let r = 0; r < L; r++) {
      const layer = L - 1 - r;  // the last layer on top
      ctx.fillStyle = t.text; ctx.textAlign = "right";
      ctx.fillText(header.layers[layer], LEFT - 6, TOP + r * CELL_H + CELL_H / 2);
      ctx.textAlign = "center";
      for (let c = 0; c < n; c++) {
        const j = p0 + c; const v = values[layer * T + j];
        const x = LEFT + c * CELL_W; const y = TOP + r * CELL_H;
        let ink = t.text;
        if (Number.isFinite(v)) {
          const q = Math.round(Math.max(0, Math.min(1, (v - lo) / (hi - lo || 1))) * 255) * 4;
          const rgb = [table[q], table[q + 1], table[q + 2]];
          ctx.fillStyle = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
          ink = inkOn(rgb);  // black or white, whichever contrasts more with this cell (WCAG)
        } else ctx.fillStyle = t.grid;
        ctx.fillRect(x, y, CELL_W - 1, CELL_H - 1);
        const tops = header.top[layer][j];
        ctx.fillStyle = ink;
        ctx.fillText(fitText(ctx, showToken(tops[0]), CELL_W - 6), x + CELL_W / 2, y + CELL_H / 2);
        if (hover[0] === layer && hover[1] === j) { ctx.strokeStyle = t.text; ctx.lineWidth = 2; ctx.strokeRect(x + 1, y + 1, CELL_W - 3, CELL_H - 3); }
      }
    }
    ctx.fillStyle = t.muted;
    for (let c = 0; c < n; c++) {
      const j = p0 + c; const x = LEFT + c * CELL_W + CELL_W / 2;
      ctx.fillStyle = t.text;
      ctx.fillText(fitText(ctx, showToken(header.tokens[j]), CELL_W - 4), x, TOP + L * CELL_H + 10);
      ctx.fillStyle = t.muted;
      if (header.targets[j]) ctx.fillText(fitText(ctx, `→ ${showToken(header.targets[j])}`, CELL_W - 4), x, TOP + L * CELL_H + 26);
      ctx.fillText(String(j), x, TOP / 2);
    }
    ctx.textAlign = "right"; ctx.fillText("input", LEFT - 6, TOP + L * CELL_H + 10);
    ctx.fillText(header.target_kind === "next" ? "next" : "target", LEFT - 6, TOP + L * CELL_H + 26);
    const [hl, hj] = hover;
    if (hl >= 0) {
      const k = header.k; const probs = arrays.top_probs;
      const tops = header.top[hl][hj].map((s, i) => `${showToken(s)} ${fmt(probs[(hl * T + hj) * k + i])}`).join(", ");
      readout.textContent = `${header.layers[hl]} · position ${hj} "${showToken(header.tokens[hj])}"` +
        (header.targets[hj] ? ` → "${showToken(header.targets[hj])}"` : "") +
        ` · entropy ${fmt(arrays.entropy[hl * T + hj])} · cross-entropy ${fmt(arrays.cross_entropy[hl * T + hj])}` +
        ` · KL to final ${fmt(arrays.kl_to_final[hl * T + hj])}\ntop ${k}: ${tops}`;
    } else readout.textContent = `${STATS[stat]}: ${fmt(lo)} (dark) – ${fmt(hi)} (bright)`;
  }

  const stopHover = trackHover(canvas, (x, y) => {
    if (!data) return;
    const L = data.header.layers.length;
    const c = Math.floor((x - LEFT) / CELL_W); const r = Math.floor((y - TOP) / CELL_H);
    const j = page * perPage + c;
    hover = c >= 0 && c < perPage && r >= 0 && r < L && j < data.header.tokens.length ? [L - 1 - r, j] : [-1, -1];
    draw();
  }, () => { hover = [-1, -1]; draw(); });

  const update = () => {
    data = decodeState(model.get("_state"));
    title.textContent = model.get("title") || "Logit lens";
    note.textContent = data && data.header.step >= 0 ? `step ${data.header.step}` : "";
    status.textContent = model.get("status") || "";
    select.value = model.get("statistic");
    const editable = model.get("editable");
    input.readOnly = !editable;
    input.title = editable ? "edit the text: the kernel recomputes" : "no tokenizer: the text cannot be edited here";
    if (document.activeElement !== input) input.value = model.get("text") || (data ? data.header.tokens.map(showToken).join(" ") : "");
    slider.set(model.get("steps") || [], model.get("shown_step"), model.get("thinned"));
    draw();
  };
  const stopWidth = watchWidth(root, (w) => { width = w; draw(); });
  const events = ["change:_state", "change:statistic", "change:status", "change:steps", "change:shown_step", "change:title", "change:editable"];
  for (const ev of events) model.on(ev, update);
  update();
  return () => {
    for (const ev of events) model.off(ev, update);
    send.cancel(); stopHover(); stopWidth();
    input.removeEventListener("input", onInput); select.removeEventListener("change", onSelect);
    root.remove();
  };
}

export default { render };

// @ts-check
// The TokenFlow view: per token, lines over depth: the residual's norm, its cosine to the token's input embedding
// and to its final representation (and token identity's probe accuracy per layer when computed). Tokens page, at
// most 10 lines a chart; hovering a token chip highlights its line.
import { LineChart, h, viewFrame } from "./lib/chart.js";
import { color } from "./lib/colormap.js";
import { CSS } from "./lib/style.js";
import { Pager, StepSlider, TX_CSS, decodeState, showToken, watchWidth } from "./lib/tokens.js";

const PER_PAGE = 10;

function render({ model, el }) {
  const { root, title, note } = viewFrame("hw-tf", CSS, TX_CSS + ".hw-tf-charts { display: flex; gap: 16px; flex-wrap: wrap; }");
  const status = h("div", "hw-tx-status");
  const controls = h("div", "hw-tx-controls");
  let page = 0;
  const pager = new Pager("tokens", (p) => { page = p; draw(); });
  const slider = new StepSlider((s) => { model.set("shown_step", s); model.save_changes(); });
  const chips = h("div", "hw-am-chips");
  controls.append(pager.el, slider.el);
  const charts = h("div", "hw-tf-charts");
  const norm = new LineChart("norm of the residual", { height: 170 });
  const cosIn = new LineChart("cosine to the input embedding", { height: 170 });
  const cosOut = new LineChart("cosine to the final layer", { height: 170 });
  const dec = new LineChart("token identity: probe accuracy", { height: 170 });
  charts.append(norm.el, cosIn.el, cosOut.el, dec.el);
  root.append(status, controls, chips, charts);
  el.appendChild(root);
  /** @type {any} */ let data = null;
  let width = 640; let focus = -1;
  /** @type {(() => void)[]} */ let chipCleanups = [];

  function draw() {
    if (!data) return;
    const { header, arrays } = data;
    const L = header.layers.length; const T = header.tokens.length;
    pager.set(page, PER_PAGE, T); page = pager.page;
    const p0 = page * PER_PAGE; const n = Math.min(PER_PAGE, T - p0);
    const xs = Array.from({ length: L }, (_, i) => i);
    const w = Math.max(220, Math.min(420, Math.floor((width - 40) / 3)));
    const lines = (arr) => Array.from({ length: n }, (_, c) => {
      const j = p0 + c;
      return { ys: Array.from({ length: L }, (_, l) => arr[l * T + j]), label: `${j} ${showToken(header.tokens[j])}`,
        color: color("viridis", n > 1 ? c / (n - 1) : 0.5, focus < 0 || focus === j ? 1 : 0.15) };
    });
    const common = { xs, xLabels: header.layers };
    norm.update({ ...common, lines: lines(arrays.norm) }, w);
    cosIn.update({ ...common, lines: lines(arrays.cos_in), yMin: -1, yMax: 1 }, w);
    cosOut.update({ ...common, lines: lines(arrays.cos_out), yMin: -1, yMax: 1 }, w);
    dec.el.style.display = arrays.decodable ? "" : "none";
    if (arrays.decodable) {
      dec.update({ ...common, lines: [{ ys: arrays.decodable, label: "accuracy", color: "#3b6fd8" },
        { ys: xs.map(() => header.chance), label: "chance", color: "#868e96", dash: [4, 3] }], yMin: 0, yMax: 1 }, w);
    }
    for (const f of chipCleanups) f();
    chipCleanups = [];
    chips.replaceChildren();
    for (let c = 0; c < n; c++) {
      const j = p0 + c;
      const chip = h("button", "hw-chip", `${j} ${showToken(header.tokens[j])}`);
      chip.setAttribute("aria-pressed", String(focus === j));
      const enter = () => { focus = j; draw(); }; const leave = () => { focus = -1; draw(); };
      chip.addEventListener("mouseenter", enter); chip.addEventListener("mouseleave", leave);
      chipCleanups.push(() => { chip.removeEventListener("mouseenter", enter); chip.removeEventListener("mouseleave", leave); });
      chips.append(chip);
    }
  }

  const update = () => {
    data = decodeState(model.get("_state"));
    title.textContent = model.get("title") || "Token flow";
    note.textContent = data && data.header.step >= 0 ? `step ${data.header.step}` : "";
    status.textContent = model.get("status") || "";
    slider.set(model.get("steps") || [], model.get("shown_step"), model.get("thinned"));
    draw();
  };
  const stopWidth = watchWidth(root, (w) => { width = w; draw(); });
  const events = ["change:_state", "change:status", "change:steps", "change:shown_step", "change:title"];
  for (const ev of events) model.on(ev, update);
  update();
  return () => {
    for (const ev of events) model.off(ev, update);
    for (const f of chipCleanups) f();
    norm.dispose(); cosIn.dispose(); cosOut.dispose(); dec.dispose(); stopWidth(); root.remove();
  };
}

export default { render };

// @ts-check
// The ActivationMonitor view: counters and controls, the user's scalars, and per selected layer a ridgeline
// of histograms over time, its current feature maps (conv) or units x samples heatmap (dense), mean ± std,
// sparsity and dead units, gradient norm. Data arrive as binary frames (lib/store.js); the view never computes
// what Python already has, it only draws it.
import { HistoryStore } from "./lib/store.js";
import { LineChart, Ridgeline, colorBar, drawMaps, fmt, h, pct } from "./lib/chart.js";
import { CSS } from "./lib/style.js";
import { mountView } from "./lib/frame.js";
import { CATEGORICAL as PALETTE } from "./lib/palette.js";
import { layerWarnings } from "./lib/warnings.js";

/** @param {{model: any, el: HTMLElement}} ctx */
function render({ model, el }) {
  const store = new HistoryStore();
  const isStatic = !!model.get("__hw_static");
  const root = h("div", "hw-am hw-amon");
  const style = h("style");
  style.textContent = CSS;
  root.appendChild(style);
  // for debugging in the console and for the browser tests: the view's copy of the history
  Object.defineProperty(root, "__hwStore", { value: store });

  // header: title, counters, status, controls
  const header = h("div", "hw-am-header");
  const title = h("span", "hw-am-title");
  const counter = h("span", "hw-am-counter");
  const status = h("span", "hw-am-status");
  const frames = h("span", "hw-am-frames");
  const pause = /** @type {HTMLButtonElement} */ (h("button", "hw-btn hw-am-pause"));
  pause.type = "button";
  header.append(title, counter, status, frames, pause);
  const chips = h("div", "hw-am-chips");
  chips.setAttribute("role", "group");
  chips.setAttribute("aria-label", "layers to show");
  const events = h("div", "hw-am-events");
  const scalars = h("div", "hw-am-scalars");
  const cards = h("div", "hw-am-cards");
  root.append(header, chips, events, scalars, cards);
  el.appendChild(root);

  /** @type {Map<string, LineChart>} */
  const scalarCharts = new Map();
  /** @type {Map<string, ReturnType<typeof layerCard>>} */
  const layerCards = new Map();
  let resyncAsked = 0;
  let currentWidth = 900;
  /** warnings the user dismissed: layer|kind */
  const dismissed = new Set();
  const frame = mountView(root, "activation_monitor", (w) => { currentWidth = w; draw(); });
  const schedule = frame.schedule;

  const selected = () => /** @type {string[]} */ (model.get("selected_layers") || []);

  const toggleLayer = (name) => {
    const current = selected();
    const next = current.includes(name) ? current.filter((n) => n !== name) : [...current, name];
    model.set("selected_layers", next);
    model.save_changes();
    schedule();
  };

  const onPause = () => {
    model.set("paused", !model.get("paused"));
    model.save_changes();
    schedule();
  };
  pause.addEventListener("click", onPause);

  const onCustom = (msg, buffers) => {
    if (!msg || msg.type !== "frame") return;
    const wantResync = store.applyFrame(msg, buffers[0]);
    if (wantResync && Date.now() - resyncAsked > 1000) {
      resyncAsked = Date.now();
      model.send({ type: "resync" });
    }
    schedule();
  };
  const onSnapshot = () => { store.loadSnapshot(model.get("_history")); schedule(); };
  model.on("msg:custom", onCustom);
  model.on("change:_history", onSnapshot);
  model.on("change:selected_layers", schedule);
  model.on("change:paused", schedule);
  model.on("change:title", schedule);
  store.loadSnapshot(model.get("_history"));

  const ticker = setInterval(() => updateHeader(), 1000);

  function width() { return currentWidth; }

  function updateHeader() {
    title.textContent = model.get("title") || "Activations";
    const epoch = store.epoch === null || store.epoch === undefined ? "" : ` · epoch ${store.epoch}`;
    counter.textContent = `step ${store.step}${epoch}`;
    const paused = !!model.get("paused");
    let state = "idle";
    if (isStatic) state = "static page";
    else if (paused) state = "paused: Python keeps recording";
    else if (Date.now() - store.lastFrameAt < 2000) state = "live";
    status.textContent = state;
    status.dataset.state = isStatic ? "static" : paused ? "paused" : state;
    // in words for users; the counters for developers on hover (and in data-* below)
    const lost = store.gaps;
    frames.textContent = isStatic ? "" : !store.expected ? "waiting for updates"
      : lost ? `${lost} update${lost === 1 ? "" : "s"} skipped while the kernel was busy` : "all updates shown";
    frames.title = isStatic ? "" : `frames ${store.received} received of ${store.expected} sent · ${lost} lost`
      + " (an update skipped is one Jupyter dropped under load; the view asks Python to resend the history)";
    frames.dataset.lost = String(lost > 0);
    pause.textContent = paused ? "Resume" : "Pause";
    pause.hidden = isStatic;
    root.dataset.step = String(store.step);
    root.dataset.received = String(store.received);
    root.dataset.seq = String(store.seq);
    root.dataset.gaps = String(store.gaps);
  }

  /** every series a view can show: the monitored layers, then validation and per-call series as they appear */
  const layerNames = () => /** @type {string[]} */ (store.layers && store.layers.length ? store.layers
    : model.get("layers") || []);

  function updateChips() {
    const names = layerNames();
    const sel = selected();
    if (chips.childElementCount !== names.length
      || names.some((n, i) => /** @type {HTMLElement} */ (chips.children[i]).dataset.layer !== n)) {
      chips.replaceChildren();
      for (const name of names) {
        const b = /** @type {HTMLButtonElement} */ (h("button", "hw-chip", name));
        b.type = "button";
        b.dataset.layer = name;
        b.addEventListener("click", () => toggleLayer(name));
        chips.appendChild(b);
      }
    }
    for (const b of /** @type {HTMLButtonElement[]} */ ([...chips.children])) {
      const on = sel.includes(b.dataset.layer || "");
      b.setAttribute("aria-pressed", String(on));
      const layer = b.dataset.layer || "";
      const info = store.layerInfo[layer] || {};
      const problem = info.state === "never_ran" || info.state === "eval_only" || info.state === "error";
      const warns = warningsOf(layer).filter((w) => !dismissed.has(`${layer}|${w.kind}`));
      const bad = warns.some((w) => w.level === "bad");
      b.classList.toggle("hw-chip-bad", bad);
      b.classList.toggle("hw-chip-warn", !bad && (problem || warns.length > 0));
      b.dataset.warn = warns.map((w) => w.kind).join(" ");
      b.title = [...warns.map((w) => w.text), problem ? String(info.message || "") : ""].filter(Boolean).join("\n");
    }
  }

  function warningsOf(name) {
    const s = store.layer(name);
    if (!s || !s.count) return [];
    return layerWarnings({
      count: s.count,
      value: (i, field) => s.value(i, store.statIndex(field)),
      has: (field) => store.statIndex(field) >= 0,
      step: (i) => s.step(i),
      info: store.layerInfo[name] || {},
    });
  }

  function updateEvents() {
    events.replaceChildren();
    for (const e of store.events.slice(-5)) {
      const line = h("div", `hw-event hw-event-${e.kind}`, e.message);
      events.appendChild(line);
    }
  }

  function updateScalars(w) {
    const list = store.scalars();
    const cols = Math.max(1, Math.min(list.length, Math.floor(w / 300)));
    const cw = Math.floor((w - (cols - 1) * 10) / cols) - 2;
    list.forEach((s, k) => {
      let chart = scalarCharts.get(s.name);
      if (!chart) {
        chart = new LineChart(s.name, { height: 120, xTitle: "step", yTitle: s.name });
        chart.el.dataset.scalar = s.name;
        scalarCharts.set(s.name, chart);
        scalars.appendChild(chart.el);
      }
      const xs = stepsOf(s);
      const mean = column(s, 0);
      const merged = s.stride > 1;
      chart.update({
        xs,
        value: s.count ? fmt(mean[s.count - 1]) : "",
        lines: [{ ys: mean, label: s.name, color: PALETTE[k % PALETTE.length],
          lo: merged ? column(s, 1) : undefined, hi: merged ? column(s, 2) : undefined }],
      }, cw);
    });
  }

  function updateCards(w) {
    const sel = selected();
    const names = layerNames();
    for (const name of names) {
      let card = layerCards.get(name);
      const show = sel.includes(name);
      if (!card && !show) continue;
      if (!card) {
        card = layerCard(name);
        layerCards.set(name, card);
      }
      card.el.hidden = !show;
      if (show) card.update(w);
    }
    // keep cards in the order of the layers
    for (const name of names) { const c = layerCards.get(name); if (c) cards.appendChild(c.el); }
  }

  function layerCard(name) {
    const el = h("section", "hw-am-layer");
    el.dataset.layer = name;
    const head = h("div", "hw-am-layer-head");
    const nameEl = h("span", "hw-am-layer-name", name);
    const meta = h("span", "hw-am-layer-meta");
    const flag = h("span", "hw-flag");
    head.append(nameEl, meta, flag);
    const warnBox = h("div", "hw-warnings");
    warnBox.setAttribute("role", "status");
    const notice = h("div", "hw-am-notice");
    notice.setAttribute("role", "status");
    const main = h("div", "hw-am-layer-main");
    const ridgeBox = h("div", "hw-panel");
    ridgeBox.append(h("div", "hw-panel-title", "activation histograms over time"));
    const ridge = new Ridgeline();
    ridgeBox.append(ridge.el);
    const detailBox = h("div", "hw-panel hw-detail");
    const detailTitle = h("div", "hw-panel-title", "current activations");
    const detailCanvas = /** @type {HTMLCanvasElement} */ (h("canvas", "hw-detail-canvas"));
    const detailNote = h("div", "hw-note");
    const detailBar = h("div", "hw-detail-bar");
    detailBox.append(detailTitle, detailCanvas, detailBar, detailNote);
    main.append(ridgeBox, detailBox);
    const small = h("div", "hw-am-layer-small");
    const moments = new LineChart("mean ± std", { height: 110, xTitle: "step", yTitle: "activation" });
    const sparsity = new LineChart("zeros and dead units (%)", { height: 110, xTitle: "step", yTitle: "percent", yFormat: "percent" });
    const grad = new LineChart("gradient norm", { height: 110, xTitle: "step", yTitle: "‖∂L/∂output‖", clipSpikes: true });
    small.append(moments.el, sparsity.el, grad.el);
    el.append(head, warnBox, notice, main, small);
    let shownWarnings = "";
    let drawnDetail = null;

    function update(w) {
      const s = store.layer(name);
      const f = (field) => store.statIndex(field);
      const info = store.layerInfo[name] || {};
      const shape = s && s.shape.length ? `(${s.shape.join(", ")})` : "";
      const calls = info.calls && info.calls > 1 ? `${info.calls} calls per step (merged)` : "";
      const source = info.source && info.source !== "output" ? String(info.source) : "";
      meta.textContent = [shape, source, calls].filter(Boolean).join(" · ");
      meta.title = info.units ? `units: ${info.units}` : "";
      const problem = info.state === "never_ran" || info.state === "eval_only" || info.state === "error";
      notice.textContent = problem ? String(info.message || "") : "";
      notice.dataset.state = problem ? String(info.state) : "";
      notice.hidden = !problem;
      el.dataset.state = String(info.state || "");
      const nonfinite = s && s.count ? sumField(s, f("nonfinite")) : 0;
      flag.textContent = nonfinite ? `NaN/inf: ${fmt(nonfinite)} values` : "";
      flag.hidden = !nonfinite;
      const warns = warningsOf(name).filter((w) => !dismissed.has(`${name}|${w.kind}`));
      const key = warns.map((w) => `${w.kind}:${w.text}`).join("|");
      if (key !== shownWarnings) {
        shownWarnings = key;
        warnBox.replaceChildren(...warns.map((w) => {
          const line = h("div", "hw-warning");
          line.dataset.kind = w.kind;
          line.dataset.level = w.level;
          const text = h("span", "hw-warning-text", w.text);
          text.title = w.detail;
          const x = /** @type {HTMLButtonElement} */ (h("button", "hw-dismiss", "×"));
          x.type = "button";
          x.title = "Dismiss this warning (it stays dismissed for this layer)";
          x.setAttribute("aria-label", `dismiss: ${w.text}`);
          x.addEventListener("click", () => { dismissed.add(`${name}|${w.kind}`); schedule(); });
          line.append(text, x);
          return line;
        }));
      }
      el.dataset.warnings = warns.map((w) => w.kind).join(" ");
      const inner = w - 24; // the card's padding and border (22 px) and a pixel to spare
      const twoCol = inner >= 700;
      const ridgeW = twoCol ? Math.floor(inner * 0.56) : inner;
      const detailW = twoCol ? inner - ridgeW - 20 : inner;
      ridgeBox.style.width = `${ridgeW}px`;
      detailBox.style.width = `${detailW}px`;
      if (s) ridge.update(s, ridgeW, f("outside"));
      else ridge.draw();
      const d = store.details.get(name);
      if (d && (d !== drawnDetail || detailCanvas.dataset.width !== String(detailW))) {
        const scale = drawMaps(detailCanvas, d.values, d.shape, detailW, 240);
        detailBar.replaceChildren(colorBar(scale.name, scale.lo, scale.hi, { title: "activation",
          note: scale.name === "diverging" ? "centred on 0, scaled to the largest magnitude" : "from 0 to the largest value" }));
        const kind = d.kind ? d.kind.replace(" x ", " × ").replace("maps", "feature maps")
          : d.shape.length === 3 ? "feature maps" : "units × examples";
        detailTitle.textContent = `current activations: ${kind} at step ${d.step}`;
        detailNote.textContent = d.note;
        detailBox.dataset.step = String(d.step);
        detailBox.dataset.ready = "true";
        detailCanvas.dataset.width = String(detailW);
        drawnDetail = d;
      } else if (!d) {
        detailTitle.textContent = "current activations";
        detailNote.textContent = isStatic ? "no activations were recorded for this layer"
          : problem ? "nothing to show: see above" : "waiting for this layer's activations from Python…";
        detailBox.dataset.ready = "false";
      }
      const cw = inner >= 660 ? Math.floor((inner - 26) / 3) : inner >= 440 ? Math.floor((inner - 14) / 2) : inner;
      if (!s || !s.count) {
        for (const c of [moments, sparsity, grad]) c.update({ xs: [], lines: [] }, cw);
        return;
      }
      const xs = stepsOf(s);
      const mean = column(s, f("mean"));
      const std = column(s, f("std"));
      const lo = mean.map((m, i) => m - std[i]);
      const hi = mean.map((m, i) => m + std[i]);
      moments.update({
        xs, value: `${fmt(mean[s.count - 1])} ± ${fmt(std[s.count - 1])}`,
        lines: [
          { ys: mean, lo, hi, label: "mean", color: PALETTE[0] },
          { ys: column(s, f("min")), label: "min", color: "#8c8c8c", dash: [2, 3] },
          { ys: column(s, f("max")), label: "max", color: "#8c8c8c", dash: [2, 3] },
        ],
      }, cw);
      const zeros = column(s, f("zero_frac"));
      const dead = column(s, f("dead_frac"));
      sparsity.update({
        xs, yMin: 0, yMax: 1,
        value: `zeros ${pct(zeros[s.count - 1])} · dead ${pct(dead[s.count - 1])}`
          + (Array.isArray(info.saturated) ? ` · saturated ${pct(info.saturated[1])} (step ${fmt(info.saturated[0])})` : ""),
        lines: [
          { ys: zeros, label: "zeros", color: PALETTE[7] },
          { ys: dead, label: "dead", color: PALETTE[1] },
        ],
      }, cw);
      const g = column(s, f("grad_norm"));
      const anyGrad = g.some((v) => Number.isFinite(v));
      grad.update({
        xs, value: anyGrad ? fmt(lastFinite(g)) : "not captured",
        lines: anyGrad ? [{ ys: g, label: "norm", color: PALETTE[10] }] : [],
      }, cw);
    }

    function dispose() { ridge.dispose(); moments.dispose(); sparsity.dispose(); grad.dispose(); }
    return { el, update, dispose };
  }

  function draw() {
    const w = width();
    updateHeader();
    updateChips();
    updateEvents();
    updateScalars(w);
    updateCards(w);
  }

  frame.now();

  return () => {
    frame.dispose();
    clearInterval(ticker);
    pause.removeEventListener("click", onPause);
    model.off("msg:custom", onCustom);
    model.off("change:_history", onSnapshot);
    model.off("change:selected_layers", schedule);
    model.off("change:paused", schedule);
    model.off("change:title", schedule);
    for (const c of scalarCharts.values()) c.dispose();
    for (const c of layerCards.values()) c.dispose();
    root.remove();
  };
}

/** @param {import("./lib/store.js").SeriesMirror} s */
function stepsOf(s) {
  const xs = new Array(s.count);
  for (let i = 0; i < s.count; i++) xs[i] = s.step(i);
  return xs;
}

/** @param {import("./lib/store.js").SeriesMirror} s @param {number} field */
function column(s, field) {
  const out = new Array(s.count);
  for (let i = 0; i < s.count; i++) out[i] = s.value(i, field);
  return out;
}

function sumField(s, field) {
  let total = 0;
  for (let i = 0; i < s.count; i++) total += s.value(i, field) || 0;
  return total;
}


function lastFinite(arr) {
  for (let i = arr.length - 1; i >= 0; i--) if (Number.isFinite(arr[i])) return arr[i];
  return NaN;
}

export default { render };

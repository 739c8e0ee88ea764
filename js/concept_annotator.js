// @ts-check
// The ConceptAnnotator view. Concepts are shown as Python acknowledged them (the store's snapshot, on disk);
// each change made here is an operation with its own id, kept in a queue (and in localStorage, per annotation
// file) until Python acknowledges it, and resent until then. Concept names are user text: textContent only.
import { decodeArrays } from "./lib/codec.js";
import { h } from "./lib/chart.js";
import { ExamplePages, PAGE, imageOf, thumbCanvas } from "./lib/examples.js";
import { CSS } from "./lib/style.js";

const RESEND_MS = 2000;
const THUMB = 48;
const PER_PAGE = 60;

const LOCAL_CSS = `
.hw-ca-body { display: flex; gap: 16px; align-items: flex-start; flex-wrap: wrap; }
.hw-ca-side { width: 300px; max-width: 100%; display: flex; flex-direction: column; gap: 8px; }
.hw-ca-concept { display: flex; flex-direction: column; gap: 3px; padding: 5px 7px; border-radius: 5px;
  border: 1px solid var(--jp-border-color2, #e3e6ea); cursor: pointer; }
.hw-ca-concept[aria-current="true"] { border-color: var(--hw-accent); box-shadow: inset 0 0 0 1px var(--hw-accent); }
.hw-ca-row { display: flex; gap: 6px; align-items: center; }
.hw-ca-swatch { width: 12px; height: 12px; border-radius: 3px; flex: none; }
.hw-ca-name { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; flex: 1; }
.hw-ca-count { font-variant-numeric: tabular-nums; color: var(--hw-muted); font-size: 12px; }
.hw-ca-actions { display: flex; gap: 4px; flex-wrap: wrap; }
.hw-ca-actions .hw-btn { font-size: 11px; padding: 1px 6px; }
.hw-ca-new { display: flex; gap: 6px; }
.hw-ca-new input { flex: 1; font: inherit; }
.hw-ca-status { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: var(--hw-neutral-tint); }
.hw-ca-status[data-state="saved"] { background: var(--hw-ok-tint); }
.hw-ca-status[data-state="pending"] { background: var(--hw-warn-tint); }
.hw-ca-status[data-state="error"] { background: var(--hw-bad-tint); color: var(--hw-bad); }
.hw-ca-error { font-size: 12px; color: var(--hw-bad); }
.hw-ca-error:empty { display: none; }
.hw-ca-main { flex: 1; min-width: min(320px, 100%); }
.hw-ca-tabs { display: flex; gap: 6px; margin-bottom: 6px; flex-wrap: wrap; align-items: center; }
.hw-ca-grid { display: flex; flex-wrap: wrap; gap: 4px; }
.hw-ca-item { position: relative; display: flex; flex-direction: column; align-items: center; font-size: 10px;
  padding: 2px; border-radius: 4px; border: 2px solid transparent; cursor: pointer;
  color: var(--hw-muted); }
.hw-ca-item[aria-selected="true"] { border-color: var(--hw-accent); background: rgba(59,111,216,0.10); }
.hw-ca-item canvas { image-rendering: pixelated; }
.hw-ca-dots { display: flex; gap: 2px; height: 6px; }
.hw-ca-dot { width: 6px; height: 6px; border-radius: 50%; }
.hw-ca-text { max-width: 260px; font-size: 12px; color: var(--jp-ui-font-color1, #1f2328); text-align: left; }
.hw-ca-pager { display: flex; gap: 8px; align-items: center; margin-top: 6px; font-size: 12px; }
`;

/** @param {any} state */
function decode(state) {
  if (!state || !state.header || !state.data) return null;
  return { ...state.header, arrays: decodeArrays(state.header.index || {}, state.data) };
}

/** A pending-operation queue that survives page reloads (localStorage), keyed by annotation file. */
export class OpQueue {
  /** @param {string} key @param {Storage | null} storage */
  constructor(key, storage) {
    this.key = `hiddenwidgets-concepts:${key}`;
    this.storage = storage;
    /** @type {{ op: any, sentAt: number, tries: number }[]} */
    this.items = this.stored().map((op) => ({ op, sentAt: 0, tries: 0 }));
    this.settled = new Set();
  }
  stored() {
    try {
      const saved = this.storage ? JSON.parse(this.storage.getItem(this.key) || "[]") : [];
      return Array.isArray(saved) ? saved : [];
    } catch { return []; }
  }
  /** Write the pending operations, merged with what other queues on the same file stored (another view, another
   * annotator on the file): theirs stay unless this queue saw them acknowledged. */
  save() {
    if (!this.storage) return;
    const mine = new Set(this.items.map((i) => i.op.op_id));
    const ops = [...this.stored().filter((op) => !mine.has(op.op_id) && !this.settled.has(op.op_id)), ...this.items.map((i) => i.op)];
    try {
      if (ops.length) this.storage.setItem(this.key, JSON.stringify(ops));
      else this.storage.removeItem(this.key);
    } catch { /* storage full or blocked: the in-memory queue still resends */ }
  }
  push(op) { this.items.push({ op, sentAt: 0, tries: 0 }); this.save(); }
  /** Remove an acknowledged (or refused) operation; returns it. */
  settle(opId) {
    this.settled.add(opId);
    const i = this.items.findIndex((x) => x.op.op_id === opId);
    if (i < 0) { this.save(); return null; }
    const [item] = this.items.splice(i, 1);
    this.save();
    return item.op;
  }
  /** Operations to (re)send now: never sent, or sent longer ago than `after` ms, doubled with each try up to 16x
   * (a kernel busy for minutes without subshells gets a handful of copies, not one every 2 s). Marks them sent. */
  due(now, after = RESEND_MS) {
    const out = [];
    for (const item of this.items) {
      const wait = after * 2 ** Math.min(Math.max(item.tries - 1, 0), 4);
      if (!item.sentAt || now - item.sentAt >= wait) { item.sentAt = now; item.tries += 1; out.push(item.op); }
    }
    return out;
  }
  get length() { return this.items.length; }
}

/** One queue per annotation file per copy of this module (the views of one annotator); queues of other annotators
 * on the same file share its localStorage entry by merging (OpQueue.save). */
const QUEUES = new Map();
export function queueFor(key, storage) {
  if (!QUEUES.has(key)) QUEUES.set(key, new OpQueue(key, storage));
  return QUEUES.get(key);
}

let counter = 0;
export function opId() {
  counter += 1;
  const rand = Math.random().toString(36).slice(2, 10);
  return `${Date.now().toString(36)}-${rand}-${counter}`;
}

function render({ model, el }) {
  const isStatic = Boolean(model.get("__hw_static"));
  const storage = typeof localStorage !== "undefined" && !isStatic ? localStorage : null;
  const queue = queueFor(model.get("store_key") || "default", storage);
  const root = h("div", "hw-am hw-ca");
  root.dataset.hwView = "concept_annotator";
  root.tabIndex = 0;
  const style = h("style");
  style.textContent = CSS + LOCAL_CSS;
  const head = h("div", "hw-am-header");
  const title = h("span", "hw-am-title");
  const status = h("span", "hw-ca-status");
  status.setAttribute("role", "status");
  const file = h("span", "hw-am-frames");
  head.append(title, status, file);
  const errorLine = h("div", "hw-ca-error");
  errorLine.setAttribute("role", "alert");

  const side = h("div", "hw-ca-side");
  const newRow = h("div", "hw-ca-new");
  const nameInput = /** @type {HTMLInputElement} */ (h("input"));
  nameInput.placeholder = "new concept name (N)";
  nameInput.maxLength = 200;
  const createBtn = h("button", "hw-btn", "create from selection");
  newRow.append(nameInput, createBtn);
  const undoRow = h("div", "hw-ca-actions");
  const undoBtn = h("button", "hw-btn", "↶ undo");
  undoBtn.title = "Undo the last change (Ctrl+Z)";
  const redoBtn = h("button", "hw-btn", "↷ redo");
  redoBtn.title = "Redo (Ctrl+Shift+Z)";
  const selInfo = h("span", "hw-ca-count");
  undoRow.append(undoBtn, redoBtn, selInfo);
  const list = h("div");
  list.style.display = "flex";
  list.style.flexDirection = "column";
  list.style.gap = "6px";
  const keys = h("div", "hw-note", "N new · A add · R remove · 1–9 pick · Ctrl+Z undo · Ctrl+Shift+Z redo · Esc clear");
  side.append(newRow, undoRow, list, keys);

  const main = h("div", "hw-ca-main");
  const tabs = h("div", "hw-ca-tabs");
  const grid = h("div", "hw-ca-grid");
  const pager = h("div", "hw-ca-pager");
  const prev = h("button", "hw-btn", "‹ prev");
  const next = h("button", "hw-btn", "next ›");
  const pageText = h("span");
  pager.append(prev, pageText, next);
  main.append(tabs, grid, pager);
  const body = h("div", "hw-ca-body");
  body.append(side, main);
  root.append(style, head, errorLine, body);
  el.appendChild(root);

  let selection = new Set();
  let renaming = false;
  let listStale = false;
  let active = "";
  let mode = "all"; // "all", "selection", or a concept id
  let pageNo = 0;
  const pages = new ExamplePages(model, isStatic);
  const listeners = [];
  const on = (node, ev, fn) => { node.addEventListener(ev, fn); listeners.push(() => node.removeEventListener(ev, fn)); };
  const snapshot = () => model.get("snapshot") || { concepts: [], revision: 0 };
  const labels = () => { const d = decode(model.get("_labels")); return d ? d.arrays.label : null; };

  // -- operations --------------------------------------------------------------------------------------------
  function send(ops) {
    if (isStatic || !ops.length) return;
    try {
      model.send({ type: "ops", ops });
    } catch { /* no kernel (restarting, disconnected): the operations stay queued and are resent */ }
  }
  function submit(op) {
    if (isStatic) { errorLine.textContent = "static page: concepts are read-only here"; return; }
    const full = { ...op, op_id: opId(), made: Date.now() };
    queue.push(full);
    if (typeof performance !== "undefined" && performance.mark) performance.mark(`hw-op-${full.op_id}`);
    send(queue.due(Date.now()));
    showStatus();
  }
  function flush() { send(queue.due(Date.now())); showStatus(); }
  const timer = /** @type {any} */ (setInterval(flush, 700));
  function chosen() { return [...selection].sort((a, b) => a - b); }
  function needSelection(what) {
    if (selection.size) return true;
    errorLine.textContent = `nothing is selected to ${what}: select examples in the gallery or the projector first`;
    return false;
  }
  function createConcept() {
    const name = nameInput.value.trim();
    if (!name) { errorLine.textContent = "type a name for the new concept"; nameInput.focus(); return; }
    if (!needSelection(`make concept "${name}" from`)) return;
    submit({ kind: "create", name, members: chosen() });
    nameInput.value = "";
  }
  function addTo(id) { if (needSelection("add")) submit({ kind: "add", concept: id, members: chosen() }); }
  function removeFrom(id) { if (needSelection("remove")) submit({ kind: "remove", concept: id, members: chosen() }); }

  // -- drawing -------------------------------------------------------------------------------------------------
  function showStatus() {
    const snap = snapshot();
    const n = queue.length;
    if (isStatic) { status.dataset.state = "saved"; status.textContent = `static page · revision ${snap.revision}`; return; }
    status.dataset.state = n ? "pending" : "saved";
    status.textContent = n ? `${n} change${n > 1 ? "s" : ""} not saved yet (kept here and resent)` : `all changes saved · revision ${snap.revision}`;
  }
  function drawList() {
    if (renaming) { listStale = true; return; } // never redraw under a half-typed name; redrawn when it closes
    listStale = false;
    const snap = snapshot();
    const concepts = snap.concepts || [];
    if (active && !concepts.some((c) => c.id === active)) active = "";
    if (!active && concepts.length) active = concepts[0].id;
    undoBtn.toggleAttribute("disabled", !snap.can_undo || isStatic);
    redoBtn.toggleAttribute("disabled", !snap.can_redo || isStatic);
    selInfo.textContent = `${selection.size} selected`;
    list.replaceChildren(...concepts.map((c, k) => {
      const card = h("div", "hw-ca-concept");
      card.dataset.concept = c.id;
      card.setAttribute("aria-current", String(c.id === active));
      const row = h("div", "hw-ca-row");
      const sw = h("span", "hw-ca-swatch");
      sw.style.background = c.color;
      const name = h("span", "hw-ca-name", c.name);
      name.title = c.name;
      let inSel = 0;
      for (const i of c.members) if (selection.has(i)) inSel++;
      const count = h("span", "hw-ca-count", `${k < 9 ? `${k + 1} · ` : ""}${c.members.length}${selection.size ? ` (${inSel} selected)` : ""}`);
      row.append(sw, name, count);
      const actions = h("div", "hw-ca-actions");
      const mk = (text, tip, fn) => { const b = h("button", "hw-btn", text); b.title = tip; b.addEventListener("click", (ev) => { ev.stopPropagation(); fn(); }); if (isStatic) b.setAttribute("disabled", ""); actions.append(b); return b; };
      mk("+ add", "Add the selection (A)", () => addTo(c.id)).dataset.action = "add";
      mk("− remove", "Remove the selection (R)", () => removeFrom(c.id)).dataset.action = "remove";
      mk("show", "Show its members in the gallery", () => { mode = c.id; pageNo = 0; drawTabs(); drawGrid(); });
      mk("rename", "Rename", () => {
        const input = /** @type {HTMLInputElement} */ (h("input"));
        input.value = c.name;
        input.maxLength = 200;
        let finished = false;
        const done = (keep) => {
          if (finished) return; // Enter, then the blur that removing the input causes: one rename
          finished = true;
          renaming = false;
          if (keep && input.value.trim() && input.value.trim() !== c.name) submit({ kind: "rename", concept: c.id, name: input.value.trim() });
          if (input.isConnected) input.replaceWith(name);
          if (listStale) drawList();
        };
        input.addEventListener("keydown", (ev) => { ev.stopPropagation(); if (ev.key === "Enter") done(true); if (ev.key === "Escape") done(false); });
        input.addEventListener("blur", () => done(true));
        renaming = true;
        name.replaceWith(input);
        input.focus();
      }).dataset.action = "rename";
      mk("delete", "Delete the concept (undo brings it back)", () => submit({ kind: "delete", concept: c.id })).dataset.action = "delete";
      card.append(row, actions);
      card.addEventListener("click", () => { active = c.id; drawList(); });
      return card;
    }));
  }
  function drawTabs() {
    const snap = snapshot();
    const items = [["all", `all (${model.get("n")})`], ["selection", `selection (${selection.size})`],
      ...(snap.concepts || []).map((c) => [c.id, `${c.name} (${c.members.length})`])];
    if (!items.some(([id]) => id === mode)) mode = "all";
    tabs.replaceChildren(...items.map(([id, text]) => {
      const b = h("button", "hw-chip", String(text));
      b.setAttribute("aria-pressed", String(id === mode));
      b.addEventListener("click", () => { mode = id; pageNo = 0; drawTabs(); drawGrid(); });
      return b;
    }));
  }
  function shownIndices() {
    if (mode === "all") return null;
    if (mode === "selection") return chosen();
    const c = (snapshot().concepts || []).find((x) => x.id === mode);
    return c ? c.members : [];
  }
  function drawGrid() {
    const n = model.get("n") || 0;
    const idx = shownIndices();
    const total = idx ? idx.length : n;
    const pagesTotal = Math.max(1, Math.ceil(total / PER_PAGE));
    pageNo = Math.min(pageNo, pagesTotal - 1);
    pageText.textContent = `${total ? pageNo * PER_PAGE + 1 : 0}–${Math.min(total, (pageNo + 1) * PER_PAGE)} of ${total}`;
    prev.toggleAttribute("disabled", pageNo === 0);
    next.toggleAttribute("disabled", pageNo >= pagesTotal - 1);
    const kind = model.get("example_kind");
    const meta = model.get("example_meta") || {};
    const lab = labels();
    const field = model.get("label_field") || {};
    const memberOf = new Map();
    for (const c of snapshot().concepts || []) for (const i of c.members) { if (!memberOf.has(i)) memberOf.set(i, []); memberOf.get(i).push(c.color); }
    const items = [];
    for (let k = pageNo * PER_PAGE; k < Math.min(total, (pageNo + 1) * PER_PAGE); k++) {
      const i = idx ? idx[k] : k;
      const item = h("div", "hw-ca-item");
      item.dataset.index = String(i);
      item.setAttribute("aria-selected", String(selection.has(i)));
      const p = pages.get(i);
      const j = i % PAGE;
      if (kind === "image") {
        item.append(p && p.images ? thumbCanvas(imageOf(p, i, meta.shape), meta.shape, THUMB) : h("span", "hw-note", isStatic ? "not saved" : "…"));
      } else if (kind === "text") {
        item.append(h("div", "hw-ca-text", p && p.texts ? String(p.texts[j] ?? "") : "…"));
      }
      const dots = h("div", "hw-ca-dots");
      for (const colour of memberOf.get(i) || []) { const d = h("span", "hw-ca-dot"); d.style.background = colour; dots.append(d); }
      const name = lab && field.names ? String(field.names[lab[i]] ?? "") : "";
      item.append(dots, h("span", "", name ? `#${i} · ${name}` : `#${i}`));
      items.push(item);
    }
    grid.replaceChildren(...items);
  }
  let anchor = -1;
  on(grid, "click", (ev) => {
    const item = /** @type {HTMLElement} */ (ev.target).closest?.(".hw-ca-item");
    if (!item) return;
    const i = Number(/** @type {HTMLElement} */ (item).dataset.index);
    if (ev.shiftKey && anchor >= 0) { // range over the items shown
      const shown = [...grid.querySelectorAll(".hw-ca-item")].map((x) => Number(/** @type {HTMLElement} */ (x).dataset.index));
      const a = shown.indexOf(anchor); const b = shown.indexOf(i);
      if (a >= 0 && b >= 0) for (let k = Math.min(a, b); k <= Math.max(a, b); k++) selection.add(shown[k]);
    } else if (selection.has(i)) selection.delete(i); else selection.add(i);
    anchor = i;
    for (const node of grid.querySelectorAll(".hw-ca-item")) {
      const el2 = /** @type {HTMLElement} */ (node);
      el2.setAttribute("aria-selected", String(selection.has(Number(el2.dataset.index))));
    }
    drawList();
    drawTabs();
  });
  on(prev, "click", () => { pageNo = Math.max(0, pageNo - 1); drawGrid(); });
  on(next, "click", () => { pageNo += 1; drawGrid(); });
  on(createBtn, "click", createConcept);
  on(nameInput, "keydown", (ev) => { ev.stopPropagation(); if (ev.key === "Enter") createConcept(); if (ev.key === "Escape") root.focus(); });
  on(undoBtn, "click", () => submit({ kind: "undo" }));
  on(redoBtn, "click", () => submit({ kind: "redo" }));
  on(root, "keydown", (ev) => {
    const key = ev.key.toLowerCase();
    const ctrl = ev.ctrlKey || ev.metaKey;
    if (ctrl && key === "z") submit({ kind: ev.shiftKey ? "redo" : "undo" });
    else if (ctrl && key === "y") submit({ kind: "redo" });
    else if (ctrl) return;
    else if (key === "n") nameInput.focus();
    else if (key === "a" && active) addTo(active);
    else if (key === "r" && active) removeFrom(active);
    else if (key === "escape") { selection = new Set(); refresh(); } else if (/^[1-9]$/.test(key)) {
      const c = (snapshot().concepts || [])[Number(key) - 1];
      if (c) { active = c.id; drawList(); }
    } else return;
    ev.preventDefault();
  });
  function refresh() { drawList(); drawTabs(); drawGrid(); showStatus(); }

  // -- model ------------------------------------------------------------------------------------------------------
  const onSnapshot = () => { refresh(); };
  const onSelection = () => {
    const s = decode(model.get("_selection"));
    selection = new Set(s ? Array.from(/** @type {Int32Array} */ (s.arrays.indices)) : []);
    if (selection.size && mode === "all") mode = "selection";
    pageNo = 0;
    refresh();
  };
  const onMsg = (msg, buffers) => {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "ack" || msg.type === "nack") {
      if (msg.type === "nack" && msg.retry) { errorLine.textContent = `saving failed, will retry: ${msg.error}`; showStatus(); return; }
      const op = queue.settle(msg.op_id);
      if (op && typeof performance !== "undefined" && performance.measure) {
        try { performance.measure("hw-concept-saved", `hw-op-${msg.op_id}`); } catch { /* mark from a previous page */ }
      }
      errorLine.textContent = msg.type === "nack" ? String(msg.error) : "";
      showStatus();
    } else if (pages.receive(msg, buffers)) {
      drawGrid();
    }
  };
  const events = [["change:snapshot", onSnapshot], ["change:_selection", onSelection], ["change:title", refresh], ["msg:custom", onMsg]];
  for (const [ev, fn] of events) model.on(ev, fn);
  title.textContent = model.get("title") || "Concepts";
  if (isStatic) { nameInput.disabled = true; createBtn.setAttribute("disabled", ""); }
  const path = String(model.get("path") || "");
  file.textContent = isStatic ? path.split(/[\\/]/).pop() || "" : path; // no local paths in course pages
  onSelection();
  flush(); // operations a previous page (or kernel) never acknowledged
  return () => {
    for (const [ev, fn] of events) model.off(ev, fn);
    for (const off of listeners) off();
    clearInterval(timer);
    root.remove();
  };
}

export default { render };

// @ts-check
// Boots a view in a static page written by hiddenwidgets.save_html: reads the embedded payload, imports the
// view's ES module from a blob: URL (allowed by the page's content security policy, which forbids the
// network) and renders it against a read-only model that answers like an anywidget model.
import { base64ToBytes } from "./lib/codec.js";

class StaticModel {
  /** @param {Record<string, any>} state */
  constructor(state) {
    this.state = { ...state, __hw_static: true };
    /** @type {Map<string, Set<Function>>} */
    this.listeners = new Map();
  }
  /** @param {string} key */
  get(key) { return this.state[key]; }
  /** @param {string} key @param {any} value */
  set(key, value) {
    this.state[key] = value;
    for (const cb of this.listeners.get(`change:${key}`) || []) cb();
  }
  save_changes() {}
  send() {}
  /** @param {string} event @param {Function} cb */
  on(event, cb) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event)?.add(cb);
  }
  /** @param {string} event @param {Function} cb */
  off(event, cb) { this.listeners.get(event)?.delete(cb); }
}

/** Put each decoded buffer back at its path in the state (ipywidgets' buffer_paths convention). */
function placeBuffers(state, buffers) {
  for (const { path, data } of buffers) {
    const bytes = base64ToBytes(data);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let obj = state;
    for (let i = 0; i < path.length - 1; i++) obj = obj[path[i]];
    obj[path[path.length - 1]] = view;
  }
  return state;
}

/**
 * Follow the reader's colour scheme: the page's style sheet (hiddenwidgets/pipeline/export.py) defines
 * JupyterLab's --jp-* variables for light and dark under prefers-color-scheme, and the views read the theme
 * from body[data-jp-theme-light] as in JupyterLab; a change of the system setting redraws them (lib/frame.js).
 */
function followColourScheme() {
  if (document.body.dataset.jpThemeLight !== undefined) return; // a page given a fixed theme keeps it
  const mm = typeof window.matchMedia === "function" ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  const apply = () => { document.body.dataset.jpThemeLight = String(!(mm && mm.matches)); };
  apply();
  if (mm && typeof mm.addEventListener === "function") mm.addEventListener("change", apply);
}

/**
 * Inside an <iframe> (a course site, a converted notebook), tell the parent how tall the page is, at load and
 * whenever that changes (the view grows, the iframe's width changes the layout): the message is
 * {type: "hiddenwidgets:resize", version: 1, height} in CSS pixels, and the parent's listener
 * (hiddenwidgets.embed_snippet()) sets the iframe's height, so the page never scrolls inside its frame.
 */
function reportHeight() {
  if (window.parent === window || typeof ResizeObserver !== "function") return;
  let last = -1;
  const send = () => {
    const html = document.documentElement;
    // the <html> box is as tall as the content (not the viewport); add a horizontal scroll bar if one shows
    const height = Math.ceil(html.getBoundingClientRect().height) + Math.max(0, window.innerHeight - html.clientHeight);
    if (height === last) return;
    last = height;
    window.parent.postMessage({ type: "hiddenwidgets:resize", version: 1, height }, "*");
  };
  new ResizeObserver(send).observe(document.documentElement);
  send();
}

async function boot() {
  followColourScheme();
  reportHeight();
  const root = document.getElementById("hw-root");
  const holder = document.getElementById("hw-payload");
  if (!root || !holder) return;
  try {
    const payload = JSON.parse(holder.textContent || "{}");
    const state = placeBuffers(payload.state, payload.buffers || []);
    const url = URL.createObjectURL(new Blob([payload.module], { type: "text/javascript" }));
    const mod = await import(/* @vite-ignore */ url);
    URL.revokeObjectURL(url);
    const view = mod.default;
    const model = new StaticModel(state);
    if (view.initialize) await view.initialize({ model });
    await view.render({ model, el: root });
    root.dataset.rendered = "true";
  } catch (err) {
    const pre = document.createElement("pre");
    pre.textContent = `This page could not render its view: ${err}`;
    root.appendChild(pre);
    root.dataset.rendered = "error";
  }
}

boot();

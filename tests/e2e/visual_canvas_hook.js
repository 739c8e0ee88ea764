// Installed by tests/e2e/visual.py before any view code runs (page.add_init_script); see CANVAS_HOOK there.
(() => {
  if (window.__hwHooked) return;  // installed once (init script, or late by visual.audit_in_lab)
  window.__hwHooked = true;
  const P = CanvasRenderingContext2D.prototype;
  // activity counters for visual.settle(): drawing calls and DOM changes
  window.__hwActivity = 0;
  new MutationObserver(() => { window.__hwActivity++; }).observe(document, {
    subtree: true, childList: true, attributes: true, characterData: true });
  for (const name of ['drawImage', 'putImageData', 'stroke', 'fill']) {
    const orig = P[name];
    P[name] = function () { window.__hwActivity++; return orig.apply(this, arguments); };
  }
  const list = (c) => (c.__hwDrawnText || (c.__hwDrawnText = []));
  const reset = (c) => { c.__hwDrawnText = []; };
  for (const prop of ['width', 'height']) {
    const d = Object.getOwnPropertyDescriptor(HTMLCanvasElement.prototype, prop);
    Object.defineProperty(HTMLCanvasElement.prototype, prop, {
      configurable: true, enumerable: d.enumerable, get() { return d.get.call(this); },
      set(v) { reset(this); d.set.call(this, v); } });
  }
  const full = (ctx, x, y, w, h) => {
    const m = ctx.getTransform();
    const x0 = m.a * x + m.e, y0 = m.d * y + m.f, x1 = m.a * (x + w) + m.e, y1 = m.d * (y + h) + m.f;
    return m.b === 0 && m.c === 0 && Math.min(x0, x1) <= 0 && Math.min(y0, y1) <= 0 &&
      Math.max(x0, x1) >= ctx.canvas.width && Math.max(y0, y1) >= ctx.canvas.height;
  };
  const clearRect = P.clearRect, fillRect = P.fillRect;
  P.clearRect = function (x, y, w, h) { window.__hwActivity++; if (this.canvas && full(this, x, y, w, h)) reset(this.canvas); return clearRect.apply(this, arguments); };
  P.fillRect = function (x, y, w, h) { if (this.canvas && full(this, x, y, w, h)) reset(this.canvas); return fillRect.apply(this, arguments); };
  const wrap = (name, styleProp) => {
    const orig = P[name];
    P[name] = function (text, x, y) {
      window.__hwActivity++;
      try {
        const s = String(text);
        if (this.canvas && s.trim()) {
          const t = this.measureText(s);
          const l = x - t.actualBoundingBoxLeft, r = x + t.actualBoundingBoxRight;
          const top = y - t.actualBoundingBoxAscent, bot = y + t.actualBoundingBoxDescent;
          const m = this.getTransform();
          const pt = (px, py) => [m.a * px + m.c * py + m.e, m.b * px + m.d * py + m.f];
          // the colour of filled text; outlined text (strokeText: halos drawn under the fill) counts for overlaps
          // only, and gives way to the fill drawn in the same place
          const style = styleProp === 'fillStyle' ? this.fillStyle : null;
          const L = list(this.canvas);
          const rec = {text: s, corners: [pt(l, top), pt(r, top), pt(r, bot), pt(l, bot)],
                       color: typeof style === 'string' ? style : null, alpha: this.globalAlpha,
                       px: (parseFloat((/([\d.]+)px/.exec(this.font) || [0, 10])[1])) * Math.hypot(m.a, m.b), font: this.font};
          const key = s + '|' + rec.corners.map((c) => c.map(Math.round).join(',')).join(';');
          rec.key = key;
          const same = L.findIndex((e) => e.key === key);
          if (same < 0) L.push(rec);
          else if (!L[same].color && rec.color) L[same] = rec;
        }
      } catch (e) { /* never break the view */ }
      return orig.apply(this, arguments);
    };
  };
  wrap('fillText', 'fillStyle');
  wrap('strokeText', 'strokeStyle');
})();

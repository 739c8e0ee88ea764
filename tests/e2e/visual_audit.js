// The in-page audit of tests/e2e/visual.py: page.evaluate(AUDIT_JS, containerSelector) returns, per
// hiddenwidgets view root inside the containers, its overflow, overlapping labels and text colours.
(containerSelector) => {
  const LABEL = /label|tick|title/i;
  const containers = [...document.querySelectorAll(containerSelector)];
  const cls = (el) => (el.getAttribute && el.getAttribute('class')) || '';
  const desc = (el) => {
    const c = cls(el).trim().split(/\s+/).filter(Boolean).slice(0, 2).join('.');
    return el.tagName.toLowerCase() + (c ? '.' + c : '');
  };
  const text = (el) => (el.textContent || '').replace(/\s+/g, ' ').trim().slice(0, 60);
  const visible = (el) => {
    if (el.checkVisibility && !el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) return false;
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  };
  const parse = (c) => {
    const m = c.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const colourOf = (c) => {
    if (typeof c !== 'string') return null;
    const h = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(c.trim());
    if (!h) return parse(c);
    const x = h[1].length === 3 ? h[1].replace(/./g, '$&$&') : h[1];
    return [0, 2, 4].map((i) => parseInt(x.slice(i, i + 2), 16)).concat([1]);
  };
  const over = (fg, bg) => [0, 1, 2].map((i) => fg[3] * fg[i] + (1 - fg[3]) * bg[i]);
  const hex = (c) => '#' + c.slice(0, 3).map((v) => Math.round(v).toString(16).padStart(2, '0')).join('');
  const pageBg = () => {
    const scheme = getComputedStyle(document.documentElement).colorScheme || '';
    // the canvas behind a page without an opaque background: dark when the page opts into dark ('dark', or
    // 'light dark' while the reader prefers dark), as Chromium paints it
    const dark = /dark/.test(scheme) && (!/light/.test(scheme) || matchMedia('(prefers-color-scheme: dark)').matches);
    return dark ? [18, 18, 18] : [255, 255, 255];
  };
  // the most frequent colour of a canvas under a CSS-pixel box (text pixels are the minority); null if clear
  const canvasColour = (canvas, box) => {
    try {
      const r = canvas.getBoundingClientRect();
      const sx = canvas.width / r.width, sy = canvas.height / r.height;
      const x0 = Math.max(0, Math.floor((box.left - r.left) * sx)), y0 = Math.max(0, Math.floor((box.top - r.top) * sy));
      const x1 = Math.min(canvas.width, Math.ceil((box.right - r.left) * sx));
      const y1 = Math.min(canvas.height, Math.ceil((box.bottom - r.top) * sy));
      if (x1 <= x0 || y1 <= y0) return null;
      const d = canvas.getContext('2d').getImageData(x0, y0, x1 - x0, y1 - y0).data;
      const counts = new Map();
      for (let i = 0; i < d.length; i += 4) {
        if (d[i + 3] < 250) continue;
        const k = ((d[i] >> 3) << 10) | ((d[i + 1] >> 3) << 5) | (d[i + 2] >> 3);
        const e = counts.get(k);
        if (e) e[3]++; else counts.set(k, [d[i], d[i + 1], d[i + 2], 1]);
      }
      if (!counts.size || [...counts.values()].reduce((s, e) => s + e[3], 0) < (d.length / 4) * 0.5) return null;
      let best = null;
      for (const e of counts.values()) if (!best || e[3] > best[3]) best = e;
      return [best[0], best[1], best[2]];
    } catch (e) { return null; }
  };
  // background under a box: walk the elements painted under its centre from the top; canvases count by pixels
  const backgroundAt = (box, skip) => {
    const x = (box.left + box.right) / 2, y = (box.top + box.bottom) / 2;
    const stack = document.elementsFromPoint(x, y);
    const layers = [];
    for (const el of stack) {
      if (skip && skip.contains(el) && el !== skip && el.tagName !== 'CANVAS') continue;
      if (el.tagName === 'CANVAS') {
        const c = canvasColour(el, box);
        if (c) { layers.push([...c, 1]); break; }
        continue;
      }
      const bg = parse(getComputedStyle(el).backgroundColor);
      if (bg && bg[3] > 0) { layers.push(bg); if (bg[3] >= 0.999) break; }
    }
    let colour = pageBg();
    for (let i = layers.length - 1; i >= 0; i--) colour = over(layers[i], colour);
    return colour;
  };
  // Whether a point of the view is on screen: inside the viewport and every clipping ancestor (JupyterLab's
  // notebook scrolls inside its panel: text scrolled past the panel's edge is still "in the viewport", under the
  // tab bar or the status bar), and the element painted there is part of the view. Text not shown has no
  // background to judge; audit_in_lab scrolls each output through the panel so that every part is shown once.
  const shownAt = (x, y, el, root) => {
    if (x < 0 || y < 0 || x > innerWidth || y > innerHeight) return false;
    // (the body's overflow applies to the viewport, checked above: Notebook 7's body is 0 px tall)
    for (let a = el.parentElement; a && a !== document.body && a !== document.documentElement; a = a.parentElement) {
      const s = getComputedStyle(a);
      if (!/hidden|clip|auto|scroll/.test(s.overflowX + s.overflowY)) continue;
      const q = a.getBoundingClientRect();
      if (x < q.left - 1 || x > q.right + 1 || y < q.top - 1 || y > q.bottom + 1) return false;
    }
    const top = document.elementFromPoint(x, y);
    return !!top && root.contains(top);
  };
  const opacityOf = (el) => { let o = 1; for (let e = el; e && e.nodeType === 1; e = e.parentElement) o *= Number(getComputedStyle(e).opacity); return o; };

  const results = [];
  for (const container of containers) {
    const roots = [...container.querySelectorAll('[class*="hw-"]')].filter(
      (el) => /(^|\s)hw-/.test(cls(el)) && !(el.parentElement && el.parentElement.closest('[class*="hw-"]') &&
        container.contains(el.parentElement.closest('[class*="hw-"]'))));
    for (const root of roots) {
      const overflow = [], overlaps = [], contrast = [];
      let unseen = 0;  // text not on screen at this scroll position (see shownAt)
      const cr = container.getBoundingClientRect(), rr = root.getBoundingClientRect();
      const at = (l, t) => [Math.round(l - rr.left), Math.round(t - rr.top)];  // where, relative to the view
      if (rr.right > cr.right + 1 || rr.left < cr.left - 1)
        overflow.push({what: 'view wider than its output area', element: desc(root),
                       by_px: Math.round(Math.max(rr.right - cr.right, cr.left - rr.left)),
                       view_px: Math.round(rr.width), container_px: Math.round(cr.width)});
      if (root.scrollWidth > root.clientWidth + 1)
        overflow.push({what: 'content wider than the view (scrollWidth)', element: desc(root),
                       by_px: root.scrollWidth - root.clientWidth});
      if (container.scrollWidth > container.clientWidth + 1)
        overflow.push({what: 'output area scrolls sideways', element: desc(container),
                       by_px: container.scrollWidth - container.clientWidth});
      const right = Math.min(rr.right, cr.right), left = Math.max(rr.left, cr.left);
      const reported = [];
      const all = [...root.querySelectorAll('*')];
      for (const el of all) {
        if (reported.some((p) => p.contains(el))) continue;
        if (['STYLE', 'SCRIPT', 'OPTION'].includes(el.tagName) || !visible(el)) continue;
        const r = el.getBoundingClientRect();
        if (r.right > right + 1 || r.left < left - 1) {
          overflow.push({what: 'element past the edge of the view', element: desc(el), text: text(el),
                         by_px: Math.round(Math.max(r.right - right, left - r.left))});
          reported.push(el);
          continue;
        }
        // text cut off by a clipping ancestor inside the view (overflow hidden / clip), unless ellipsized
        if (el.childNodes.length && [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) {
          const st = getComputedStyle(el);
          if (st.textOverflow === 'ellipsis' && el.title) continue;
          for (let a = el.parentElement; a && a !== root.parentElement; a = a.parentElement) {
            const s = getComputedStyle(a);
            if (/hidden|clip/.test(s.overflowX + s.overflowY)) {
              const ar = a.getBoundingClientRect();
              const by = Math.max(r.right - ar.right, ar.left - r.left, r.bottom - ar.bottom, ar.top - r.top);
              if (by > 1) {
                overflow.push({what: 'text cut by a clipping box', element: desc(el), text: text(el),
                               clipped_by: desc(a), by_px: Math.round(by)});
                reported.push(el);
              }
              break;
            }
          }
        }
      }

      // labels: DOM/SVG elements, then boxes exposed for canvas-drawn text
      const labels = [];
      for (const el of all) {
        if (!(LABEL.test(cls(el)) || el.tagName.toLowerCase() === 'text') || !visible(el) || !text(el)) continue;
        const range = document.createRange();
        range.selectNodeContents(el);
        const r = range.getBoundingClientRect();
        if (r.width > 0 && r.height > 0) labels.push({el, text: text(el), element: desc(el), l: r.left, t: r.top, r: r.right, b: r.bottom});
      }
      const drawn = (el) => (el.__hwDrawnText && el.__hwDrawnText.length) || [...el.querySelectorAll('canvas')].some((c) => c.__hwDrawnText && c.__hwDrawnText.length);
      // boxes a view exposes, for text the canvas hook cannot see (skipped where the hook saw the drawing)
      const exposed = [root, ...all].filter((el) => Array.isArray(el.__hwLabelBoxes) && !drawn(el));
      for (const el of exposed) {  // viewport CSS pixels, as js/lib/frame.js writes them
        for (const b of el.__hwLabelBoxes) {
          const box = {el: null, text: String(b.text).slice(0, 60), element: desc(el) + ' (canvas text)',
                       l: b.x, t: b.y, r: b.x + b.w, b: b.y + b.h};
          labels.push(box);
          if (b.color) {  // canvas text with its colour: contrast against the canvas under it
            const fg = colourOf(b.color);
            const host = el.tagName === 'CANVAS' ? el : el.querySelector('canvas') || el;
            if (fg && !shownAt((box.l + box.r) / 2, (box.t + box.b) / 2, host, root)) unseen++;
            else if (fg) {
              const bg = canvasColour(el.tagName === 'CANVAS' ? el : el.querySelector('canvas') || el, {left: box.l, top: box.t, right: box.r, bottom: box.b}) || backgroundAt({left: box.l, top: box.t, right: box.r, bottom: box.b}, null);
              contrast.push({text: box.text, element: box.element, fg: hex(over(fg, bg)), bg: hex(bg), px: b.h, bold: false, canvas: true, glyph: !/[\p{L}\p{N}]/u.test(String(b.text)), at: at(box.l, box.t)});
            }
          }
        }
      }
      // text drawn on canvases (recorded by CANVAS_HOOK), in page CSS pixels; rotated text keeps its quad
      for (const canvas of [root, ...all].filter((el) => el.tagName === 'CANVAS' && el.__hwDrawnText && visible(el))) {
        const o = canvas.getBoundingClientRect();
        const sx = o.width / canvas.width, sy = o.height / canvas.height;
        for (const d of canvas.__hwDrawnText) {
          const quad = d.corners.map(([x, y]) => [o.left + x * sx, o.top + y * sy]);
          const xs = quad.map((q) => q[0]), ys = quad.map((q) => q[1]);
          const box = {el: null, canvas, text: d.text.slice(0, 60), element: desc(canvas) + ' (drawn text)', quad,
                       l: Math.min(...xs), t: Math.min(...ys), r: Math.max(...xs), b: Math.max(...ys)};
          labels.push(box);
          // drawn text outside its canvas is cut off
          const cut = Math.max(o.left - box.l, box.r - o.right, o.top - box.t, box.b - o.bottom);
          if (cut > 1.5) overflow.push({what: 'canvas text cut at the canvas edge', element: desc(canvas),
                                        text: box.text, by_px: Math.round(cut)});
          const fg = colourOf(d.color);
          const cx = (box.l + box.r) / 2, cy = (box.t + box.b) / 2;
          // text off screen or past the view's edge has no background to judge (overflow has the latter)
          const shown = cx >= rr.left && cx <= rr.right && shownAt(cx, cy, canvas, root);
          if (fg && !shown) unseen++;
          if (fg && shown) {
            fg[3] *= d.alpha * opacityOf(canvas);
            const area = {left: box.l, top: box.t, right: box.r, bottom: box.b};
            const bg = canvasColour(canvas, area) || backgroundAt(area, canvas);
            contrast.push({text: box.text, element: box.element, fg: hex(over(fg, bg)), bg: hex(bg),
                           px: d.px * sx, bold: /bold|[6-9]00/.test(d.font || ''), canvas: true,
                           glyph: !/[\p{L}\p{N}]/u.test(d.text), at: at(box.l, box.t)});
          }
        }
      }
      const axes = (q) => [0, 1].map((i) => { const [x0, y0] = q[i], [x1, y1] = q[i + 1]; const n = Math.hypot(x1 - x0, y1 - y0) || 1; return [-(y1 - y0) / n, (x1 - x0) / n]; });
      const quadOf = (a) => a.quad || [[a.l, a.t], [a.r, a.t], [a.r, a.b], [a.l, a.b]];
      // separating axes: the smallest overlap of the two projections over all edge normals (<= 0: apart)
      const sat = (p, q) => {
        let least = Infinity;
        for (const [ax, ay] of [...axes(p), ...axes(q)]) {
          const pr = (poly) => poly.map(([x, y]) => x * ax + y * ay);
          const a = pr(p), b = pr(q);
          least = Math.min(least, Math.min(Math.max(...a), Math.max(...b)) - Math.max(Math.min(...a), Math.min(...b)));
        }
        return least;
      };
      for (let i = 0; i < labels.length; i++) for (let j = i + 1; j < labels.length; j++) {
        const a = labels[i], b = labels[j];
        if (a.el && b.el && (a.el.contains(b.el) || b.el.contains(a.el))) continue;
        const w = Math.min(a.r, b.r) - Math.max(a.l, b.l), h = Math.min(a.b, b.b) - Math.max(a.t, b.t);
        if (w < 2 || h < 2) continue;
        if ((a.quad || b.quad) && sat(quadOf(a), quadOf(b)) < 2) continue;
        overlaps.push({a: a.text, a_element: a.element, b: b.text, b_element: b.element,
                       overlap_px: [Math.round(w), Math.round(h)]});
      }

      // contrast of every visible text node
      const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
      const seen = new Set();
      for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        const el = n.parentElement;
        if (!el || seen.has(el) || !n.textContent.trim()) continue;
        if (el.closest('style,script,option,select') || !visible(el)) continue;
        if (el.closest(':disabled') || el.closest('[aria-disabled="true"]')) continue;
        seen.add(el);
        const range = document.createRange();
        range.selectNodeContents(n);
        const box = range.getBoundingClientRect();
        if (box.width <= 0 || box.height <= 0) continue;
        if (!shownAt((box.left + box.right) / 2, (box.top + box.bottom) / 2, el, root)) { unseen++; continue; }
        const st = getComputedStyle(el);
        const fg = parse(st.color);
        if (!fg) continue;
        fg[3] *= opacityOf(el);
        const bg = backgroundAt(box, el);
        contrast.push({text: n.textContent.replace(/\s+/g, ' ').trim().slice(0, 60), element: desc(el),
                       fg: hex(over(fg, bg)), bg: hex(bg), px: parseFloat(st.fontSize),
                       bold: Number(st.fontWeight) >= 700, canvas: false,
                       glyph: !/[\p{L}\p{N}]/u.test(n.textContent), at: at(box.left, box.top)});
      }
      results.push({root: desc(root), width: Math.round(rr.width), container: Math.round(cr.width),
                    overflow, overlaps, text: contrast, unseen});
    }
  }
  return results;
}

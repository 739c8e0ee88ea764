// @ts-check
// Styles of the views, scoped under .hw-am. Colours follow JupyterLab's theme variables where present; the
// few colours of our own (accent, warning, error, tints) are custom properties with a dark variant, switched by
// JupyterLab's body[data-jp-theme-light="false"] (static pages set the same attribute from
// prefers-color-scheme, js/static_boot.js). Text colours meet WCAG AA (4.5:1) on their backgrounds in both.
// Muted text is --hw-muted: the theme's --jp-ui-font-color2 pulled --hw-muted-pull (30%, or as far as readTheme
// found needed on the view's actual background and tints, set by mountView: lib/frame.js) towards the body text;
// JupyterLab's own font-color2 reaches only 4.6:1 on white and 4.4:1 on a tinted chip.
// No fixed widths: every view fills its output area and shrinks with it.
export const CSS = `
.hw-am { --hw-accent: #2f5fc4; --hw-accent-text: #ffffff; --hw-warn: #8a4b00; --hw-bad: #b23a0c;
  --hw-bad-bg: #b23a0c; --hw-ok-tint: rgba(46,160,67,0.16); --hw-warn-tint: rgba(214,140,0,0.18);
  --hw-bad-tint: rgba(194,65,12,0.12); --hw-neutral-tint: rgba(128,128,128,0.14);
  --hw-outline: rgba(0,0,0,0.55);
  --hw-muted: color-mix(in srgb, var(--jp-ui-font-color2, #59636e), var(--jp-ui-font-color1, #1f2328)
    var(--hw-muted-pull, 30%));
  font: 13px/1.45 var(--jp-ui-font-family, system-ui, -apple-system, "Segoe UI", sans-serif);
  color: var(--jp-ui-font-color1, #1f2328); max-width: 1400px; min-width: 0; box-sizing: border-box;
  overflow-wrap: anywhere; }
body[data-jp-theme-light="false"] .hw-am { --hw-accent: #3d6fd6; --hw-warn: #f2b15f; --hw-bad: #ff9c7a;
  --hw-bad-bg: #b23a0c; --hw-ok-tint: rgba(80,200,110,0.20); --hw-warn-tint: rgba(240,170,60,0.20);
  --hw-bad-tint: rgba(255,120,80,0.16); --hw-neutral-tint: rgba(255,255,255,0.10);
  --hw-outline: rgba(255,255,255,0.6);
  --hw-muted: color-mix(in srgb, var(--jp-ui-font-color2, #b4b4b4), var(--jp-ui-font-color1, #e6e6e6)
    var(--hw-muted-pull, 30%));
  color: var(--jp-ui-font-color1, #e6e6e6); }
.hw-am *, .hw-am *::before, .hw-am *::after { box-sizing: border-box; }
.hw-am canvas { max-width: 100%; }
.hw-am-header { display: flex; align-items: baseline; gap: 6px 14px; flex-wrap: wrap; margin-bottom: 6px; }
.hw-am-title { font-weight: 600; font-size: 15px; }
.hw-am-counter { font-variant-numeric: tabular-nums; font-weight: 600; }
.hw-am-status { font-size: 12px; padding: 1px 8px; border-radius: 10px; background: var(--hw-neutral-tint);
  color: inherit; }
.hw-am-status[data-state="live"] { background: var(--hw-ok-tint); }
.hw-am-status[data-state="paused"] { background: var(--hw-warn-tint); }
.hw-am-frames { font-size: 12px; color: var(--hw-muted); font-variant-numeric: tabular-nums; }
.hw-am-frames[data-lost="true"] { color: var(--hw-warn); }
.hw-btn { font: inherit; font-size: 12px; padding: 2px 10px; border-radius: 4px; cursor: pointer;
  border: 1px solid var(--jp-border-color1, #c8ced5); background: var(--jp-layout-color1, #fff); color: inherit; }
.hw-btn:hover { background: var(--jp-layout-color2, #f1f3f5); }
.hw-am select, .hw-am input { color: inherit; background: var(--jp-layout-color1, #fff);
  border: 1px solid var(--jp-border-color1, #c8ced5); border-radius: 3px; max-width: 100%; }
.hw-am-chips { display: flex; gap: 6px; flex-wrap: wrap; margin: 4px 0 8px; align-items: center; }
.hw-chip { font: inherit; font-size: 12px; padding: 2px 10px; border-radius: 12px; cursor: pointer;
  border: 1px solid var(--jp-border-color1, #c8ced5); background: transparent; color: inherit; }
.hw-chip[aria-pressed="true"] { background: var(--hw-accent); border-color: var(--hw-accent); color: var(--hw-accent-text); }
.hw-chip-bad { border-color: var(--hw-bad); box-shadow: inset 0 0 0 1px var(--hw-bad); }
.hw-chip-warn { border-style: dashed; border-color: var(--hw-warn); }
.hw-chip[data-warn]:not([data-warn=""])::after { content: " \\26A0"; font-weight: 700; }
.hw-am-notice { font-size: 12px; padding: 4px 8px; margin: 2px 0 6px; border-left: 3px solid var(--hw-warn);
  background: var(--hw-warn-tint); color: inherit; }
.hw-am-notice[data-state="error"] { border-color: var(--hw-bad); }
.hw-am-events:empty { display: none; }
.hw-event { font-size: 12px; padding: 2px 8px; margin-bottom: 2px; border-left: 3px solid #868e96; }
.hw-event-nonfinite, .hw-event-error { border-color: var(--hw-bad); color: var(--hw-bad); }
.hw-event-never_ran, .hw-event-eval_only { border-color: var(--hw-warn); }
.hw-warnings { margin: 2px 0 6px; display: flex; flex-direction: column; gap: 2px; }
.hw-warning { display: flex; gap: 8px; align-items: baseline; font-size: 12px; padding: 2px 4px 2px 8px;
  border-left: 3px solid var(--hw-warn); background: var(--hw-warn-tint); }
.hw-warning[data-level="bad"] { border-color: var(--hw-bad); background: var(--hw-bad-tint); }
.hw-warning-text { flex: 1; min-width: 0; }
.hw-dismiss { font: inherit; font-size: 12px; border: 0; background: transparent; color: inherit; cursor: pointer;
  padding: 0 4px; line-height: 1; }
.hw-fold > summary { cursor: pointer; font-size: 12px; padding: 2px 8px; border-left: 3px solid var(--hw-warn);
  background: var(--hw-warn-tint); list-style-position: inside; }
.hw-am-scalars { display: flex; gap: 10px; flex-wrap: wrap; margin-bottom: 10px; }
.hw-am-cards { display: flex; flex-direction: column; gap: 12px; }
.hw-am-layer { border: 1px solid var(--jp-border-color2, #e3e6ea); border-radius: 6px; padding: 8px 10px; min-width: 0; }
.hw-am-layer-head { display: flex; gap: 4px 10px; align-items: baseline; margin-bottom: 4px; flex-wrap: wrap; }
.hw-am-layer-name { font-weight: 600; font-family: var(--jp-code-font-family, ui-monospace, monospace); }
.hw-am-layer-meta { font-size: 12px; color: var(--hw-muted); }
.hw-flag { font-size: 12px; color: #fff; background: var(--hw-bad-bg); border-radius: 3px; padding: 0 6px; }
.hw-am-layer-main { display: flex; gap: 16px; flex-wrap: wrap; }
.hw-am-layer-small { display: flex; gap: 12px; flex-wrap: wrap; margin-top: 6px; }
.hw-panel { min-width: 0; }
.hw-panel-title, .hw-chart-head { font-size: 12px; color: var(--hw-muted); }
.hw-chart-title { font-weight: 600; color: var(--jp-ui-font-color1, #1f2328); margin-right: 8px; }
.hw-chart-value { font-variant-numeric: tabular-nums; }
.hw-chart-readout { font-size: 12px; min-height: 16px; color: var(--hw-muted);
  font-variant-numeric: tabular-nums; }
.hw-note { font-size: 12px; color: var(--hw-muted); }
.hw-detail-canvas { image-rendering: pixelated; display: block; margin: 4px 0; }
.hw-colorbar { display: flex; align-items: center; gap: 6px; font-size: 12px; flex-wrap: wrap;
  color: var(--hw-muted); }
.hw-colorbar-scale { display: inline-flex; align-items: center; gap: 6px; white-space: nowrap; }
.hw-colorbar-title { color: var(--jp-ui-font-color1, #1f2328); }
.hw-swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px;
  box-shadow: inset 0 0 0 1px var(--hw-outline); vertical-align: -1px; }
.hw-legend-more { font-size: 12px; color: var(--hw-muted); font-style: italic; }
.hw-am canvas { display: block; }
`;

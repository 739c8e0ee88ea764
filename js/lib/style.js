// @ts-check
// Styles of the views, scoped under .hw-am. Colours follow JupyterLab's theme variables where present.
export const CSS = `
.hw-am { font: 13px/1.45 var(--jp-ui-font-family, system-ui, -apple-system, "Segoe UI", sans-serif);
  color: var(--jp-ui-font-color1, #1f2328); max-width: 1400px; }
.hw-am-header { display: flex; align-items: baseline; gap: 14px; flex-wrap: wrap; margin-bottom: 6px; }
.hw-am-title { font-weight: 600; font-size: 15px; }
.hw-am-counter { font-variant-numeric: tabular-nums; font-weight: 600; }
.hw-am-status { font-size: 12px; padding: 1px 8px; border-radius: 10px; background: #eef1f4; }
.hw-am-status[data-state="live"] { background: #d3f9d8; color: #1b5e20; }
.hw-am-status[data-state="paused"] { background: #fff3bf; color: #7a4a00; }
.hw-am-frames { font-size: 12px; color: var(--jp-ui-font-color2, #656d76); font-variant-numeric: tabular-nums; }
.hw-btn { font: inherit; font-size: 12px; padding: 2px 10px; border-radius: 4px; cursor: pointer;
  border: 1px solid var(--jp-border-color1, #c8ced5); background: var(--jp-layout-color1, #fff); color: inherit; }
.hw-btn:hover { background: var(--jp-layout-color2, #f1f3f5); }
.hw-am-chips { display: flex; gap: 6px; flex-wrap: wrap; margin: 4px 0 8px; }
.hw-chip { font: inherit; font-size: 12px; padding: 2px 10px; border-radius: 12px; cursor: pointer;
  border: 1px solid var(--jp-border-color1, #c8ced5); background: transparent; color: inherit; }
.hw-chip[aria-pressed="true"] { background: #3b6fd8; border-color: #3b6fd8; color: #fff; }
.hw-chip-bad { border-color: #c2410c; box-shadow: inset 0 0 0 1px #c2410c; }
.hw-chip-warn { border-style: dashed; border-color: #a15c00; }
.hw-am-notice { font-size: 12px; padding: 4px 8px; margin: 2px 0 6px; border-left: 3px solid #a15c00;
  background: var(--jp-warn-color3, #fff4e0); color: var(--jp-ui-font-color1, #3d2a00); }
.hw-am-notice[data-state="error"] { border-color: #c2410c; }
.hw-am-events:empty { display: none; }
.hw-event { font-size: 12px; padding: 2px 8px; margin-bottom: 2px; border-left: 3px solid #868e96; }
.hw-event-nonfinite, .hw-event-error { border-color: #c2410c; color: #9a3412; }
.hw-event-never_ran, .hw-event-eval_only { border-color: #a15c00; }
.hw-am-scalars { display: flex; gap: 10px; flex-wrap: wrap; margin-bottom: 10px; }
.hw-am-cards { display: flex; flex-direction: column; gap: 12px; }
.hw-am-layer { border: 1px solid var(--jp-border-color2, #e3e6ea); border-radius: 6px; padding: 8px 10px; }
.hw-am-layer-head { display: flex; gap: 10px; align-items: baseline; margin-bottom: 4px; }
.hw-am-layer-name { font-weight: 600; font-family: var(--jp-code-font-family, ui-monospace, monospace); }
.hw-am-layer-meta { font-size: 12px; color: var(--jp-ui-font-color2, #656d76); }
.hw-flag { font-size: 12px; color: #fff; background: #c2410c; border-radius: 3px; padding: 0 6px; }
.hw-am-layer-main { display: flex; gap: 16px; flex-wrap: wrap; }
.hw-am-layer-small { display: flex; gap: 12px; flex-wrap: wrap; margin-top: 6px; }
.hw-panel-title, .hw-chart-head { font-size: 12px; color: var(--jp-ui-font-color2, #656d76); }
.hw-chart-title { font-weight: 600; color: var(--jp-ui-font-color1, #1f2328); margin-right: 8px; }
.hw-chart-value { font-variant-numeric: tabular-nums; }
.hw-chart-readout { font-size: 11px; min-height: 15px; color: var(--jp-ui-font-color2, #656d76);
  font-variant-numeric: tabular-nums; }
.hw-note { font-size: 11px; color: var(--jp-ui-font-color2, #656d76); }
.hw-detail-canvas { image-rendering: pixelated; display: block; margin: 4px 0; }
.hw-colorbar { display: flex; align-items: center; gap: 6px; font-size: 11px; }
canvas { display: block; }
`;

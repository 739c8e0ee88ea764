// @ts-check
// The SimilarityMatrix view: a layer x layer heatmap of representation similarity (CKA), within one model or
// across two models / checkpoints, with the value under the pointer.
import { fmt, viewFrame } from "./lib/chart.js";
import { Heatmap } from "./lib/heatmap.js";
import { CSS } from "./lib/style.js";
import { mountView } from "./lib/frame.js";

function render({ model, el }) {
  const { root, title, note } = viewFrame("hw-sm", CSS, "", "similarity_matrix");
  const map = new Heatmap((r, c) => {
    const v = (model.get("values") || [])[r]?.[c];
    return `${model.get("row_title") || "rows"} ${model.get("rows")[r]} × ${model.get("col_title") || "columns"} ${model.get("cols")[c]}: ${v === null || v === undefined ? "–" : fmt(v)}`;
  });
  root.append(map.el);
  el.appendChild(root);
  let width = 0;
  const update = () => {
    title.textContent = model.get("title") || "Similarity";
    note.textContent = model.get("description") || "";
    const values = model.get("values") || [];
    map.update({ values, rows: model.get("rows") || [], cols: model.get("cols") || [],
      rowTitle: model.get("row_title"), colTitle: model.get("col_title"), cellText: true,
      valueTitle: model.get("value_title") || "CKA similarity (0 = unrelated, 1 = identical)" }, width);
  };
  const frame = mountView(root, "similarity_matrix", (w) => { width = w; update(); });
  const events = ["change:values", "change:rows", "change:cols", "change:title", "change:description"];
  for (const ev of events) model.on(ev, update);
  frame.now();
  return () => { for (const ev of events) model.off(ev, update); frame.dispose(); map.dispose(); root.remove(); };
}

export default { render };

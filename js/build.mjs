// Bundle each view in js/ into one self-contained ES module in hiddenwidgets/static/ (no CDN, no code splitting),
// plus the boot script that static pages (save_html) use to run the same module offline.
import { build } from "esbuild";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "hiddenwidgets", "static");
mkdirSync(out, { recursive: true });

export const VIEWS = ["activation_monitor", "information_plane", "attribution_explorer", "projector", "probe_chart", "similarity_matrix", "concept_annotator", "concept_scores", "intervention_view", "unit_atlas", "network_explainer", "logit_lens", "attention_view", "token_flow"];

const common = { bundle: true, minify: true, sourcemap: false, target: "es2020", legalComments: "none", logLevel: "warning" };

await Promise.all([
  ...VIEWS.map((v) => build({ ...common, entryPoints: [join(here, `${v}.js`)], format: "esm", outfile: join(out, `${v}.js`) })),
  build({ ...common, entryPoints: [join(here, "static_boot.js")], format: "iife", outfile: join(out, "static_boot.js") }),
]);
console.log(`built ${VIEWS.length} view(s) and static_boot into ${out}`);

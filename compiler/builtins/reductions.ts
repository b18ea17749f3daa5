import { runtimeCall, torchCall } from "./lowering.js";
import type { Builtin, Signature } from "./types.js";

/**
 * Reductions over an index binder: `sum(k, x[k])`, `sum(k != m, x[k])`, `sum(batch, x)` (a
 * special form, see 1-check/special-forms.ts). `reduce` names the runtime function of each range;
 * `signatures` are the calls without a binder (`mean(g)`, `max(a, b)`).
 */
export interface Reduction extends Builtin {
  form: "reduction";
  /** `host`: the JavaScript of a reduction over the modalities of plain numbers (`sum(k, 1)`), from the list's code; `torch`: the torch runtime's functions (which take numbers too). */
  reduce: { modalities: string; batch?: string; host?: (list: string) => string; torch: { modalities: string; batch?: string } };
}

const numeric = ["scalar", "batch"] as const;
const pairwise: Signature[] = [{ params: [{ name: "a", kinds: numeric }, { name: "b", kinds: numeric }], result: "lift" }];

export const reductions: Reduction[] = [
  {
    name: "sum",
    family: "reductions",
    usage: "sum(k, x[k])",
    doc: "sum over the modalities (`sum(k != m, x[k])`: the others) or over the batch (`sum(batch, x)`)",
    form: "reduction",
    fusion: "reduction",
    reduce: { modalities: "sumOf", batch: "sumBatch", host: (list) => `${list}.reduce((a, b) => a + b, 0)`, torch: { modalities: "sum_of", batch: "sum_batch" } },
    signatures: [],
  },
  {
    name: "mean",
    family: "reductions",
    usage: "mean(k, x[k])",
    doc: "mean over the modalities or the batch, as `sum`; `mean(g)` of a gradient: the mean of its elements (`mean(abs(g))`)",
    form: "reduction",
    fusion: "reduction",
    reduce: { modalities: "meanOf", batch: "meanBatch", host: (list) => `${list}.reduce((a, b, _, all) => a + b / all.length, 0)`, torch: { modalities: "mean_of", batch: "mean_batch" } },
    signatures: [{ params: [{ name: "g", kinds: ["grad"] }], result: "scalar" }],
    lower: { tfjs: runtimeCall("gradMean"), torch: torchCall("grad_mean") },
  },
  {
    name: "max",
    family: "reductions",
    usage: "max(k, x[k])",
    doc: "largest over the modalities; `max(a, b)`: the larger of two values",
    form: "reduction",
    reduce: { modalities: "maxOf", host: (list) => `Math.max(...${list})`, torch: { modalities: "max_of" } },
    signatures: pairwise,
    host: true,
    lower: { tfjs: runtimeCall("maximum", ([a, b]) => `Math.max(${a}, ${b})`), torch: torchCall("maximum") },
  },
  {
    name: "min",
    family: "reductions",
    usage: "min(k, x[k])",
    doc: "smallest over the modalities; `min(a, b)`: the smaller of two values",
    form: "reduction",
    reduce: { modalities: "minOf", host: (list) => `Math.min(...${list})`, torch: { modalities: "min_of" } },
    signatures: pairwise,
    host: true,
    lower: { tfjs: runtimeCall("minimum", ([a, b]) => `Math.min(${a}, ${b})`), torch: torchCall("minimum") },
  },
];

/** In a fusion expression only: the features of every modality side by side. */
export const concat: Reduction = {
  name: "concat",
  family: "reductions",
  usage: "concat(j, e)",
  doc: "in a fusion expression, the features `e` of every modality side by side: `concat(j, w[j] * z[j])`",
  form: "reduction",
  fusion: "reduction",
  reduce: { modalities: "concatOf", torch: { modalities: "concat_of" } },
  signatures: [],
  misuse: { code: "MMB006", message: "`concat` joins features in a fusion expression, not in a rule", help: "reduce over modalities with `sum(k, ...)` or `mean(k, ...)`" },
};

export const detach: Builtin = {
  name: "detach",
  family: "math",
  usage: "detach(e)",
  example: "detach(x)",
  doc: "`e` as a constant for differentiation",
  signatures: (["scalar", "batch", "logits", "features", "grad", "prototypes", "bool", "batchBool"] as const).map((kind) => ({ params: [{ name: "e", kinds: [kind] }], result: kind })),
  host: true,
  cutsGradient: true,
  lower: { tfjs: runtimeCall("detach", ([x]) => x!), torch: torchCall("detach") },
};

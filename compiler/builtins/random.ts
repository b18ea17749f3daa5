import type { Builtin, LoweringContext } from "./types.js";

/**
 * Random draws, seeded by the run's seed, the step and the call: the same in every pass of a step
 * and on resume (runtime/step-random.ts). Each call gets its own stream (its slot).
 */
const draw = (method: string, args: (cx: LoweringContext) => string[]) => ({
  runtime: [],
  emit: (cx: LoweringContext) => `${cx.scope}.random.${method}(${[String(cx.state.id), ...args(cx)].join(", ")})`,
});
/** The torch trainer's draws come from the step's streams (`ctx`, in scope in every function of the step), drawn as the tfjs trainer's (with `--rng torch`, by torch's generator). */
const torchDraw = (method: string) => ({ runtime: [], emit: (cx: LoweringContext) => `ctx.random.${method}(${[String(cx.state.id), ...cx.args].join(", ")})` });

export const random: Builtin[] = [
  {
    name: "uniform",
    family: "random",
    usage: "uniform()",
    doc: "a number drawn uniformly from [0, 1), once per step; `uniform(epoch)`: once per epoch (any number as the key). Known before the step: `when uniform() < 0.7 { ... }`",
    signatures: [
      { params: [], result: "scalar" },
      { params: [{ name: "key", kinds: ["scalar"] }], result: "scalar" },
    ],
    host: true,
    random: true,
    hostOnly: true,
    lower: { tfjs: draw("uniform", (cx) => cx.args), torch: torchDraw("uniform") },
  },
  {
    name: "bernoulli",
    family: "random",
    usage: "bernoulli(p)",
    doc: "1 with probability p, else 0: one draw for a number, one per sample for a per-sample p, one per element for a gradient-shaped p (a mask: `scale grad(G) by bernoulli(q)`)",
    signatures: (["scalar", "batch", "grad"] as const).map((kind) => ({ params: [{ name: "p", kinds: [kind] }], result: kind })),
    host: true,
    random: true,
    cutsGradient: true,
    lower: { tfjs: draw("bernoulli", (cx) => cx.args), torch: torchDraw("bernoulli") },
  },
  {
    name: "dropout",
    family: "random",
    usage: "dropout(x, p)",
    doc: "a head's outputs or features with each element zeroed with probability p, without rescaling",
    signatures: (["logits", "features"] as const).map((kind) => ({ params: [{ name: "x", kinds: [kind] }, { name: "p", kinds: ["scalar"] }], result: kind })),
    random: true,
    lower: { tfjs: draw("dropout", (cx) => cx.args), torch: torchDraw("dropout") },
  },
];

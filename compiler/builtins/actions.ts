import type { ActionIR } from "../ir.js";

/**
 * The actions of a balance block. Each is a statement of its own syntax (grammar/); this table
 * holds what the checker and codegen share: the phase of the step it runs in, its reference
 * line, and its tfjs statement, printed from the code of its operands.
 */
export interface Action {
  /** The action's kind in the IR (`when` has none: it wraps others). */
  kind: ActionIR["kind"] | "when";
  keyword: string;
  usage: string;
  doc: string;
  /** before: decides the forward pass; loss: part of the differentiated loss; after: after the rule values, in spec order; update: after the optimiser step. */
  phase: "before" | "loss" | "after" | "update";
  /** Operands whose tensor conditions (`when` on a tensor) fall back to this value where the condition fails. */
  otherwise?: Record<string, string>;
  /** The statement per target, from its operands' code: TypeScript for tfjs, Python for torch (a `minimize` objective is a function defined before it, named by its operand). */
  lower: { tfjs: (operands: Record<string, string>) => string; torch: (operands: Record<string, string>) => string };
}

export const actions: Action[] = [
  {
    kind: "scale",
    keyword: "scale grad",
    usage: "scale grad(G) by e",
    doc: "multiply the update gradient of `G` by a number, or element by element by a gradient-shaped value of `G` (`per_tensor(...)`)",
    phase: "after",
    otherwise: { factor: "1" },
    lower: { tfjs: (o) => `grads.scale(${o.group}, ${o.factor});`, torch: (o) => `grads.scale(${o.group}, ${o.factor})` },
  },
  {
    kind: "scaleLr",
    keyword: "scale lr",
    usage: "scale lr(G) by e",
    doc: "learning-rate factor for `G` this step",
    phase: "after",
    otherwise: { factor: "1" },
    lower: { tfjs: (o) => `grads.scaleLearningRate(${o.group}, ${o.factor});`, torch: (o) => `grads.scale_learning_rate(${o.group}, ${o.factor})` },
  },
  {
    kind: "noise",
    keyword: "noise",
    usage: "noise grad(G) ~ normal(mean, std)",
    doc: "add Gaussian noise (seeded by run seed, step and parameter); mean and std a number, or gradient-shaped values of `G` (`per_tensor(std(grad(G)))`: each tensor's own std)",
    phase: "after",
    otherwise: { mean: "0", std: "0" },
    lower: { tfjs: (o) => `grads.addNoise(${o.group}, ${o.mean}, ${o.std});`, torch: (o) => `grads.add_noise(${o.group}, ${o.mean}, ${o.std})` },
  },
  {
    kind: "replace",
    keyword: "replace",
    usage: "replace grad(G) by g",
    doc: "the update gradient of `G` becomes `g`, built from gradients of the same group",
    phase: "after",
    lower: {
      tfjs: (o) => `grads.replace(${o.group}, ${o.value}${o.mask ? `, ${o.mask}` : ""});`,
      torch: (o) => `grads.replace(${o.group}, ${o.value}${o.mask ? `, mask=${o.mask}` : ""})`,
    },
  },
  {
    kind: "drop",
    keyword: "drop",
    usage: "drop z[m] with p [rescaled]",
    doc: "in training, zero modality m's features per sample with probability `p`, one number or one per sample; `rescaled`: the kept ones × 1/(1 − p), keeping the expectation. `p` may read numbers, params, time, last step's values (`prev`), or this step's outputs (then evaluated on a forward pass of its own, before the drop); not gradients",
    phase: "before",
    lower: {
      tfjs: (o) => `ctx.drop(${o.modality}, ${o.probability}${o.rescale ? ", { rescale: true }" : ""});`,
      torch: (o) => `ctx.drop(${o.modality}, ${o.probability}${o.rescale ? ", rescale=True" : ""})`,
    },
  },
  {
    kind: "assign",
    keyword: "set",
    usage: "set w[m] = e",
    doc: "after the optimiser step, set a learnable to `e`, which reads the learnables' updated values: `set w[m] = w[m] * 2 / sum(k, w[k])`",
    phase: "update",
    lower: { tfjs: (o) => `ctx.assign(${o.group}, ${o.value});`, torch: (o) => `ctx.assign(${o.group}, ${o.value})` },
  },
  {
    kind: "assignWeights",
    keyword: "set weights",
    usage: "set weights(G) = g",
    doc: "after the optimiser step (in `every epoch`: before the epoch's first step), set group `G`'s parameters to the gradient-shaped `g` of the same group: `set weights(encoder[m]) = a * init(encoder[m]) + (1 - a) * weights(encoder[m])`; the optimiser's state is kept",
    phase: "update",
    lower: { tfjs: (o) => `ctx.assignWeights(${o.group}, ${o.value});`, torch: (o) => `ctx.assign_weights(${o.group}, ${o.value})` },
  },
  {
    kind: "addLoss",
    keyword: "add loss",
    usage: "add loss e",
    doc: "add `e` to the loss; when `e` reads gradients, the update differentiates through them (second order)",
    phase: "loss",
    otherwise: { value: "0" },
    lower: { tfjs: (o) => o.value!, torch: (o) => o.value! },
  },
  {
    kind: "minimize",
    keyword: "minimize",
    usage: "minimize e wrt G using O(...)",
    doc: "update group `G` (a learnable, `head[m]`, …) only by its own objective and optimiser; differentiated through gradients when `e` reads them",
    phase: "after",
    otherwise: { value: "0" },
    lower: {
      tfjs: (o) => `ctx.minimize(${o.group}, ${o.optimizer}, (f, grad) => {\n${o.objective}\n}${o.options ?? ""});`,
      torch: (o) => `ctx.minimize(${o.group}, ${o.optimizer}, ${o.objective}${o.options ?? ""})`,
    },
  },
  {
    kind: "when",
    keyword: "when",
    usage: "when c { ... }",
    doc: "conditional actions; conditions on `step`/`epoch`/params are plain `if`s, conditions on tensors become masks (no host sync)",
    phase: "after",
    lower: { tfjs: (o) => `if (${o.condition}) {\n${o.body}\n}`, torch: (o) => `if ${o.condition}:\n${o.body.replace(/^/gm, "    ")}` },
  },
];

const byKind = new Map(actions.map((a) => [a.kind, a]));

/** The catalogue entry of an action of the IR. */
export function action(kind: Action["kind"]): Action {
  return byKind.get(kind)!;
}

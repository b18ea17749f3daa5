import { outputPairs } from "./distributions.js";
import { runtimeCall, torchCall, torchCallBy } from "./lowering.js";
import type { Builtin, RefineContext } from "./types.js";

const gradient = ["grad"] as const;

/** `cos` and `dot` compare gradients element by element: both groups must have one shape. */
function sameShape(call: RefineContext): boolean {
  const [a, b] = call.args;
  if (a?.shape === undefined || b?.shape === undefined || a.shape.key === b.shape.key) return true;
  return call.report("MMB016", `\`${call.name}\` needs two gradients of the same shape`, {
    related: [
      { span: a.span, message: a.shape.text },
      { span: b.span, message: b.shape.text },
    ],
    help: "compare groups of equal shape, e.g. with `fusion sum` the fused head and the auxiliary heads match",
  });
}

/** The torch runtime's name of a tfjs runtime function: `gradNorm` → `grad_norm`. */
const snake = (name: string): string => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

function statistic(name: string, runtime: string, doc: string): Builtin {
  return {
    name,
    family: "gradients",
    usage: `${name}(g)`,
    example: `${name}(grad(encoder[m]))`,
    doc,
    signatures: [{ params: [{ name: "g", kinds: gradient }], result: "scalar" }],
    lower: { tfjs: runtimeCall(runtime), torch: torchCall(snake(runtime)) },
  };
}

function comparison(name: string, runtime: string, doc: string): Builtin {
  return {
    name,
    family: "gradients",
    usage: `${name}(g1, g2)`,
    example: `${name}(grad(head), grad(head[m]))`,
    doc,
    signatures: [{ params: [{ name: "g1", kinds: gradient }, { name: "g2", kinds: gradient }], result: "scalar" }],
    refine: sameShape,
    lower: { tfjs: runtimeCall(runtime), torch: torchCall(snake(runtime)) },
  };
}

export const gradients: Builtin[] = [
  {
    name: "weights",
    family: "gradients",
    usage: "weights(G)",
    example: "norm(weights(encoder[m]))",
    doc: "the current parameters of group `G`, a gradient-shaped value: norms, dot products and elementwise arithmetic with gradients (`square(norm(grad(G))) / square(norm(weights(G)))`); differentiated in an objective",
    form: "parameters",
    formRuntime: [],
    signatures: [],
  },
  {
    name: "init",
    family: "gradients",
    usage: "init(G)",
    example: "norm(weights(encoder[m]) - init(encoder[m]))",
    doc: "the parameters of group `G` as training began (the seed's initial values), a gradient-shaped constant",
    form: "parameters",
    formRuntime: [],
    signatures: [],
  },
  {
    name: "fresh",
    family: "gradients",
    usage: "fresh(G)",
    example: "set weights(encoder[m]) = a[m] * fresh(encoder[m]) + (1 - a[m]) * weights(encoder[m])",
    doc: "a new random initialisation of group `G`'s parameters, drawn as at the start of training from the run's seed and the step (the same on resume), a gradient-shaped constant",
    form: "parameters",
    formRuntime: [],
    signatures: [],
  },
  {
    name: "grad",
    family: "gradients",
    usage: "grad(G)",
    example: "grad(encoder[m])",
    doc: "this step's raw gradient of the task loss for group `G`: `encoder[m]`, `encoder[m].last` (its last linear layer), `encoder[m].conv` / `.dense` / `.rnn` / `.attention` / `.norm` (its layers of a kind), `fusion`, `head`, `head[m]`, a learnable; `G.weight` keeps the weights only, without biases (e.g. `encoder[m].conv.weight`, the convolution kernels). `grad(G, L)`: the gradient of another loss `L`, e.g. `grad(head[m], cross_entropy(head[m], y))`",
    form: "grad",
    signatures: [],
  },
  statistic("norm", "gradNorm", "‖g‖₂ over every element of the group"),
  statistic("norm1", "gradNorm1", "‖g‖₁, the sum of the absolute values of its elements"),
  statistic("std", "gradStd", "standard deviation of the gradient's elements"),
  {
    ...comparison("cos", "gradCos", "cosine of the angle between two gradients of one shape; of two outputs or two features: per sample"),
    signatures: [{ params: [{ name: "g1", kinds: gradient }, { name: "g2", kinds: gradient }], result: "scalar" }, ...outputPairs.cos],
    lower: {
      tfjs: { runtime: ["gradCos", "cosine"], emit: (cx) => cx.call(cx.kinds[0] === "grad" ? "gradCos" : "cosine", ...cx.args) },
      torch: torchCallBy(["grad_cos", "cosine"], (cx) => (cx.kinds[0] === "grad" ? "grad_cos" : "cosine")),
    },
  },
  comparison("dot", "gradDot", "dot product of two gradients of one shape"),
  {
    name: "per_sample",
    family: "gradients",
    usage: "per_sample(e)",
    example: "per_sample(norm(grad(encoder[m].last)))",
    doc: "`e`, a gradient statistic, once per sample, with `grad(G)` the gradient of that sample's own loss: `per_sample(norm(grad(encoder[m].last)))`",
    form: "perSample",
    signatures: [],
  },
  {
    name: "per_tensor",
    family: "gradients",
    usage: "per_tensor(e)",
    example: "per_tensor(std(grad(encoder[m].conv.weight)))",
    doc: "`e`, a number computed from one gradient `grad(G)`, once per parameter tensor of `G`: a gradient-shaped value whose every tensor holds its own value, for `scale` and `noise` (the std of each kernel, as a reference implementation draws its noise)",
    form: "perTensor",
    formRuntime: ["perTensor"],
    signatures: [],
  },
];

import type { Builtin } from "./types.js";

const unit = { min: 0, max: 1, maxOpen: true };

/** Values carried between steps (runtime/history.ts): each call has its own slot, kept in checkpoints. */
export const history: Builtin[] = [
  {
    name: "prev",
    family: "history",
    usage: "prev(x, init)",
    example: "prev(x, 0)",
    doc: "last step's value of `x` (`init` on the first step); breaks a cycle of definitions. `prev(x, init, n)`: x n steps back. In an `every epoch` rule, x at the previous epoch, or for a step value, at the last step before this epoch",
    signatures: [
      { params: [{ name: "x", kinds: ["scalar"] }, { name: "init", constant: {} }], result: "scalar" },
      { params: [{ name: "x", kinds: ["scalar"] }, { name: "init", constant: {} }, { name: "n", constant: { min: 1, integer: true } }], result: "scalar" },
    ],
    stateful: true,
    readsLastStep: true,
    cutsGradient: true,
    lower: {
      tfjs: { runtime: [], emit: (cx) => `ctx.history.read(${cx.state.id}, ${cx.state.key}, ${cx.args.slice(1).join(", ")})` },
      torch: { runtime: [], emit: (cx) => `ctx.history.read(${cx.state.id}, ${cx.state.key}, ${cx.args.slice(1).join(", ")})` },
    },
  },
  {
    name: "delta",
    family: "history",
    usage: "delta(x)",
    doc: "x minus last step's x (0 on the first step); of a gradient-shaped value, each element",
    signatures: [
      { params: [{ name: "x", kinds: ["scalar"] }], result: "scalar" },
      { params: [{ name: "x", kinds: ["grad"] }], result: "grad" },
    ],
    stateful: true,
    lower: {
      tfjs: { runtime: [], emit: (cx) => `ctx.history.delta(${cx.state.id}, ${cx.state.key}, ${cx.args[0]}, 0)` },
      torch: { runtime: [], emit: (cx) => `ctx.history.delta(${cx.state.id}, ${cx.state.key}, ${cx.args[0]}, 0)` },
    },
  },
  {
    name: "ema",
    family: "history",
    usage: "ema(x, beta)",
    example: "ema(x, 0.9)",
    doc: "moving average β·ema + (1 − β)·x, starting at the first x; β a number or a `param` in [0, 1); of a gradient-shaped value, each element (`ema(square(grad(G)), 0.99)`: a running Fisher diagonal, kept in checkpoints)",
    signatures: [
      { params: [{ name: "x", kinds: ["scalar"] }, { name: "beta", constant: unit }], result: "scalar" },
      { params: [{ name: "x", kinds: ["grad"] }, { name: "beta", constant: unit }], result: "grad" },
    ],
    stateful: true,
    cutsGradient: true,
    lower: {
      tfjs: { runtime: [], emit: (cx) => `ctx.history.ema(${cx.state.id}, ${cx.state.key}, ${cx.args[0]}, ${cx.args[1]})` },
      torch: { runtime: [], emit: (cx) => `ctx.history.ema(${cx.state.id}, ${cx.state.key}, ${cx.args[0]}, ${cx.args[1]})` },
    },
  },
  {
    name: "owm",
    family: "history",
    usage: "owm(g, x, alpha)",
    example: "owm(grad(head.weight), z[m], 0.1)",
    doc: "orthogonal weight modification: `g`, the gradient of a linear layer's weights, projected away from the inputs `x` seen so far. A projector P, the identity at first and kept in checkpoints, is first updated with the batch mean r of `x` (k = P·r, P ← P − k·kᵀ/(alpha + rᵀ·k)), then scaled to unit Frobenius norm; the result is P·g",
    signatures: [{ params: [{ name: "g", kinds: ["grad"] }, { name: "x", kinds: ["features"] }, { name: "alpha", kinds: ["scalar"] }], result: "grad" }],
    stateful: true,
    cutsGradient: true,
    lower: {
      tfjs: { runtime: [], emit: (cx) => `ctx.history.owm(${cx.state.id}, ${cx.state.key}, ${cx.args.join(", ")})` },
      torch: { runtime: [], emit: (cx) => `ctx.history.owm(${cx.state.id}, ${cx.state.key}, ${cx.args.join(", ")})` },
    },
  },
];

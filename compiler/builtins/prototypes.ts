import { runtimeCall, torchCall } from "./lowering.js";
import type { Builtin } from "./types.js";

export const prototypes: Builtin[] = [
  {
    name: "class_mean",
    family: "prototypes",
    usage: "class_mean(z[m], y, momentum)",
    example: "class_mean(z[m], y, 0.9)",
    doc: "running per-class mean of the features, carried between steps, no gradient; momentum in [0, 1)",
    signatures: [
      { params: [{ name: "z", kinds: ["features"] }, { name: "y", kinds: ["label"] }, { name: "momentum", constant: { min: 0, max: 1, maxOpen: true } }], result: "prototypes" },
    ],
    stateful: true,
    cutsGradient: true,
    refine: (call) =>
      call.targetKind === "class" || call.report("MMB008", "`class_mean` needs a class target", { help: "class means exist for `target y : class(N)`" }),
    lower: {
      tfjs: { runtime: [], emit: (cx) => `ctx.history.classMean(${cx.state.id}, ${cx.state.key}, ${cx.args.join(", ")}, ${cx.target.classes})` },
      torch: { runtime: [], emit: (cx) => `ctx.history.class_mean(${cx.state.id}, ${cx.state.key}, ${cx.args.join(", ")}, ${cx.target.classes})` },
    },
  },
  {
    name: "distance",
    family: "prototypes",
    usage: "distance(z[m], P)",
    doc: "Euclidean distance of each sample's features to each class mean, `[batch, classes]`, to use as logits: `prob(-distance(z[m], P[m]), y)`",
    signatures: [{ params: [{ name: "z", kinds: ["features"] }, { name: "P", kinds: ["prototypes"] }], result: "logits" }],
    lower: { tfjs: runtimeCall("distance"), torch: torchCall("distance") },
  },
];

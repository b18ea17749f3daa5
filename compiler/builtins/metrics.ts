import { outputPairs } from "./distributions.js";
import type { Builtin, Lowering } from "./types.js";

/** A head's outputs scored against the target. */
function metric(name: string, doc: string, lower: Lowering, perSample = false): Builtin {
  return {
    name,
    family: "metrics",
    usage: `${name}(o, y)`,
    example: `${name}(out, y)`,
    doc,
    signatures: [{ params: [{ name: "o", kinds: ["logits"] }, { name: "y", kinds: ["label"] }], result: perSample ? "batch" : "scalar" }],
    lower: { tfjs: lower },
  };
}

const call = (runtime: string): Lowering => ({ runtime: [runtime], emit: (cx) => cx.call(runtime, ...cx.args) });

export const metrics: Builtin[] = [
  metric("acc", "accuracy of the outputs `o` (per pixel for a mask); gradient zero", call("accuracy")),
  metric("prob", "the true class's probability, one number per sample: reduce with `sum(batch, ...)` or `mean(batch, ...)`", call("trueClassProb"), true),
  metric("loss", "the task's own loss: cross-entropy for classes and masks, squared error for a `real` target", {
    runtime: ["crossEntropy", "meanSquaredError"],
    emit: (cx) => cx.call(cx.target.kind === "real" ? "meanSquaredError" : "crossEntropy", ...cx.args),
  }),
  metric("cross_entropy", "mean cross-entropy (per pixel for a mask)", call("crossEntropy")),
  metric("mae", "mean absolute error", call("meanAbsoluteError")),
  metric("l1", "mean absolute error, as a loss", call("meanAbsoluteError")),
  {
    ...metric("mse", "mean squared error against the target; of two outputs or two features `mse(a, b)`: their mean squared difference, per sample", {
      runtime: ["meanSquaredError", "meanSquaredDifference"],
      emit: (cx) => cx.call(cx.kinds[1] === "label" ? "meanSquaredError" : "meanSquaredDifference", ...cx.args),
    }),
    signatures: [{ params: [{ name: "o", kinds: ["logits"] }, { name: "y", kinds: ["label"] }], result: "scalar" }, ...outputPairs.mse],
  },
  metric("dice", "mean Dice over the classes of a mask; gradient zero", call("dice")),
  metric("dice_loss", "the soft, differentiable Dice loss of a mask", call("diceLoss")),
];

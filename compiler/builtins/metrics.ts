import { outputPairs } from "./distributions.js";
import type { Builtin, Lowering } from "./types.js";

/** A head's outputs scored against the target. */
function metric(name: string, doc: string, lower: Lowering, torch: Lowering, perSample = false): Builtin {
  return {
    name,
    family: "metrics",
    usage: `${name}(o, y)`,
    example: `${name}(out, y)`,
    doc,
    signatures: [{ params: [{ name: "o", kinds: ["logits"] }, { name: "y", kinds: ["label"] }], result: perSample ? "batch" : "scalar" }],
    lower: { tfjs: lower, torch },
  };
}

const call = (runtime: string): Lowering => ({ runtime: [runtime], emit: (cx) => cx.call(runtime, ...cx.args) });
/** The task's own loss: squared error for a `real` target, else cross-entropy (runtime functions of the target). */
const taskLoss = (mse: string, ce: string): Lowering => ({ runtime: [ce, mse], emit: (cx) => cx.call(cx.target.kind === "real" ? mse : ce, ...cx.args) });
/** `mse` against the target, or of two outputs per sample. */
const squaredError = (target: string, pair: string): Lowering => ({ runtime: [target, pair], emit: (cx) => cx.call(cx.kinds[1] === "label" ? target : pair, ...cx.args) });

export const metrics: Builtin[] = [
  metric("acc", "accuracy of the outputs `o` (per pixel for a mask); gradient zero", call("accuracy"), call("accuracy")),
  metric("prob", "the true class's probability, one number per sample: reduce with `sum(batch, ...)` or `mean(batch, ...)`", call("trueClassProb"), call("true_class_prob"), true),
  metric("loss", "the task's own loss: cross-entropy for classes and masks, squared error for a `real` target", taskLoss("meanSquaredError", "crossEntropy"), taskLoss("mean_squared_error", "cross_entropy")),
  metric("cross_entropy", "mean cross-entropy (per pixel for a mask)", call("crossEntropy"), call("cross_entropy")),
  metric("mae", "mean absolute error", call("meanAbsoluteError"), call("mean_absolute_error")),
  metric("l1", "mean absolute error, as a loss", call("meanAbsoluteError"), call("mean_absolute_error")),
  {
    ...metric(
      "mse",
      "mean squared error against the target; of two outputs or two features `mse(a, b)`: their mean squared difference, per sample",
      squaredError("meanSquaredError", "meanSquaredDifference"),
      squaredError("mean_squared_error", "mean_squared_difference"),
    ),
    signatures: [{ params: [{ name: "o", kinds: ["logits"] }, { name: "y", kinds: ["label"] }], result: "scalar" }, ...outputPairs.mse],
  },
  metric("dice", "mean Dice over the classes of a mask; gradient zero", call("dice"), call("dice")),
  metric("dice_loss", "the soft, differentiable Dice loss of a mask", call("diceLoss"), call("dice_loss")),
];

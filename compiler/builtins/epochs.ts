import type { Builtin } from "./types.js";

/** What an `every epoch` rule reads that a step cannot: a whole split, through the model in evaluation mode. */
export const epochs: Builtin[] = [
  {
    name: "over",
    family: "epochs",
    usage: "over(split, e)",
    example: "over(valid, nll(head[m], y))",
    doc: "in an `every epoch` rule: the mean over the samples of `train` or `valid` of the per-sample value `e` (`nll(o, y)`: cross-entropy, `correct(o, y)`: accuracy), the model in evaluation mode",
    form: "over",
    formRuntime: [],
    signatures: [],
  },
];

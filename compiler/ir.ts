import type { LayerKind } from "../runtime/parameter-groups.js";
import type { ParamRange } from "../runtime/range.js";
import type { OptionValue } from "./components.js";

/**
 * The IR: the model as data, and the balancing rule as a dataflow graph of typed values.
 * Every node that came from the spec keeps its 1-based source line for comments and errors.
 */
export interface ModelIR {
  name: string;
  data: Component;
  modalities: ModalityIR[];
  /** `mask`: segmentation, one class per pixel of a `shape` (height, width) mask. */
  /** `names`: the classes of `class(["a", "b", ...])`, in index order (string labels map through them). */
  target: { name: string; kind: "class" | "real" | "mask"; classes: number; names?: string[]; shape?: number[]; line: number; source?: string };
  encoders: Component[];
  /** A built-in fusion, or `expression` with `fuse` holding the spec's fusion expression. */
  fusion: Component;
  fuse?: FusionIR;
  head: Component;
  /** Per-modality auxiliary heads `head[m]`, fed the detached z[m]. */
  auxHead?: Component;
  learnables: LearnableIR[];
  /** Modalities the fusion never reads: trained, but no unimodal metric is reported for them. */
  unread: string[];
  /** `loss EXPR`; with `index`, `loss[m] EXPR`: one loss per modality, trained in turn (`train ... turns`). */
  loss: { value: RExpr; line: number; text: string; index?: string };
  optimizer: Component;
  schedule: Component;
  train: Record<string, OptionValue>;
  rule: RuleIR;
  /**
   * `stage NAME { ... }`, in order: each with its own loss, optimiser, schedule, settings, rules and
   * frozen groups. Absent: one stage, the model's own `loss` ... `rule` above (which with stages
   * hold the last stage's).
   */
  stages?: StageIR[];
  /** `predict EXPR`: the outputs evaluation scores instead of `out` (inference-time fusion). */
  predict?: { value: RExpr; line: number; text: string };
  /** Params that calls take as constant arguments, with their ranges: a trainer's own `--set` checks them. */
  paramRanges?: Record<string, ParamRange[]>;
}

export interface StageIR {
  name: string;
  line: number;
  loss: ModelIR["loss"];
  optimizer: Component;
  schedule: Component;
  train: Record<string, OptionValue>;
  rule: RuleIR;
  /** Parameter groups the stage does not train (`freeze G, ...`). */
  frozen: GroupRef[];
}

export interface Component {
  kind: string;
  options: Record<string, OptionValue>;
  line: number;
}

/**
 * A fusion written as an expression over the features: `(concat(j, w[j] * z[j]) + attention) / 2`.
 * Built-in fusions used as terms are `parts`, addressed by position.
 */
export interface FusionIR {
  value: FExpr;
  parts: Component[];
  /** Width of the fused features, which the head reads. */
  width: number;
  line: number;
  text: string;
}

export type FExpr =
  | { op: "features"; modality: IndexRef }
  | { op: "part"; index: number }
  | { op: "number"; value: number }
  | { op: "learnable"; name: string; index?: IndexRef }
  | { op: "unary"; fn: string; arg: FExpr }
  | { op: "binary"; fn: "+" | "-" | "*" | "/"; left: FExpr; right: FExpr }
  | { op: "reduce"; fn: "concat" | "sum" | "mean"; variable: string; body: FExpr };

export interface ModalityIR {
  name: string;
  shape: number[];
  line: number;
  /** `from "file[:field]"`: where `data files(...)` reads it, relative to the spec. */
  source?: string;
}

export interface LearnableIR {
  name: string;
  perModality: boolean;
  init: number;
  line: number;
}

export interface RuleIR {
  params: { name: string; value: number; line: number }[];
  values: RuleValue[];
  actions: ActionIR[];
  /** `every epoch { ... }`: values and `set`s evaluated at each epoch's start; step rules read the values. */
  epoch?: { values: RuleValue[]; actions: Extract<ActionIR, { kind: "assign" | "assignWeights" }>[]; line: number };
}

/** A named rule value: `x = e` or `x[m] = e`. */
export interface RuleValue {
  name: string;
  /** The index variable of `x[m] = ...`; absent for one value per step. */
  index?: string;
  value: RExpr;
  line: number;
  text: string;
}

export type ActionIR =
  | { kind: "scale"; group: GroupRef; factor: RExpr; when: RExpr[]; loop: string[]; line: number; text: string }
  | { kind: "scaleLr"; group: GroupRef; factor: RExpr; when: RExpr[]; loop: string[]; line: number; text: string }
  | { kind: "noise"; group: GroupRef; mean: RExpr; std: RExpr; when: RExpr[]; loop: string[]; line: number; text: string }
  | { kind: "replace"; group: GroupRef; value: RExpr; when: RExpr[]; loop: string[]; line: number; text: string }
  /** `probe`: the probability reads this step's forward pass, evaluated on a pass of its own before the drop. */
  | { kind: "drop"; modality: IndexRef; probability: RExpr; rescale: boolean; probe: boolean; when: RExpr[]; loop: string[]; line: number; text: string }
  /** `set w[m] = e`: the learnable's value after the optimiser step. */
  | { kind: "assign"; name: string; index?: IndexRef; value: RExpr; when: RExpr[]; loop: string[]; line: number; text: string }
  /** `set weights(G) = e`: the group's parameters after the optimiser step (or at the epoch's start), e gradient-shaped of G. */
  | { kind: "assignWeights"; group: GroupRef; value: RExpr; when: RExpr[]; loop: string[]; line: number; text: string }
  | { kind: "addLoss"; value: RExpr; when: RExpr[]; loop: string[]; line: number; text: string }
  | { kind: "minimize"; value: RExpr; group: GroupRef; optimizer: Component; when: RExpr[]; loop: string[]; line: number; text: string };

/** A modality index: a bound variable (`m`), a fixed modality, or `other(m)`. */
export type IndexRef = { kind: "var"; name: string } | { kind: "fixed"; modality: number } | { kind: "other"; of: IndexRef };

/** Layers of an encoder a group selects: all of them, its last linear layer, or every layer of one kind. */
export type EncoderPart = "all" | LayerKind;

/** A parameter group; `weights`: its weight tensors only, without biases and norm gains (`.weight`). */
export type GroupRef = (
  | { kind: "encoder"; modality: IndexRef; part: EncoderPart }
  | { kind: "fusion" }
  | { kind: "head" }
  | { kind: "auxHead"; modality: IndexRef }
  | { kind: "learnable"; name: string; modality?: IndexRef }
) & { weights?: boolean };

/** Value kinds: host values are plain numbers known without touching tensors. */
export type ValueKind = "scalar" | "bool" | "batch" | "batchBool" | "logits" | "features" | "grad" | "label" | "prototypes";

/** The operation of a rule-expression node, without its inferred kind. */
export type RNode =
  | { op: "number"; value: number }
  | { op: "param"; name: string }
  /** The step and epoch (counted from 0 in the stage), and `progress`: the share of this epoch's batches done before this one, in [0, 1). */
  | { op: "time"; which: "step" | "epoch" | "progress" }
  /** A rule value; `epoch`: one of the `every epoch` block, constant during the epoch. */
  | { op: "value"; name: string; index?: IndexRef; epoch?: boolean }
  | { op: "learnable"; name: string; index?: IndexRef }
  /** The operators `-x` and `not c` (compiler/builtins/operators.ts). */
  | { op: "unary"; fn: "neg" | "not"; arg: RExpr }
  | { op: "binary"; fn: string; left: RExpr; right: RExpr }
  | { op: "if"; condition: RExpr; then: RExpr; otherwise: RExpr }
  | { op: "reduceModalities"; fn: "sum" | "mean" | "max" | "min"; variable: string; exclude?: IndexRef; body: RExpr }
  | { op: "reduceBatch"; fn: "sum" | "mean"; body: RExpr }
  /** ∂loss/∂G: of the task loss, or of `loss` when given (`grad(G, L)`). */
  | { op: "grad"; group: GroupRef; loss?: RExpr }
  /** A group's parameters: current (`weights`), as training began (`init`), or a new random initialisation (`fresh`). */
  | { op: "parameters"; group: GroupRef; which: "weights" | "init" | "fresh" }
  /** A value of a whole split (`over`, `class_means`, `purity`), e evaluated batch by batch in evaluation mode (epoch rules). */
  | { op: "split"; fn: string; split: "train" | "valid"; arg: RExpr }
  /** `index(m)`: a modality index as a number. */
  | { op: "modalityNumber"; modality: IndexRef }
  /** Head outputs: fused, modality m's share, its auxiliary head, the fused head on m alone or without m; `stage`: of the weights an earlier stage ended with. */
  | { op: "output"; which: "out" | "contrib" | "aux" | "z" | "alone" | "without"; modality?: IndexRef; stage?: string }
  | { op: "target" }
  /** `per_sample(e)`: e once per sample, with `grad(G)` the gradient of that sample's loss. */
  | { op: "perSample"; arg: RExpr }
  /** `per_tensor(e)`: e once per parameter tensor of `gradient`'s group, that tensor standing for the gradient. */
  | { op: "perTensor"; arg: RExpr; gradient: RExpr }
  /** A function of the builtin catalogue (compiler/builtins), checked and emitted from its entry; `state`: its history slot. */
  | { op: "call"; fn: string; args: RExpr[]; state?: number };

/** A typed rule expression: `host` values need no tensors; `secondOrder` ones read gradients. */
export type RExpr = RNode & { kind: ValueKind; host: boolean; secondOrder: boolean };

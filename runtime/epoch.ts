import * as tf from "@tensorflow/tfjs";
import { batchTensors, evaluationBatches } from "./batches.js";
import { kmeansPurity } from "./clustering.js";
import type { Dataset } from "./data/index.js";
import type { History } from "./history.js";
import { Forward, type Params } from "./model.js";
import type { GroupGradient, Value } from "./ops.js";
import { RuleContext } from "./rule-context.js";
import { StepRandom } from "./step-random.js";
import type { ModelSpec } from "./spec.js";

/** An epoch value: a tensor, or a plain number or condition where the rule computed it from time and params alone. */
export type EpochNumber = Value | boolean;

/** What a generated `epochRule` returns: numbers (logged with the epoch), and what only the steps read (snapshots, class means). */
export interface EpochResult {
  logged: Record<string, EpochNumber | EpochNumber[]>;
  kept: Record<string, tf.Tensor | GroupGradient | (tf.Tensor | GroupGradient)[]>;
}

/**
 * What an `every epoch` rule can see and do, at an epoch's start: the weights the last epoch left,
 * whole splits through the model in evaluation mode (`over`, `class_means`, `purity`), the run's
 * history (`prev`: an epoch value at the last epoch, a step value at the last step), and `set`s
 * that apply together when the rule has run.
 */
export class EpochContext extends RuleContext {
  readonly random: StepRandom;

  constructor(
    spec: ModelSpec,
    params: Map<string, tf.Variable>,
    private readonly data: Dataset,
    /** The epoch about to start, from 0. */
    readonly epoch: number,
    step: number,
    readonly history: History,
    seed: number,
    initialValues: () => Map<string, tf.Tensor>,
    finished: ReadonlyMap<string, Params> = new Map(),
    /** The batch norms' running statistics, with which the rule's evaluation passes normalise. */
    private readonly running: Params = {},
  ) {
    super(spec, params, step, seed, initialValues, finished);
    // A stream of its own: the step rules' draws stay what they are without an epoch rule.
    this.random = new StepRandom(seed + 7777777, epoch);
  }

  /**
   * `over(split, e)`: the mean of the per-sample value e over every sample of the split, batch by
   * batch, the model in evaluation mode (no dropout).
   */
  over(split: "train" | "valid", value: (f: Forward) => tf.Tensor): tf.Tensor {
    const sum = this.accumulate(split, "over", value, (v) => tf.sum(tf.cast(v, "float32")));
    return tf.div(sum, this.data[split].size);
  }

  /** `class_means(split, z[m])`: each class's mean of the features over the split (zeros for a class without samples). */
  classMeans(split: "train" | "valid", value: (f: Forward) => tf.Tensor): tf.Tensor {
    const classes = this.spec.target.classes;
    const oneHot = (target: tf.Tensor) => tf.oneHot(tf.cast(tf.reshape(target, [-1]), "int32") as tf.Tensor1D, classes).toFloat();
    const sums = this.accumulate(split, "class_means", value, (z, target) => tf.matMul(oneHot(target) as tf.Tensor2D, tf.reshape(z, [z.shape[0]!, -1]) as tf.Tensor2D, true, false));
    const counts = new Float32Array(classes);
    for (const label of Array.from(this.data[split].labels)) counts[label]!++;
    return tf.div(sums, tf.maximum(tf.tensor2d(counts, [classes, 1]), 1));
  }

  /**
   * `purity(split, z[m])`: k-means purity of the split's features against its classes
   * (runtime/clustering.ts). The clustering runs on the host, so the features are read there,
   * asynchronously: a GPU backend's tensors cannot be read synchronously.
   */
  async purity(split: "train" | "valid", value: (f: Forward) => tf.Tensor): Promise<tf.Tensor> {
    const samples = this.data[split];
    const parts: tf.Tensor[] = [];
    this.eachBatch(split, "purity", value, (z) => parts.push(tf.keep(tf.reshape(z, [z.shape[0]!, -1]))));
    const all = tf.concat(parts);
    parts.forEach((part) => part.dispose());
    const features = (await all.data()) as Float32Array;
    all.dispose();
    // Seeded by the run and the epoch: a resumed run clusters as the uninterrupted one did.
    const seed = (this.seed * 1000003 + this.epoch * 7919 + 31) % 2147483647;
    return tf.scalar(kmeansPurity(features, samples.size, features.length / samples.size, samples.labels, this.spec.target.classes, seed));
  }

  /** Σ over the split's evaluation batches of `reduce(e, target)`. */
  private accumulate(split: "train" | "valid", fn: string, value: (f: Forward) => tf.Tensor, reduce: (e: tf.Tensor, target: tf.Tensor) => tf.Tensor): tf.Tensor {
    let sum: tf.Tensor | undefined;
    this.eachBatch(split, fn, value, (e, target) => {
      const next = tf.keep(sum ? tf.add(sum, reduce(e, target)) : reduce(e, target));
      sum?.dispose();
      sum = next;
    });
    // Kept through the batches' scopes, the sum is handed to the caller's scope as a fresh tensor:
    // a kept one would outlive the epoch rule (one tensor per call and epoch, before this).
    const result = tf.clone(sum!);
    sum!.dispose();
    return result;
  }

  /** e computed on each evaluation batch of the split, the model in evaluation mode, handed to `visit` (inside the batch's scope). */
  private eachBatch(split: "train" | "valid", fn: string, value: (f: Forward) => tf.Tensor, visit: (e: tf.Tensor, target: tf.Tensor) => void): void {
    const samples = this.data[split];
    if (samples.size === 0) throw new Error(`${fn}(${split}, ...): the ${split} split is empty; give the data a ${split} fraction`);
    const params = Object.fromEntries(this.params) as Params;
    for (const rows of evaluationBatches(samples)) {
      tf.tidy(() => {
        const { inputs, target } = batchTensors(samples, this.spec, rows);
        visit(value(new Forward(this.spec, params, inputs, target, false, undefined, this, this.running)), target);
      });
    }
  }
}

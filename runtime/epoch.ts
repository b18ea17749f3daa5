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
 * whole splits through the model in evaluation mode (`over`), its own history (`prev` is the last
 * epoch's value), and `set`s that apply together when the rule has run.
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

  /** `purity(split, z[m])`: k-means purity of the split's features against its classes (runtime/clustering.ts). */
  purity(split: "train" | "valid", value: (f: Forward) => tf.Tensor): tf.Tensor {
    const samples = this.data[split];
    const parts: Float32Array[] = [];
    let dims = 0;
    this.accumulate(split, "purity", value, (z) => {
      dims = z.size / z.shape[0]!;
      parts.push(z.dataSync() as Float32Array);
      return tf.zeros([1]);
    }).dispose();
    const features = new Float32Array(samples.size * dims);
    let offset = 0;
    for (const part of parts) {
      features.set(part, offset);
      offset += part.length;
    }
    // Seeded by the run and the epoch: a resumed run clusters as the uninterrupted one did.
    return tf.scalar(kmeansPurity(features, samples.size, dims, samples.labels, this.spec.target.classes, (this.seed * 1000003 + this.epoch * 7919 + 31) % 2147483647));
  }

  /** Σ over the split's evaluation batches of `reduce(e, target)`, e computed on each batch in evaluation mode. */
  private accumulate(split: "train" | "valid", fn: string, value: (f: Forward) => tf.Tensor, reduce: (e: tf.Tensor, target: tf.Tensor) => tf.Tensor): tf.Tensor {
    const samples = this.data[split];
    if (samples.size === 0) throw new Error(`${fn}(${split}, ...): the ${split} split is empty; give the data a ${split} fraction`);
    const params = Object.fromEntries(this.params) as Params;
    let sum: tf.Tensor | undefined;
    for (const rows of evaluationBatches(samples)) {
      const next = tf.tidy(() => {
        const { inputs, target } = batchTensors(samples, this.spec, rows);
        const part = reduce(value(new Forward(this.spec, params, inputs, target, false, undefined, this)), target);
        return sum ? tf.add(sum, part) : part;
      });
      sum?.dispose();
      sum = next;
    }
    return sum!;
  }
}

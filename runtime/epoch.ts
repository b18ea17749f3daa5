import * as tf from "@tensorflow/tfjs";
import { batchTensors, evaluationBatches } from "./batches.js";
import type { Dataset } from "./data/index.js";
import type { History } from "./history.js";
import { Forward, type Params } from "./model.js";
import type { GroupGradient, Value } from "./ops.js";
import { RuleContext } from "./rule-context.js";
import { StepRandom } from "./step-random.js";
import type { ModelSpec } from "./spec.js";

/** An epoch value: a tensor, or a plain number or condition where the rule computed it from time and params alone. */
export type EpochNumber = Value | boolean;

/** What a generated `epochRule` returns: numbers (logged with the epoch) and gradient-shaped values (snapshots). */
export interface EpochResult {
  values: Record<string, EpochNumber | EpochNumber[]>;
  gradients: Record<string, GroupGradient | GroupGradient[]>;
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
  ) {
    super(spec, params, step, seed, initialValues);
    // A stream of its own: the step rules' draws stay what they are without an epoch rule.
    this.random = new StepRandom(seed + 7777777, epoch);
  }

  /**
   * `over(split, e)`: the mean of the per-sample value e over every sample of the split, batch by
   * batch, the model in evaluation mode (no dropout).
   */
  over(split: "train" | "valid", value: (f: Forward) => tf.Tensor): tf.Tensor {
    const samples = this.data[split];
    if (samples.size === 0) throw new Error(`over(${split}, ...): the ${split} split is empty; give the data a ${split} fraction`);
    const params = Object.fromEntries(this.params) as Params;
    let sum: tf.Tensor = tf.scalar(0);
    for (const rows of evaluationBatches(samples)) {
      const next = tf.tidy(() => {
        const { inputs, target } = batchTensors(samples, this.spec, rows);
        const perSample = tf.cast(value(new Forward(this.spec, params, inputs, target, false, undefined, this)), "float32");
        return tf.add(sum, tf.sum(perSample));
      });
      sum.dispose();
      sum = next;
    }
    const mean = tf.div(sum, samples.size);
    sum.dispose();
    return mean;
  }
}

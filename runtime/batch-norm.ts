import * as tf from "@tensorflow/tfjs";
import type { Params } from "./model.js";

/**
 * Batch normalisation (`norm: "batch"` on an encoder, a ResNet's default), as PyTorch's
 * BatchNorm computes it, so that the torch trainer (runtime/torch/model.py) agrees:
 * - a training pass normalises each channel with its batch's mean and biased variance, over every
 *   axis but the channels' (the last here), and records them;
 * - an evaluation pass (metrics, `over`, `class_means`, a finished stage's pass) normalises with
 *   the running statistics instead;
 * - the running statistics move once per update that moves the layer's gain and bias, from that
 *   update's own forward pass: running = (1 − 0.1)·running + 0.1·batch, with the unbiased variance
 *   (count / (count − 1)). The step's other passes (`grad(G, L)`, `probe`, second order) normalise
 *   with their batch but change nothing. (`per_sample`, whose passes are batches of one sample, is
 *   refused with a batch norm: MMB038.)
 *
 * Every op here has a taped gradient (second-order.ts), so a rule may differentiate gradient
 * norms through a normalised encoder.
 */

/** PyTorch's defaults: the share of a new batch in the running statistics, and the variance's epsilon. */
const statisticsMomentum = 0.1;
const varianceEpsilon = 1e-5;

const normSuffix = ".norm";
/** The batch norm after layer `layer` (a convolution or a dense layer, which then has no bias of its own). */
export const batchNormOf = (layer: string): string => `${layer}${normSuffix}`;

/** A norm's running statistics, named as PyTorch's `state_dict` names them. */
const runningMean = (norm: string): string => `${norm}.running_mean`;
const runningVariance = (norm: string): string => `${norm}.running_var`;

/** The statistics a training pass measured, by layer: each channel's mean and biased variance, over `count` values. */
export type BatchStatistics = Map<string, { mean: tf.Tensor; variance: tf.Tensor; count: number }>;

/** How a pass normalises: with its batch, recording what it measured, or with running statistics. */
export type Normalization = { training: true; measured: BatchStatistics } | { training: false; running: Params };

/** x ([..., channels]) normalised per channel, then scaled by the layer's `gain` and shifted by its `bias`. */
export function batchNorm(params: Params, layer: string, x: tf.Tensor, how: Normalization): tf.Tensor {
  const channels = x.shape[x.rank - 1]!;
  const axes = x.shape.slice(0, -1).map((_, i) => i);
  let mean: tf.Tensor;
  let variance: tf.Tensor;
  if (how.training) {
    const count = x.size / channels;
    // As PyTorch: one value per channel has no variance to normalise by (an MLP's batch of 1).
    if (count < 2) throw new Error(`batch normalisation of ${layer} needs more than one value per channel in training, found ${count} (a training batch of one sample?); give the encoder \`norm: "none"\` or a larger batch`);
    mean = tf.mean(x, axes);
    variance = tf.mean(tf.square(tf.sub(x, mean)), axes);
    how.measured.set(layer, { mean, variance, count });
  } else {
    const saved = [how.running[runningMean(layer)], how.running[runningVariance(layer)]];
    if (!saved[0] || !saved[1]) throw new Error(`no running statistics of ${layer} for an evaluation pass`);
    [mean, variance] = saved as [tf.Tensor, tf.Tensor];
  }
  const normalized = tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, varianceEpsilon)));
  return tf.add(tf.mul(normalized, params[`${layer}.gain`]!), params[`${layer}.bias`]!);
}

/** A running statistic: its name, its shape ([channels]) and its initial value. */
export interface StatisticShape {
  name: string;
  shape: number[];
  init: number;
}

/** The running statistics of batch norms, means 0 and variances 1, from the model's parameters (each norm's gain), in their order. */
export function statisticShapes(parameters: { name: string; shape: number[] }[]): StatisticShape[] {
  return parameters
    .filter(({ name }) => name.endsWith(`${normSuffix}.gain`))
    .flatMap(({ name, shape }) => {
      const layer = name.slice(0, -".gain".length);
      return [
        { name: runningMean(layer), shape, init: 0 },
        { name: runningVariance(layer), shape, init: 1 },
      ];
    });
}

/** The running statistics of a model under training, as variables (checkpointed beside the weights). */
export class RunningStatistics {
  readonly values: Map<string, tf.Variable>;

  constructor(shapes: StatisticShape[]) {
    this.values = new Map(shapes.map(({ name, shape, init }) => [name, tf.variable(tf.fill(shape, init), false, name)]));
  }

  /** The statistics as a pass reads them. */
  get running(): Params {
    return Object.fromEntries(this.values);
  }

  /** Moves the statistics of the layers `moves` selects toward what a training pass measured. */
  update(measured: BatchStatistics, moves: (layer: string) => boolean): void {
    tf.tidy(() => {
      for (const [layer, { mean, variance, count }] of measured) {
        if (!moves(layer)) continue;
        const blend = (name: string, batch: tf.Tensor) => {
          const running = this.values.get(name)!;
          running.assign(tf.add(tf.mul(running, 1 - statisticsMomentum), tf.mul(batch, statisticsMomentum)));
        };
        blend(runningMean(layer), mean);
        blend(runningVariance(layer), tf.mul(variance, count / (count - 1)));
      }
    });
  }

  dispose(): void {
    this.values.forEach((v) => v.dispose());
  }
}

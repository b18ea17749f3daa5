import * as tf from "@tensorflow/tfjs";
import type { GroupGradient, Value } from "./ops.js";
import { nameHash, Random } from "./random.js";

/** Where a forward pass's rows lie in the step's batch: from row `first`, of `total` (a per-sample pass computes one). */
export interface BatchRows {
  first: number;
  total: number;
}

/** A layer's stream id: its name's hash with the top bit set, apart from the spec's calls (numbered from 0). */
const layerStream = (layer: string): number => (nameHash(layer) | 0x80000000) >>> 0;

/**
 * The random draws a rule makes in one step (`uniform()`, `bernoulli(p)`, `dropout(x, p)`): each
 * call of the spec has its own stream, seeded by the run's seed, the step (or a key such as the
 * epoch) and the call, so a draw is the same wherever the step evaluates it (the backward pass,
 * an objective, a resumed run) and on every backend (drawn in JavaScript, as the data is).
 */
export class StepRandom {
  constructor(
    private readonly seed: number,
    private readonly step: number,
    /** The rows of the batch a per-sample pass computes: its draws per sample or element are those rows of the batch's. */
    private readonly rows?: BatchRows,
  ) {}

  /** These draws for a pass over some rows of the step's batch (a per-sample pass: one). */
  forRows(rows: BatchRows): StepRandom {
    return new StepRandom(this.seed, this.step, rows);
  }

  private stream(id: number, key = this.step): Random {
    let h = 2166136261;
    for (const part of [this.seed, key, id]) h = Math.imul(h ^ (part >>> 0), 16777619) >>> 0;
    return new Random(h);
  }

  /** Uniform on [0, 1): one number per step, or per `key` (`uniform(epoch)`: one per epoch). */
  uniform(id: number, key?: number): number {
    return this.stream(id, key === undefined ? this.step : Math.floor(key)).uniform();
  }

  /** 1 with probability p, else 0: one draw for a number, one per sample or per element for a tensor or gradient. */
  bernoulli(id: number, p: Value | GroupGradient): Value | GroupGradient {
    const random = this.stream(id);
    if (typeof p === "number") return random.uniform() < p ? 1 : 0;
    // A gradient-shaped p is drawn per element of its parameters, which have no rows.
    if (Array.isArray(p)) return p.map((t) => tf.cast(tf.less(tf.tensor(Float32Array.from({ length: t.size }, () => random.uniform()), t.shape), t), "float32"));
    return tf.cast(tf.less(this.perRow(p, () => random.uniform()), p), "float32");
  }

  /**
   * One draw per element of t ([rows, ...], or a scalar tensor): for a pass over some of the step's
   * rows (`rows`), the draws of the whole batch, t's rows of them, so that a sample's draw is the
   * same in a per-sample pass as in the batch's.
   */
  private perRow(t: tf.Tensor, draw: () => number, rows = this.rows): tf.Tensor {
    if (t.rank === 0) return tf.scalar(draw());
    const width = t.shape.slice(1).reduce((a, b) => a * b, 1);
    const { first, total } = rows ?? { first: 0, total: t.shape[0]! };
    const drawn = Float32Array.from({ length: total * width }, draw);
    return tf.tensor(drawn.subarray(first * width, (first + t.shape[0]!) * width), t.shape);
  }

  /**
   * An encoder layer's `dropout` option on its output x ([rows, ...]): each element zeroed with
   * probability `rate`, the others scaled by 1/(1 − rate) (inverted dropout, as tf.dropout and
   * torch's F.dropout). Drawn from the layer's own stream for the step's whole batch, `rows` being
   * x's rows of it, so every pass of the step drops the same units of a sample (a per-sample pass
   * its row's), a resumed run continues the draws, and the torch trainer draws the same.
   */
  layerDropout(layer: string, x: tf.Tensor, rate: number, rows: BatchRows): tf.Tensor {
    const random = this.stream(layerStream(layer));
    const kept = Math.fround(1 / (1 - rate));
    return tf.mul(x, this.perRow(x, () => (random.uniform() >= rate ? kept : 0), rows));
  }

  /** x with each element zeroed with probability p (no rescaling). */
  dropout(id: number, x: tf.Tensor, p: Value): tf.Tensor {
    const random = this.stream(id);
    return tf.mul(x, tf.cast(tf.greaterEqual(this.perRow(x, () => random.uniform()), p), "float32"));
  }
}

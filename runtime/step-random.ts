import * as tf from "@tensorflow/tfjs";
import type { GroupGradient, Value } from "./ops.js";
import { Random } from "./random.js";

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
  ) {}

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
    const draw = (t: tf.Tensor) => tf.cast(tf.less(tf.tensor(Float32Array.from({ length: t.size }, () => random.uniform()), t.shape), t), "float32");
    return Array.isArray(p) ? p.map(draw) : draw(p);
  }

  /** x with each element zeroed with probability p (no rescaling). */
  dropout(id: number, x: tf.Tensor, p: Value): tf.Tensor {
    const random = this.stream(id);
    const u = tf.tensor(Float32Array.from({ length: x.size }, () => random.uniform()), x.shape);
    return tf.mul(x, tf.cast(tf.greaterEqual(u, p), "float32"));
  }
}

import * as tf from "@tensorflow/tfjs";
import { stopGradient, type GroupGradient, type Value } from "./ops.js";

/**
 * Values carried from one step to the next: `prev(x, init)`, `delta(x)`, `ema(x, beta)`, the
 * projectors of `owm`.
 * Reads see the previous step; writes queue until `advance()`, which the loop calls after the
 * optimiser step, so every rule value of a step sees the same history.
 */
export class History {
  private readonly values = new Map<string, tf.Tensor>();
  private readonly pending = new Map<string, tf.Tensor>();

  /** The slot of a call and index; `ago` > 1: its value that many writes back (`prev(x, init, n)`). */
  private static key(id: number, index: string, ago = 1): string {
    const key = index ? `${id}:${index}` : `${id}`;
    return ago === 1 ? key : `${key}@${ago}`;
  }

  /** The value written `ago` steps (or epochs) back, or `init` before that many were written. */
  read(id: number, index: string, init: number, ago = 1): tf.Tensor {
    return this.values.get(History.key(id, index, ago)) ?? tf.scalar(init);
  }

  /** Records a value; with `depth` n, the n last ones are kept (the older ones shift back by one). */
  write(id: number, index: string, value: Value, depth = 1): void {
    for (let ago = depth; ago > 1; ago--) {
      const older = this.values.get(History.key(id, index, ago - 1));
      if (older) this.queue(History.key(id, index, ago), tf.clone(older));
    }
    this.queue(History.key(id, index), typeof value === "number" ? tf.scalar(value) : tf.clone(value));
  }

  private queue(key: string, value: tf.Tensor): void {
    this.pending.get(key)?.dispose();
    this.pending.set(key, tf.keep(value));
  }

  /** x − (the previous step's x, or `init` on the first step); a gradient-shaped x tensor by tensor. */
  delta(id: number, index: string, value: Value, init: number): tf.Tensor;
  delta(id: number, index: string, value: GroupGradient, init: number): GroupGradient;
  delta(id: number, index: string, value: Value | GroupGradient, init: number): tf.Tensor | GroupGradient {
    if (Array.isArray(value)) return value.map((t, i) => this.delta(id, `${index}#${i}`, t, init));
    const previous = this.read(id, index, init);
    this.write(id, index, value);
    return tf.sub(value, previous);
  }

  /** β·ema + (1 − β)·x; the first step's ema is x itself; a gradient-shaped x tensor by tensor. */
  ema(id: number, index: string, value: Value, beta: number): tf.Tensor;
  ema(id: number, index: string, value: GroupGradient, beta: number): GroupGradient;
  ema(id: number, index: string, value: Value | GroupGradient, beta: number): tf.Tensor | GroupGradient {
    if (Array.isArray(value)) return value.map((t, i) => this.ema(id, `${index}#${i}`, t, beta));
    const previous = this.values.get(History.key(id, index));
    const next = previous ? tf.add(tf.mul(previous, beta), tf.mul(value, 1 - beta)) : tf.scalar(0).add(value);
    this.write(id, index, next);
    return next;
  }

  /**
   * Running per-class mean of features: each class present in the batch moves to
   * momentum·previous + (1 − momentum)·(its batch mean), or starts at its batch mean; other
   * classes keep their value (zero until first seen). A constant for differentiation.
   */
  classMean(id: number, index: string, features: tf.Tensor, target: tf.Tensor, momentum: number, classes: number): tf.Tensor {
    const z = stopGradient(features);
    const oneHot = tf.cast(tf.oneHot(tf.cast(target, "int32") as tf.Tensor1D, classes), "float32");
    const counts = tf.reshape(tf.sum(oneHot, 0), [-1, 1]);
    const present = tf.greater(counts, 0);
    const mean = tf.div(tf.matMul(oneHot as tf.Tensor2D, z as tf.Tensor2D, true, false), tf.maximum(counts, 1));
    const previous = this.values.get(History.key(id, index));
    const seen = this.values.get(History.key(id, `${index}#seen`));
    const blended = previous && seen ? tf.where(tf.broadcastTo(tf.cast(seen, "bool"), mean.shape), tf.add(tf.mul(previous, momentum), tf.mul(mean, 1 - momentum)), mean) : mean;
    const next = previous ? tf.where(tf.broadcastTo(present, mean.shape), blended, previous) : tf.where(tf.broadcastTo(present, mean.shape), mean, tf.zerosLike(mean));
    this.write(id, index, next);
    this.write(id, `${index}#seen`, seen ? tf.logicalOr(tf.cast(seen, "bool"), present).toFloat() : present.toFloat());
    return next;
  }

  /**
   * `owm(g, x, alpha)`: each tensor of g ([inputs, outputs], a linear layer's weights) projected
   * by its own projector P over the inputs, updated first with the batch mean r of x (recursive
   * least squares, as in orthogonal weight modification): k = P·r, P ← P − k·kᵀ/(alpha + rᵀ·k),
   * then scaled to P / ‖P‖_F. P starts as the identity.
   */
  owm(id: number, index: string, g: GroupGradient, x: tf.Tensor, alpha: Value): GroupGradient {
    const r = tf.reshape(tf.mean(stopGradient(x), 0), [-1, 1]);
    return g.map((t, i) => {
      const width = r.shape[0]!;
      if (t.shape[0] !== width) throw new Error(`owm: a gradient of shape [${t.shape}] is not of a layer whose inputs have the ${width} features given`);
      const slot = `${index}#${i}`;
      const previous = this.values.get(History.key(id, slot)) ?? tf.eye(width);
      const k = tf.matMul(previous, r);
      const updated = tf.sub(previous, tf.div(tf.matMul(k, k, false, true), tf.add(alpha, tf.matMul(r, k, true, false))));
      const projector = tf.div(updated, tf.norm(updated));
      this.write(id, slot, projector);
      return tf.reshape(tf.matMul(projector, tf.reshape(t, [width, -1])), t.shape);
    });
  }

  advance(): void {
    for (const [key, value] of this.pending) {
      this.values.get(key)?.dispose();
      this.values.set(key, value);
    }
    this.pending.clear();
  }

  /** Drops the writes of a step that did not complete. */
  discard(): void {
    this.pending.forEach((v) => v.dispose());
    this.pending.clear();
  }

  async state(): Promise<Record<string, { shape: number[]; values: number[] }>> {
    const out: Record<string, { shape: number[]; values: number[] }> = {};
    for (const [key, value] of this.values) out[key] = { shape: value.shape, values: Array.from(await value.data()) };
    return out;
  }

  restore(state: Record<string, { shape: number[]; values: number[] }>): void {
    for (const [key, { shape, values }] of Object.entries(state)) this.values.set(key, tf.keep(tf.tensor(values, shape)));
  }

  dispose(): void {
    this.discard();
    this.values.forEach((v) => v.dispose());
    this.values.clear();
  }
}

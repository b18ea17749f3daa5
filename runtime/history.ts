import * as tf from "@tensorflow/tfjs";
import type { Value } from "./ops.js";

/**
 * Values carried from one step to the next: `prev(x, init)`, `delta(x)`, `ema(x, beta)`.
 * Reads see the previous step; writes queue until `advance()`, which the loop calls after the
 * optimiser step, so every rule value of a step sees the same history.
 */
export class History {
  private readonly values = new Map<string, tf.Tensor>();
  private readonly pending = new Map<string, tf.Tensor>();

  private static key(id: number, index: string): string {
    return index ? `${id}:${index}` : `${id}`;
  }

  read(id: number, index: string, init: number): tf.Tensor {
    return this.values.get(History.key(id, index)) ?? tf.scalar(init);
  }

  write(id: number, index: string, value: Value): void {
    const key = History.key(id, index);
    this.pending.get(key)?.dispose();
    this.pending.set(key, tf.keep(typeof value === "number" ? tf.scalar(value) : tf.clone(value)));
  }

  /** x − (the previous step's x, or `init` on the first step). */
  delta(id: number, index: string, value: Value, init: number): tf.Tensor {
    const previous = this.read(id, index, init);
    this.write(id, index, value);
    return tf.sub(value, previous);
  }

  /** β·ema + (1 − β)·x; the first step's ema is x itself. */
  ema(id: number, index: string, value: Value, beta: number): tf.Tensor {
    const previous = this.values.get(History.key(id, index));
    const next = previous ? tf.add(tf.mul(previous, beta), tf.mul(value, 1 - beta)) : tf.scalar(0).add(value);
    this.write(id, index, next);
    return next;
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

  async state(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const [key, value] of this.values) out[key] = (await value.data())[0]!;
    return out;
  }

  restore(state: Record<string, number>): void {
    for (const [key, value] of Object.entries(state)) this.values.set(key, tf.keep(tf.scalar(value)));
  }

  dispose(): void {
    this.discard();
    this.values.forEach((v) => v.dispose());
    this.values.clear();
  }
}

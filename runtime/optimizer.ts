import * as tf from "@tensorflow/tfjs";
import type { ComponentSpec } from "./spec.js";

/**
 * SGD (PyTorch semantics: weight decay added to the gradient, then momentum), Adam and AdamW.
 * State lives in named tensors so that checkpoints can save and restore it exactly.
 */
export class Optimizer {
  private readonly slots = new Map<string, tf.Variable>();
  /**
   * Updates so far, per parameter (Adam's bias correction): with turns (`loss[m]`), a step
   * updates only the parameters its loss reaches, and PyTorch counts each parameter's own steps.
   */
  private readonly steps = new Map<string, number>();

  constructor(readonly spec: ComponentSpec) {}

  private option(name: string): number {
    return Number(this.spec.options[name] ?? 0);
  }

  private slot(name: string, like: tf.Tensor): tf.Variable {
    let slot = this.slots.get(name);
    if (!slot) {
      slot = tf.tidy(() => tf.variable(tf.zerosLike(like), false, name));
      this.slots.set(name, slot);
    }
    return slot;
  }

  /** One step for every parameter in `grads`; `lrFactor` multiplies the learning rate. */
  apply(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>, lrFactor: (name: string) => number | tf.Tensor): void {
    for (const name of grads.keys()) this.steps.set(name, (this.steps.get(name) ?? 0) + 1);
    const lr = this.option("lr");
    const decay = this.option("weight_decay");
    tf.tidy(() => {
      for (const [name, gradient] of grads) {
        const param = params.get(name)!;
        const factor = lrFactor(name);
        const rate = typeof factor === "number" ? lr * factor : tf.mul(factor, lr);
        switch (this.spec.kind) {
          case "sgd": {
            let g: tf.Tensor = decay ? tf.add(gradient, tf.mul(param, decay)) : gradient;
            const momentum = this.option("momentum");
            if (momentum) {
              const first = !this.slots.has(`${name}/momentum`);
              const buffer = this.slot(`${name}/momentum`, param);
              buffer.assign(first ? g : tf.add(tf.mul(buffer, momentum), g));
              g = buffer;
            }
            param.assign(tf.sub(param, tf.mul(g, rate)));
            break;
          }
          case "adam":
          case "adamw": {
            const [beta1, beta2, eps] = [this.option("beta1"), this.option("beta2"), this.option("eps")];
            const g = this.spec.kind === "adam" && decay ? tf.add(gradient, tf.mul(param, decay)) : gradient;
            const m = this.slot(`${name}/m`, param);
            const v = this.slot(`${name}/v`, param);
            m.assign(tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1)));
            v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2)));
            const t = this.steps.get(name)!;
            const mHat = tf.div(m, 1 - beta1 ** t);
            const vHat = tf.div(v, 1 - beta2 ** t);
            let next = tf.sub(param, tf.mul(tf.div(mHat, tf.add(tf.sqrt(vHat), eps)), rate));
            if (this.spec.kind === "adamw" && decay) next = tf.sub(next, tf.mul(tf.mul(param, rate), decay));
            param.assign(next);
            break;
          }
          default:
            throw new Error(`unknown optimizer ${this.spec.kind}`);
        }
      }
    });
  }

  /** Learning rate for the epoch under a schedule (a factor on the base rate). */
  static scheduleFactor(schedule: ComponentSpec, epoch: number, epochs: number): number {
    const o = schedule.options;
    switch (schedule.kind) {
      case "step":
        return Number(o.gamma) ** Math.floor(epoch / Number(o.every));
      case "cosine": {
        const min = Number(o.min ?? 0);
        return min + (1 - min) * 0.5 * (1 + Math.cos((Math.PI * epoch) / Math.max(1, epochs)));
      }
      default:
        return 1;
    }
  }

  async state(): Promise<OptimizerState> {
    const slots: Record<string, { shape: number[]; values: number[] }> = {};
    for (const [name, slot] of this.slots) slots[name] = { shape: slot.shape, values: Array.from(await slot.data()) };
    return { steps: Object.fromEntries(this.steps), slots };
  }

  restore(state: OptimizerState | { steps: number; slots: OptimizerState["slots"] }): void {
    this.steps.clear();
    // A checkpoint of an earlier mmb kept one count for all parameters: each of its slots' parameters had taken every step.
    const counts = typeof state.steps === "number" ? Object.keys(state.slots).map((slot) => [slot.slice(0, slot.lastIndexOf("/")), state.steps as number] as const) : Object.entries(state.steps);
    for (const [name, count] of counts) this.steps.set(name, count);
    for (const [name, { shape, values }] of Object.entries(state.slots)) this.slots.set(name, tf.tidy(() => tf.variable(tf.tensor(values, shape), false, name)));
  }

  dispose(): void {
    this.slots.forEach((s) => s.dispose());
    this.slots.clear();
    this.steps.clear();
  }
}

/** What a checkpoint keeps of an optimiser: each parameter's step count and its slots (momentum, moments). */
export interface OptimizerState {
  steps: Record<string, number>;
  slots: Record<string, { shape: number[]; values: number[] }>;
}
